"""How a model treats the groups of each protected attribute (`schema.PROTECTED_ATTRIBUTES`), with fairlearn.

Per group, at the model's own decision threshold: the selection rate (share contacted), the true- and
false-positive rates, and calibration (mean predicted probability beside the observed buy rate). Per
attribute: fairlearn's demographic-parity ratio (lowest selection rate / highest) and equalized-odds
difference (the larger of the TPR and FPR gaps between groups). The blessing rule caps the latter on the
gated attributes (`gate`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import schema

BY_NAME = {attribute.name: attribute for attribute in schema.PROTECTED_ATTRIBUTES}


def groups(frame: pd.DataFrame, attribute: str) -> pd.Series:
    """Each row's group of `attribute`: its value, or its band (e.g. "30-39", "70+") for a banded number."""
    bands = BY_NAME[attribute].bands
    values = frame[attribute]
    if bands is None:
        return values.astype(str).rename(attribute)
    labels = [f"{low}-{high - 1}" for low, high in zip(bands, bands[1:], strict=False)] + [f"{bands[-1]}+"]
    cut = pd.cut(values, bins=[*bands, np.inf], right=False, labels=labels)
    return cut.astype(str).rename(attribute)


def assess(frame: pd.DataFrame, y: np.ndarray, probability: np.ndarray, threshold: float) -> dict:
    """{attribute: {"groups": [per-group figures], "demographic_parity_ratio", "equalized_odds_difference"}}."""
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_ratio,
        equalized_odds_difference,
        false_positive_rate,
        mean_prediction,
        selection_rate,
        true_positive_rate,
    )

    predicted = (probability >= threshold).astype(int)
    result = {}
    for attribute in BY_NAME:
        sensitive = groups(frame, attribute).to_numpy()
        by_label = MetricFrame(
            metrics={"rows": count, "selection_rate": selection_rate, "true_positive_rate": true_positive_rate,
                     "false_positive_rate": false_positive_rate, "observed_rate": mean_prediction},
            y_true=y, y_pred=predicted, sensitive_features=sensitive)
        # calibration: mean predicted probability per group, beside the observed rate (mean of y)
        mean_probability = MetricFrame(metrics=mean_prediction, y_true=y, y_pred=probability,
                                       sensitive_features=sensitive).by_group
        observed = MetricFrame(metrics=mean_prediction, y_true=y, y_pred=y, sensitive_features=sensitive).by_group
        table = by_label.by_group.drop(columns="observed_rate")
        rows = []
        for group, figures in table.iterrows():
            rows.append({"group": str(group), "rows": int(figures["rows"]),
                         "selection_rate": float(figures["selection_rate"]),
                         "true_positive_rate": _number(figures["true_positive_rate"]),
                         "false_positive_rate": _number(figures["false_positive_rate"]),
                         "mean_probability": float(mean_probability[group]),
                         "observed_rate": float(observed[group])})
        result[attribute] = {
            "groups": rows,
            "demographic_parity_ratio": _number(demographic_parity_ratio(y, predicted, sensitive_features=sensitive)),
            "equalized_odds_difference": _number(equalized_odds_difference(y, predicted,
                                                                           sensitive_features=sensitive)),
        }
    return result


def _number(value) -> float | None:
    """A float for JSON; None where a rate is undefined (a group with no buyers, or no non-buyers)."""
    value = float(value)
    return None if np.isnan(value) else value


def gate(fairness: dict, max_equalized_odds_difference: float) -> str | None:
    """Why a candidate with these figures (`assess`) must not be blessed, or None: a gated attribute whose
    equalized-odds difference exceeds the cap, or one that could not be measured (fails closed)."""
    for attribute in (a.name for a in schema.PROTECTED_ATTRIBUTES if a.gated):
        difference = fairness.get(attribute, {}).get("equalized_odds_difference")
        if difference is None:
            return f"the equalized-odds difference on {attribute} could not be measured (a group lacks buyers)"
        if difference > max_equalized_odds_difference:
            return (f"equalized-odds difference on {attribute} {difference:.4f} > maximum "
                    f"{max_equalized_odds_difference:.4f}")
    return None


def summary(fairness: dict) -> dict:
    """Per attribute, the two figures (no groups): what the decision, the manifest and an approval show."""
    return {attribute: {"demographic_parity_ratio": figures["demographic_parity_ratio"],
                        "equalized_odds_difference": figures["equalized_odds_difference"]}
            for attribute, figures in fairness.items()}
