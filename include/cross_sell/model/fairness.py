"""How a model treats the groups of each protected attribute (`schema.PROTECTED_ATTRIBUTES`): fairlearn's figures.

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
    """{attribute: {"groups": [per-group figures], "demographic_parity_ratio", "equalized_odds_difference"}}.

    fairlearn's figures (`MetricFrame` with `selection_rate`, `true_positive_rate`, `false_positive_rate`,
    `demographic_parity_ratio`, `equalized_odds_difference`), counted per group with NumPy: fairlearn's own
    per-group loop took 2.5-4 s of CPU on a 57,000-row test split, these counts take milliseconds.
    tests/test_training_evaluation.py checks that both give the same figures."""
    y = np.asarray(y)
    predicted = (np.asarray(probability) >= threshold).astype(int)
    result = {}
    for attribute in BY_NAME:
        names, index = np.unique(groups(frame, attribute).to_numpy(dtype=str), return_inverse=True)

        def per_group(values, index=index, size=len(names)) -> np.ndarray:
            return np.bincount(index, weights=values, minlength=size)

        rows, buyers = per_group(None), per_group(y)
        selected, hits, false_alarms = per_group(predicted), per_group(predicted * y), per_group(predicted * (1 - y))
        selection = selected / rows
        # 0 for a group without buyers (or without non-buyers), as fairlearn gives (scikit-learn's normalised
        # confusion matrix turns 0/0 into 0)
        tpr = np.divide(hits, buyers, out=np.zeros(len(names)), where=buyers > 0)
        fpr = np.divide(false_alarms, rows - buyers, out=np.zeros(len(names)), where=rows - buyers > 0)
        mean_probability, observed = per_group(probability) / rows, buyers / rows
        result[attribute] = {
            "groups": [{"group": str(name), "rows": int(rows[i]), "selection_rate": float(selection[i]),
                        "true_positive_rate": _number(tpr[i]), "false_positive_rate": _number(fpr[i]),
                        "mean_probability": float(mean_probability[i]), "observed_rate": float(observed[i])}
                       for i, name in enumerate(names)],
            "demographic_parity_ratio": _number(_ratio(selection)),
            "equalized_odds_difference": _number(max(_spread(tpr), _spread(fpr))),
        }
    return result


def _ratio(rates: np.ndarray) -> float:
    """Lowest / highest, NaN skipped (fairlearn's `ratio(method="between_groups")`)."""
    rates = rates[~np.isnan(rates)]
    if not len(rates):
        return float("nan")
    high = float(np.max(rates))
    return float(np.min(rates)) / high if high else float("nan")


def _spread(rates: np.ndarray) -> float:
    """Highest - lowest, NaN skipped (fairlearn's `difference(method="between_groups")`)."""
    rates = rates[~np.isnan(rates)]
    return float(np.max(rates) - np.min(rates)) if len(rates) else float("nan")


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
