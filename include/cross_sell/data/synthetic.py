"""Synthetic customers that look like the Kaggle cross-sell data.

Every number in `FACTS` was measured on the real 57,166-row sample by
`python scripts/derive_synthetic_facts.py ../shared/data/cross_sell_sample.csv`.
The generator follows the dependence chain seen in the data:
age band -> vehicle age -> vehicle damage -> previously insured; age band -> sales channel;
and draws `Response` from a logistic model fitted on the same sample, so a model trained on
synthetic rows learns what it would learn from real ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from . import schema

AGE_BANDS = ((20, 25), (26, 30), (31, 40), (41, 50), (51, 60), (61, 70), (71, 85))  # inclusive years
TOP_CHANNELS = (152, 26, 124, 160, 156, 122, 157, 154, 151, 163)
TOP_REGIONS = (28, 8, 46, 41, 15, 30, 29, 50, 3, 11)
PREMIUM_FLOOR = 2630.0  # 17 % of real customers pay exactly this minimum premium
PREMIUM_CAP = 540165.0
VINTAGE_RANGE = (10, 299)  # uniform in the real data

# Measured on the real sample (57,166 rows); regenerate with scripts/derive_synthetic_facts.py.
FACTS: dict[str, Any] = {
    "rows": 57166,
    "age_band_probs": [0.301, 0.1238, 0.1436, 0.1996, 0.1191, 0.0712, 0.0416],
    "male_rate": 0.5401,
    "driving_license_rate": 0.9979,
    "vehicle_age_by_band": [{"1-2 Year": 0.027, "< 1 Year": 0.973, "> 2 Years": 0.0}, {"1-2 Year": 0.095, "< 1 Year": 0.905, "> 2 Years": 0.001}, {"1-2 Year": 0.79, "< 1 Year": 0.189, "> 2 Years": 0.021}, {"1-2 Year": 0.93, "< 1 Year": 0.005, "> 2 Years": 0.065}, {"1-2 Year": 0.901, "< 1 Year": 0.004, "> 2 Years": 0.095}, {"1-2 Year": 0.873, "< 1 Year": 0.003, "> 2 Years": 0.123}, {"1-2 Year": 0.891, "< 1 Year": 0.001, "> 2 Years": 0.108}],
    "damage_rate_by_vehicle_age": {"1-2 Year": 0.643, "< 1 Year": 0.294, "> 2 Years": 1.0},
    "insured_rate_by_damage": {"No": 0.872, "Yes": 0.054},
    "region_probs": {"0": 0.0047, "1": 0.0027, "2": 0.0108, "3": 0.0248, "4": 0.0044, "5": 0.0032, "6": 0.017, "7": 0.0088, "8": 0.0887, "9": 0.0083, "10": 0.0112, "11": 0.0238, "12": 0.0082, "13": 0.0104, "14": 0.0118, "15": 0.0349, "16": 0.005, "17": 0.0069, "18": 0.0131, "19": 0.0035, "20": 0.005, "21": 0.0114, "22": 0.0038, "23": 0.0055, "24": 0.0058, "25": 0.0068, "26": 0.0068, "27": 0.0061, "28": 0.2781, "29": 0.0291, "30": 0.0334, "31": 0.0055, "32": 0.0066, "33": 0.0202, "34": 0.0048, "35": 0.0181, "36": 0.0235, "37": 0.0143, "38": 0.005, "39": 0.0126, "40": 0.0036, "41": 0.0472, "42": 0.0017, "43": 0.008, "44": 0.0019, "45": 0.0148, "46": 0.0525, "47": 0.0203, "48": 0.0127, "49": 0.0052, "50": 0.0264, "51": 0.0005, "52": 0.0007},
    "channel_probs_by_band": [{"-1": 0.0071, "26": 0.0316, "122": 0.0027, "124": 0.021, "151": 0.0249, "152": 0.7273, "154": 0.0055, "156": 0.0113, "157": 0.0028, "160": 0.1607, "163": 0.0051}, {"-1": 0.0192, "26": 0.0393, "122": 0.0057, "124": 0.053, "151": 0.0141, "152": 0.7552, "154": 0.014, "156": 0.035, "157": 0.0136, "160": 0.0445, "163": 0.0065}, {"-1": 0.0929, "26": 0.1722, "122": 0.0353, "124": 0.3212, "151": 0.0057, "152": 0.1999, "154": 0.0378, "156": 0.0678, "157": 0.0354, "160": 0.0162, "163": 0.0155}, {"-1": 0.1253, "26": 0.3627, "122": 0.0341, "124": 0.3669, "151": 0.0004, "152": 0.0282, "154": 0.0189, "156": 0.0284, "157": 0.0227, "160": 0.004, "163": 0.0083}, {"-1": 0.1438, "26": 0.4264, "122": 0.0394, "124": 0.2885, "151": 0.0012, "152": 0.0283, "154": 0.0159, "156": 0.0258, "157": 0.0191, "160": 0.004, "163": 0.0076}, {"-1": 0.1879, "26": 0.4024, "122": 0.0671, "124": 0.2594, "151": 0.0005, "152": 0.0295, "154": 0.012, "156": 0.0184, "157": 0.0152, "160": 0.0049, "163": 0.0027}, {"-1": 0.2012, "26": 0.4226, "122": 0.0812, "124": 0.2412, "152": 0.0164, "154": 0.0101, "156": 0.0139, "157": 0.0093, "160": 0.0029, "163": 0.0013}],
    "other_channel_probs": {"1": 0.0368, "3": 0.0146, "4": 0.0146, "7": 0.0546, "8": 0.0475, "9": 0.0051, "10": 0.0077, "11": 0.0415, "12": 0.021, "13": 0.0633, "14": 0.0173, "15": 0.0315, "16": 0.016, "17": 0.0006, "18": 0.0049, "19": 0.0083, "20": 0.0011, "21": 0.0039, "22": 0.0094, "23": 0.0156, "24": 0.0218, "25": 0.0561, "29": 0.0282, "30": 0.049, "31": 0.0218, "32": 0.0009, "35": 0.0021, "36": 0.0026, "37": 0.0053, "38": 0.0002, "39": 0.0002, "40": 0.0009, "42": 0.0053, "44": 0.0036, "45": 0.0013, "46": 0.0006, "47": 0.0011, "48": 0.0002, "49": 0.0006, "51": 0.0004, "52": 0.0325, "53": 0.0013, "54": 0.0021, "55": 0.0379, "56": 0.0028, "57": 0.0004, "58": 0.0002, "59": 0.0043, "60": 0.0175, "61": 0.0193, "63": 0.0011, "64": 0.0026, "65": 0.0011, "66": 0.0006, "70": 0.0002, "73": 0.0002, "74": 0.0002, "75": 0.0002, "76": 0.0004, "78": 0.0013, "79": 0.0004, "80": 0.0015, "81": 0.0002, "82": 0.0004, "83": 0.0002, "86": 0.0009, "87": 0.0006, "88": 0.0004, "89": 0.0004, "90": 0.0006, "91": 0.0056, "92": 0.0006, "93": 0.0011, "94": 0.0006, "95": 0.0004, "98": 0.0009, "99": 0.0004, "100": 0.0004, "102": 0.0002, "103": 0.0028, "104": 0.0004, "105": 0.0002, "106": 0.0006, "107": 0.0019, "108": 0.0009, "109": 0.0077, "111": 0.0024, "113": 0.0043, "114": 0.0009, "116": 0.0062, "117": 0.0002, "118": 0.0009, "119": 0.0026, "120": 0.0265, "121": 0.0017, "125": 0.0325, "126": 0.0004, "127": 0.0047, "128": 0.0045, "129": 0.0019, "130": 0.0011, "131": 0.0032, "132": 0.0026, "133": 0.003, "134": 0.0002, "135": 0.0032, "136": 0.0075, "137": 0.0004, "138": 0.0058, "139": 0.0056, "140": 0.0034, "145": 0.0034, "146": 0.0004, "147": 0.0056, "148": 0.0032, "150": 0.0107, "153": 0.0246, "155": 0.0357, "158": 0.0143, "159": 0.0017},
    "premium_floor_rate": 0.1707,
    "log_premium_mean": 10.4527,
    "log_premium_std": 0.2899,
    "response_intercept": -1.551,
    "response_coefficients": {"insured_damaged": -3.25, "insured_undamaged": -6.3245, "uninsured_undamaged": -1.9995, "vehicle_1_2_years": -0.1771, "vehicle_over_2_years": 0.0896, "male": 0.0638, "premium_floor": -0.2268, "log_premium": -0.0195, "age_band_1": 0.579, "age_band_2": 0.8422, "age_band_3": 0.5778, "age_band_4": 0.3436, "age_band_5": -0.188, "age_band_6": -0.5754, "channel_152": -0.6877, "channel_26": 0.4062, "channel_124": 0.1577, "channel_160": -1.1884, "channel_156": 0.1696, "channel_122": 0.1357, "channel_157": 0.447, "channel_154": 0.356, "channel_151": -0.5671, "channel_163": 0.5808, "region_28": 0.146, "region_8": -0.1215, "region_46": 0.0976, "region_41": 0.2004, "region_15": -0.2443, "region_30": 0.1512, "region_29": 0.4208, "region_50": -0.3255, "region_3": 0.1341, "region_11": 0.377},
}


def age_band(age: np.ndarray) -> np.ndarray:
    upper = np.array([high for _, high in AGE_BANDS])
    return np.minimum(np.searchsorted(upper, age, side="left"), len(AGE_BANDS) - 1)


def _group(codes: pd.Series, top: tuple[int, ...]) -> pd.Series:
    return codes.where(codes.isin(top), -1)


def response_design(frame: pd.DataFrame) -> pd.DataFrame:
    """The regressors of the Response model (shared by the derivation script and `generate`)."""
    insured = frame["Previously_Insured"].to_numpy() == 1
    damaged = frame["Vehicle_Damage"].to_numpy() == "Yes"
    band = age_band(frame["Age"].to_numpy())
    design = {
        "insured_damaged": insured & damaged,
        "insured_undamaged": insured & ~damaged,
        "uninsured_undamaged": ~insured & ~damaged,
        "vehicle_1_2_years": frame["Vehicle_Age"].to_numpy() == "1-2 Year",
        "vehicle_over_2_years": frame["Vehicle_Age"].to_numpy() == "> 2 Years",
        "male": frame["Gender"].to_numpy() == "Male",
        "premium_floor": frame["Annual_Premium"].to_numpy() == PREMIUM_FLOOR,
        "log_premium": np.log(frame["Annual_Premium"].to_numpy(dtype="float64")) - 10.4,
    }
    for i in range(1, len(AGE_BANDS)):
        design[f"age_band_{i}"] = band == i
    channel = _group(frame["Policy_Sales_Channel"].astype("int64"), TOP_CHANNELS).to_numpy()
    for code in TOP_CHANNELS:
        design[f"channel_{code}"] = channel == code
    region = _group(frame["Region_Code"].astype("int64"), TOP_REGIONS).to_numpy()
    for code in TOP_REGIONS:
        design[f"region_{code}"] = region == code
    return pd.DataFrame(design).astype("float64")


def _choice(rng: np.random.Generator, probs: dict, size: int, cast=str) -> np.ndarray:
    keys = list(probs)
    p = np.array([probs[k] for k in keys], dtype="float64")
    return np.array([cast(k) for k in keys])[rng.choice(len(keys), size=size, p=p / p.sum())]


def _conditional_choice(rng, by: np.ndarray, tables: list[dict], cast=str) -> np.ndarray:
    out = np.empty(len(by), dtype=object)
    for i, table in enumerate(tables):
        rows = np.flatnonzero(by == i)
        out[rows] = _choice(rng, table, len(rows), cast)
    return out


def generate(rows: int, seed: int = 0, first_id: int = 1) -> pd.DataFrame:
    """`rows` customers in the canonical training schema, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    f = FACTS
    band = rng.choice(len(AGE_BANDS), size=rows, p=np.array(f["age_band_probs"]) / sum(f["age_band_probs"]))
    low = np.array([lo for lo, _ in AGE_BANDS])[band]
    high = np.array([hi for _, hi in AGE_BANDS])[band]
    age = rng.integers(low, high + 1)
    vehicle_age = _conditional_choice(rng, band, f["vehicle_age_by_band"])
    damaged = rng.random(rows) < np.vectorize(f["damage_rate_by_vehicle_age"].get)(vehicle_age)
    insured = rng.random(rows) < np.where(damaged, f["insured_rate_by_damage"]["Yes"], f["insured_rate_by_damage"]["No"])
    channel = _conditional_choice(rng, band, f["channel_probs_by_band"], int).astype("int64")
    others = channel == -1
    channel[others] = _choice(rng, f["other_channel_probs"], int(others.sum()), int)
    premium = np.where(
        rng.random(rows) < f["premium_floor_rate"],
        PREMIUM_FLOOR,
        np.exp(rng.normal(f["log_premium_mean"], f["log_premium_std"], rows)),
    )
    frame = pd.DataFrame({
        "id": np.arange(first_id, first_id + rows, dtype="int64"),
        "Gender": np.where(rng.random(rows) < f["male_rate"], "Male", "Female"),
        "Age": age.astype("int64"),
        "Driving_License": (rng.random(rows) < f["driving_license_rate"]).astype("int64"),
        "Region_Code": _choice(rng, f["region_probs"], rows, int).astype("int64"),
        "Previously_Insured": insured.astype("int64"),
        "Vehicle_Age": vehicle_age.astype(str),
        "Vehicle_Damage": np.where(damaged, "Yes", "No"),
        "Annual_Premium": np.clip(np.round(premium), PREMIUM_FLOOR, PREMIUM_CAP),
        "Policy_Sales_Channel": channel,
        "Vintage": rng.integers(VINTAGE_RANGE[0], VINTAGE_RANGE[1] + 1, rows).astype("int64"),
    })
    design = response_design(frame)
    coefficients = np.array([f["response_coefficients"][c] for c in design.columns])
    logit = f["response_intercept"] + design.to_numpy() @ coefficients
    frame["Response"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("int64")
    for column in schema.columns(schema.TRAINING):
        frame[column.name] = frame[column.name].astype(column.pandas_dtype)
    return frame[schema.column_names(schema.TRAINING)]
