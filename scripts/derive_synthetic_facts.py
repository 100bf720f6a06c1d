"""Derive the synthetic generator's parameters from the real Kaggle sample.

Prints the facts that `include/cross_sell/synthetic.py` hard-codes, so they can be re-derived
(and diffed) whenever the reference sample changes:

    python scripts/derive_synthetic_facts.py ../shared/data/cross_sell_sample.csv
"""

import json
import sys

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, "include")
from cross_sell.data import synthetic  # noqa: E402  (the band and group definitions live there)


def _freqs(series: pd.Series, decimals: int = 4) -> dict:
    return {str(k): round(float(v), decimals) for k, v in series.value_counts(normalize=True).sort_index().items()}


def main(path: str) -> None:
    df = pd.read_csv(path)
    df["Region_Code"] = df["Region_Code"].astype(int)
    df["Policy_Sales_Channel"] = df["Policy_Sales_Channel"].astype(int)
    band = synthetic.age_band(df["Age"].to_numpy())
    bands = range(len(synthetic.AGE_BANDS))
    log_premium = np.log(df.loc[df["Annual_Premium"] > synthetic.PREMIUM_FLOOR, "Annual_Premium"])
    channel = synthetic._group(df["Policy_Sales_Channel"], synthetic.TOP_CHANNELS)
    facts: dict = {
        "rows": len(df),
        "age_band_probs": [round(float((band == i).mean()), 4) for i in bands],
        "male_rate": round(float((df["Gender"] == "Male").mean()), 4),
        "driving_license_rate": round(float(df["Driving_License"].mean()), 4),
        "vehicle_age_by_band": [_freqs(df.loc[band == i, "Vehicle_Age"], 3) for i in bands],
        "damage_rate_by_vehicle_age": df.groupby("Vehicle_Age")["Vehicle_Damage"].apply(
            lambda s: round(float((s == "Yes").mean()), 3)).to_dict(),
        "insured_rate_by_damage": df.groupby("Vehicle_Damage")["Previously_Insured"].mean().round(3).to_dict(),
        "region_probs": _freqs(df["Region_Code"]),
        # Top channels per age band; -1 stands for "another channel", drawn from other_channel_probs.
        "channel_probs_by_band": [_freqs(channel[band == i]) for i in bands],
        "other_channel_probs": _freqs(df.loc[channel == -1, "Policy_Sales_Channel"]),
        "premium_floor_rate": round(float((df["Annual_Premium"] == synthetic.PREMIUM_FLOOR).mean()), 4),
        "log_premium_mean": round(float(log_premium.mean()), 4),
        "log_premium_std": round(float(log_premium.std()), 4),
    }
    # Response: a logistic model on the same design matrix the generator samples from.
    design = synthetic.response_design(df)
    lr = LogisticRegression(C=10.0, max_iter=2000).fit(design, df["Response"])
    facts["response_intercept"] = round(float(lr.intercept_[0]), 4)
    facts["response_coefficients"] = {c: round(float(w), 4) for c, w in zip(design.columns, lr.coef_[0], strict=True)}
    print(json.dumps(facts, indent=1))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/cross_sell_sample.csv")
