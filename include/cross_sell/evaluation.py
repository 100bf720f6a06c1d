"""Scoring a model on labelled data, and the rule that blesses a candidate."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from . import features

PRIMARY_METRIC = "roc_auc"


def score(model, frame: pd.DataFrame) -> dict:
    x, y = features.features_and_label(frame)
    probability = model.predict_proba(x)[:, 1]
    predicted = model.predict(x)
    return {
        "rows": int(len(y)),
        "positive_rate": round(float(np.mean(y)), 6),
        "roc_auc": float(skm.roc_auc_score(y, probability)),
        "pr_auc": float(skm.average_precision_score(y, probability)),
        "log_loss": float(skm.log_loss(y, probability, labels=[0, 1])),
        "threshold": float(model.best_threshold_),
        "f1": float(skm.f1_score(y, predicted, zero_division=0)),
        "precision": float(skm.precision_score(y, predicted, zero_division=0)),
        "recall": float(skm.recall_score(y, predicted, zero_division=0)),
    }


def decide(candidate: dict, champion: dict | None, min_roc_auc: float, margin: float) -> tuple[bool, str]:
    """Bless a first model that reaches the floor, or a challenger that beats the champion by the margin."""
    value = candidate[PRIMARY_METRIC]
    if champion is None:
        if value >= min_roc_auc:
            return True, f"no champion yet and candidate {PRIMARY_METRIC} {value:.4f} >= minimum {min_roc_auc:.4f}"
        return False, f"no champion yet but candidate {PRIMARY_METRIC} {value:.4f} < minimum {min_roc_auc:.4f}"
    incumbent = champion[PRIMARY_METRIC]
    if value >= incumbent + margin:
        return True, (f"candidate {PRIMARY_METRIC} {value:.4f} beats champion {incumbent:.4f} "
                      f"by {value - incumbent:+.4f} >= margin {margin:.4f}")
    return False, (f"candidate {PRIMARY_METRIC} {value:.4f} vs champion {incumbent:.4f}: "
                   f"{value - incumbent:+.4f} < margin {margin:.4f}")
