"""Scoring a model on labelled data, and the promotion gate: the one rule that blesses a candidate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.base import BaseEstimator, ClassifierMixin

from ..data import schema
from ..errors import NotRetryable
from ..governance.policy import Policy
from . import fairness, features

PRIMARY_METRIC = "roc_auc"


class ServedClassifier(ClassifierMixin, BaseEstimator):
    """A served model (`onnx_model.OnnxModel`) behind scikit-learn's classifier interface, so metrics,
    slices and permutation importance are computed on exactly what serves, without unpickling."""

    def __init__(self, served=None):
        self.served = served

    def fit(self, x=None, y=None):
        return self

    @property
    def classes_(self) -> np.ndarray:
        return np.array([0, 1])

    @property
    def best_threshold_(self) -> float:
        return self.served.threshold

    def predict_proba(self, x) -> np.ndarray:
        probability = self.served.probability(x)
        return np.column_stack([1.0 - probability, probability])

    def predict(self, x) -> np.ndarray:
        return self.served.labels(self.served.probability(x))


def predictions(model, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, float]:
    """Labels, positive-class probabilities and the model's threshold: one model call for all metrics."""
    x, y = features.features_and_label(frame)
    return y, model.predict_proba(x)[:, 1], float(model.best_threshold_)


def score(model, frame: pd.DataFrame) -> dict:
    return metrics_of(*predictions(model, frame))


def metrics_of(y: np.ndarray, probability: np.ndarray, threshold: float) -> dict:
    predicted = (probability >= threshold).astype(int)  # what the thresholded classifier's predict() does
    return {
        "rows": int(len(y)),
        "positive_rate": round(float(np.mean(y)), 6),
        "roc_auc": float(skm.roc_auc_score(y, probability)),
        "pr_auc": float(skm.average_precision_score(y, probability)),
        "log_loss": float(skm.log_loss(y, probability, labels=[0, 1])),
        "threshold": threshold,
        "f1": float(skm.f1_score(y, predicted, zero_division=0)),
        "precision": float(skm.precision_score(y, predicted, zero_division=0)),
        "recall": float(skm.recall_score(y, predicted, zero_division=0)),
    }


def decide(candidate: dict, champion: dict | None, min_roc_auc: float, margin: float) -> tuple[bool, str]:
    """Bless a first model that reaches the floor, or a challenger that beats the champion by the margin
    (metrics only; `Gate.judge` adds what overrides this)."""
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


class UnreadableChampion(NotRetryable):
    """A champion pointer exists, but its champion cannot be verified or scored: the gate fails closed."""


@dataclass(frozen=True)
class Verdict:
    bless: bool
    challenger: bool  # not blessed, but good enough to be scored in shadow beside the champion
    reason: str
    overrides: tuple[str, ...] = ()  # what overrode the metric rule, worded (each also logged by the caller)


@dataclass(frozen=True)
class Gate:
    """The promotion rule of a training run, whole: the floor, the margin, the fairness cap, and the fail-closed
    rule for a champion that cannot be verified or scored (`replaceable`). A DAG run's gate is `for_run`: the
    deployment policy, tightened by the run's params (which `Policy.check` refused if they loosened it)."""

    min_roc_auc: float
    margin: float
    max_equalized_odds_difference: float = Policy.max_equalized_odds_difference
    replace_unreadable: bool = False
    policy: dict[str, Any] = field(default_factory=lambda: Policy().record())  # the policy in force, recorded

    @classmethod
    def for_run(cls, policy: Policy, params: Mapping[str, Any]) -> "Gate":
        """The run's gate: each rule the stricter of the policy and the run's params."""
        strict = policy.tightened({"min_roc_auc": policy.min_roc_auc, "promotion_margin": policy.promotion_margin,
                                   "max_equalized_odds_difference": policy.max_equalized_odds_difference,
                                   "replace_unreadable_champion": False, **params})
        return cls(min_roc_auc=strict["min_roc_auc"], margin=strict["promotion_margin"],
                   max_equalized_odds_difference=strict["max_equalized_odds_difference"],
                   replace_unreadable=strict["replace_unreadable_champion"], policy=policy.record())

    def replaceable(self, champion: str | None, distrust: str | None) -> dict | None:
        """The fail-closed rule: a champion that cannot be verified or scored (`distrust` says why) stops the
        run (UnreadableChampion), unless this gate lets the candidate replace it on the floor alone; then the
        champion replaced and why, for the decision and the audit record. None when the champion is trusted."""
        if distrust is None:
            return None
        if not self.replace_unreadable:
            raise UnreadableChampion(
                f"{distrust}. The promotion gate fails closed: nothing is pushed while the champion cannot be "
                "verified and scored. Repair the pointer (python -m cross_sell champion show), or trigger the "
                "run with replace_unreadable_champion=true where the deployment policy allows it "
                "(CROSS_SELL_ALLOW_REPLACE_UNREADABLE_CHAMPION) to let the candidate replace it on the floor "
                "alone (recorded in the decision and the audit record).")
        return {"version": champion, "reason": distrust}

    def judge(self, candidate: dict, champion: dict | None, serving_problem: str | None,
              replaced: dict | None = None) -> Verdict:
        """`candidate` / `champion`: `report.model_facts` (metrics and fairness on the same test split);
        `serving_problem`: why the candidate has no faithful ONNX file; `replaced`: the unreadable champion
        (version and reason) the candidate may replace because `replace_unreadable` is set.

        The metric rule (`decide`), then what overrides it: a candidate past the fairness cap and one that
        cannot be served faithfully are never blessed (nor shadowed). A challenger is faithful, fair, above
        the floor and a model of its own (not the champion's twin), yet not better by the margin."""
        metrics = candidate["metrics"]
        incumbent = champion["metrics"] if champion is not None else None
        bless, reason = decide(metrics, incumbent, self.min_roc_auc, self.margin)
        overrides = []
        unfair = fairness.gate(candidate["fairness"], self.max_equalized_odds_difference)
        if unfair and bless:
            bless, reason = False, f"{reason}, but not blessed: {unfair}"
            overrides.append(reason)
        if replaced:
            reason = (f"{replaced['reason']}; replace_unreadable_champion is set, so judged against the floor: "
                      f"{reason}")
            overrides.append(reason)
        if serving_problem:
            bless, reason = False, f"candidate cannot be served faithfully: {serving_problem}"
            overrides.append(reason)
        challenger = (not bless and incumbent is not None and not serving_problem and unfair is None
                      and metrics[PRIMARY_METRIC] >= self.min_roc_auc and metrics != incumbent)
        return Verdict(bless=bless, challenger=challenger, reason=reason, overrides=tuple(overrides))


def calibration_table(y: np.ndarray, probability: np.ndarray, bins: int = 20) -> dict:
    """Observed positive rate per bin of predicted probability (bins of equal row counts), on labelled
    data: what batch scoring turns a probability into an expected buy rate with."""
    edges = np.unique(np.quantile(probability, np.linspace(0, 1, bins + 1)[1:-1]))
    index = np.searchsorted(edges, probability, side="right")
    rows = np.bincount(index, minlength=len(edges) + 1)
    positives = np.bincount(index, weights=y, minlength=len(edges) + 1)
    sums = np.bincount(index, weights=probability, minlength=len(edges) + 1)
    safe = np.maximum(rows, 1)
    return {"edges": edges.tolist(), "rows": rows.tolist(), "observed_rate": (positives / safe).tolist(),
            "mean_probability": (sums / safe).tolist()}


def calibrated_rate(calibration: dict, probability: np.ndarray) -> np.ndarray:
    """Each probability's expected positive rate from a `calibration_table`."""
    index = np.searchsorted(np.asarray(calibration["edges"]), probability, side="right")
    return np.asarray(calibration["observed_rate"])[index]


SLICE_COLUMNS = ("Vehicle_Age", "Gender", "Previously_Insured")


def slice_metrics(frame: pd.DataFrame, y: np.ndarray, probability: np.ndarray, threshold: float,
                  columns=SLICE_COLUMNS) -> list[dict]:
    """Metrics per value of each slice column, at the model's own threshold (`predictions` of `frame`)."""
    predicted = (probability >= threshold).astype(int)
    rows = []
    for column in columns:
        for value in sorted(frame[column].unique(), key=str):
            mask = (frame[column] == value).to_numpy()
            y_slice = y[mask]
            rows.append({
                "column": column, "value": value.item() if hasattr(value, "item") else value,
                "rows": int(mask.sum()), "positive_rate": float(y_slice.mean()),
                # ROC-AUC is undefined on a slice with one class only (e.g. nobody previously insured buys)
                "roc_auc": float(skm.roc_auc_score(y_slice, probability[mask])) if len(set(y_slice)) == 2 else None,
                "f1": float(skm.f1_score(y_slice, predicted[mask], zero_division=0)),
                "predicted_positive_rate": float(predicted[mask].mean()),
            })
    return rows


def feature_importance(model, frame: pd.DataFrame, seed: int = 0, max_rows: int = 5_000,
                       repeats: int = 3) -> list[dict]:
    """Permutation importance (drop in ROC-AUC) of each schema feature, largest first.

    scikit-learn's `permutation_importance(model, x, y, scoring="roc_auc", n_repeats=3, random_state=seed)`,
    the same permutations and figures, but a permuted matrix goes to the model only for the rows whose value
    the permutation changed: every other row is the row already scored. A binary feature changes about half
    of the rows and Driving_License almost none, so a report scores ~35 % fewer rows (a tree ensemble's time
    is per row: 483 LightGBM trees cost 15 us a row). tests/test_training_evaluation.py checks the figures
    against scikit-learn's."""
    from sklearn.utils import check_random_state

    sample = frame.sample(n=min(max_rows, len(frame)), random_state=seed)
    x, y = features.features_and_label(sample)
    baseline = model.predict_proba(x)[:, 1]
    reference = skm.roc_auc_score(y, baseline)
    shuffle_seed = check_random_state(seed).randint(np.iinfo(np.int32).max + 1)
    drops = np.empty((x.shape[1], repeats))
    for j in range(x.shape[1]):
        rng, order = check_random_state(shuffle_seed), np.arange(len(x))
        permuted = x.copy()
        for r in range(repeats):
            rng.shuffle(order)
            permuted[:, j] = permuted[order, j]  # as scikit-learn does: each repeat shuffles the last one
            same = (permuted[:, j] == x[:, j]) | (np.isnan(permuted[:, j]) & np.isnan(x[:, j]))
            probability = baseline.copy()
            if not same.all():
                probability[~same] = model.predict_proba(permuted[~same])[:, 1]
            drops[j, r] = reference - skm.roc_auc_score(y, probability)
    ranked = sorted(zip(schema.FEATURES, drops.mean(axis=1), drops.std(axis=1), strict=True),
                    key=lambda item: -item[1])
    return [{"feature": name, "roc_auc_drop": float(mean), "std": float(std)} for name, mean, std in ranked]


def evaluate_csv(clients, csv_path: str, model: str = "champion", estimator=None, name: str | None = None) -> dict:
    """The `evaluate` operation: the metrics of a registry model (its signed manifest and verified ONNX file,
    never a pickle) on a labelled Kaggle-format CSV; or of `estimator`, a local one the user loaded."""
    from ..data import loader

    frame = loader.read_csv(csv_path)
    if estimator is None:
        name = clients.registry.resolve(model)
        served, _ = clients.registry.served_model(name)
        estimator = ServedClassifier(served)
    return {"model": name, "csv": csv_path, "metrics": score(estimator, frame)}
