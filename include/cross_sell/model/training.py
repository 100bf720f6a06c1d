"""Training: one scikit-learn estimator (preprocessing + model + decision threshold) per run.

The final model is fitted on every labelled row the run may use, train + validation (the test split is
kept for the gate and the report alone). Its decision threshold is the F1-best cut of the pooled
out-of-fold predictions of the same pipeline on those rows (5 stratified, seeded folds): each row's
probability comes from a model that did not see it, as it will be for the customers scored later.
The model family (`model_families`) is a deployment setting and a run param.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import FixedThresholdClassifier, StratifiedKFold
from sklearn.pipeline import Pipeline

from ..storage.registry import sha256_file
from . import features, model_families

# The `hgb` family's estimator params (kept under this name: older code and manifests call them so).
ESTIMATOR_PARAMS = model_families.HGB_PARAMS
OOF_FOLDS = 5
# The threshold's out-of-fold predictions come from at most this many of the rows (a stratified, seeded
# sample; all of them below it, as for the real 57,166-row sample's 48,590). Five more fits on every row cost
# 4x the final fit (at 381,109 rows: 44 s of CPU for LightGBM, against a budget of 23 s for all task work);
# on 50,000 of those 323,942 rows the threshold moved by 0.004-0.005 and the test F1 by <= 0.0004
# (benchmarks/README.md, "Model families"). The model itself is always fitted on every row.
OOF_MAX_ROWS = 50_000
# How the threshold is chosen and what the model is fitted on: recorded in the manifest's `training`.
PROCEDURE = ("fit on train+validation; threshold: F1-best cut of pooled 5-fold out-of-fold predictions "
             "(on at most OOF_MAX_ROWS of those rows)")


class ThresholdedClassifier(FixedThresholdClassifier):
    """The fitted pipeline (`estimator_`) with its decision threshold (`best_threshold_`): `predict` is
    `predict_proba[:, 1] >= threshold`, as the service's labels are. `oof_` describes how the threshold was
    chosen (rows, folds, the out-of-fold metrics)."""

    @property
    def best_threshold_(self) -> float:
        return float(self.threshold)


def build_pipeline(seed: int, exclude: tuple[str, ...] = (), params: dict | None = None,
                   family: str | None = None) -> Pipeline:
    """The schema's preprocessing (with `exclude` and the family's own dropped features left out inside it),
    then the family's estimator (`params`: a version's recorded ones; default the family's)."""
    chosen = model_families.get(family)
    dropped = tuple(sorted(set(exclude) | set(chosen.dropped)))
    return Pipeline([
        ("preprocess", features.preprocessor(seed, dropped)),
        ("model", chosen.estimator(seed, params)),
    ])


def f1_threshold(y: np.ndarray, probability: np.ndarray) -> tuple[float, float]:
    """(threshold, F1): the cut with the best F1 when `probability >= threshold` means a buyer, placed
    halfway to the next lower probability, so a float32 rounding of either side cannot cross it."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, cuts = precision_recall_curve(y, probability)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    best = int(np.argmax(f1))
    below = cuts[best - 1] if best > 0 else 0.0
    return float((cuts[best] + below) / 2), float(f1[best])


def oof_rows(y: np.ndarray, seed: int, most: int = OOF_MAX_ROWS) -> np.ndarray:
    """The rows whose out-of-fold predictions choose the threshold: all, or a stratified sample of `most`."""
    if len(y) <= most:
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    chosen, _ = train_test_split(np.arange(len(y)), train_size=most, stratify=y, random_state=seed)
    return np.sort(chosen)


def out_of_fold(pipeline: Pipeline, x: np.ndarray, y: np.ndarray, seed: int,
                folds: int = OOF_FOLDS) -> np.ndarray:
    """Each row's positive-class probability from the pipeline fitted on the other folds."""
    probability = np.empty(len(y), dtype="float64")
    for fit_rows, held_out in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        fitted = clone(pipeline).fit(x[fit_rows], y[fit_rows])
        probability[held_out] = fitted.predict_proba(x[held_out])[:, 1]
    return probability


def train(train_frame: pd.DataFrame, validation_frame: pd.DataFrame, seed: int,
          exclude: tuple[str, ...] = (), params: dict | None = None,
          family: str | None = None) -> ThresholdedClassifier:
    """Fit the family's pipeline on train + validation, with the F1-best threshold of its pooled 5-fold
    out-of-fold predictions on those rows. `exclude`: features the model must not use (e.g. a protected
    attribute); it still takes the same input. `params`: the estimator's (default the family's; `reproduce`
    passes a version's recorded ones). `family`: default `CROSS_SELL_MODEL`, else `model_families.DEFAULT`."""
    from threadpoolctl import threadpool_limits

    from . import evaluation

    frame = pd.concat([train_frame, validation_frame], ignore_index=True)
    x, y = features.features_and_label(frame)
    pipeline = build_pipeline(seed, features.check_excluded(exclude), params, family)
    rows = oof_rows(y, seed)
    # scikit-learn's OpenMP (HistGradientBoosting) at the families' one thread too: on a shared 2-core machine a
    # second thread mostly waits, and CPU time is what the pipeline is measured by
    with threadpool_limits(model_families.THREADS, user_api="openmp"):
        probability = out_of_fold(pipeline, x[rows], y[rows], seed)
        threshold, _ = f1_threshold(y[rows], probability)
        model = ThresholdedClassifier(pipeline, threshold=threshold, response_method="predict_proba").fit(x, y)
    model_families.scrub(model.estimator_)
    model.oof_ = {"rows": int(len(rows)), "of_rows": int(len(y)), "max_rows": OOF_MAX_ROWS, "folds": OOF_FOLDS,
                  "seed": seed, "metrics": evaluation.metrics_of(y[rows], probability, threshold)}
    return model


def train_on_train_split(train_frame: pd.DataFrame, validation_frame: pd.DataFrame, seed: int,
                         exclude: tuple[str, ...] = (), params: dict | None = None):
    """The procedure of versions trained before issue #33 (no `training` record in their manifest): the
    `hgb` family fitted on the train split, its threshold the F1-best of 200 on the validation split.
    Only `reproduce` uses it, to rebuild such a version."""
    from sklearn.model_selection import TunedThresholdClassifierCV

    x_train, y_train = features.features_and_label(train_frame)
    pipeline = build_pipeline(seed, features.check_excluded(exclude), params or ESTIMATOR_PARAMS, "hgb")
    x_val, y_val = features.features_and_label(validation_frame)
    return TunedThresholdClassifierCV(pipeline.fit(x_train, y_train), scoring="f1", cv="prefit", refit=False,
                                      thresholds=200).fit(x_val, y_val)


def record(model, family: str | None = None) -> dict[str, Any]:
    """What the manifest records of how `model` was trained (`reproduce` follows it)."""
    chosen = model_families.get(family)
    oof = getattr(model, "oof_", {})
    return {"family": chosen.name, "procedure": PROCEDURE, "fit_splits": ["train", "validation"],
            "dropped_features": list(chosen.dropped), "threads": model_families.THREADS,
            "out_of_fold": {k: v for k, v in oof.items() if k != "metrics"}}


def threshold(model) -> float:
    return float(model.best_threshold_)


def save(model, path: str) -> str:
    """Write the model with joblib and return the file's sha256."""
    joblib.dump(model, path, compress=3)
    return sha256_file(path)


def version_for(trained_at: datetime, sha256: str) -> str:
    """Sortable and content-addressed: a retried push of the same file reuses its version."""
    return f"{trained_at.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{sha256[:10]}"
