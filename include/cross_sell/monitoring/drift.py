"""Reference profiles of training data, and the distances that flag drift (new data) or skew (serving data).

A profile is plain JSON kept next to each pushed model (`models/<version>/profile.json`):
numeric features as decile bins of the training data, categorical ones as value frequencies.
Distances: population stability index (and Jensen-Shannon distance, reported) for numeric features,
L-infinity (largest change of one category's share) for categorical ones. Which features are which
comes from the schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon

from ..data import schema
from ..errors import NotRetryable

# Common rules of thumb: PSI > 0.2 is a significant shift; a category gaining or losing 10 points of
# share is worth a look. Override per feature (`thresholds={"Age": 0.1}`) from the DAG params or CLI.
DEFAULT_PSI = 0.2
DEFAULT_LINF = 0.1
BINS = 10
# Fewer rows than this are not judged (skew, prediction drift): with ten bins, a few hundred rows put a PSI
# of 0.2 within sampling noise of a stable population; 4 rows "drifted" on 6 of 10 features.
MIN_ROWS_TO_JUDGE = 300
_EPSILON = 1e-4  # keeps PSI finite when a bin is empty on one side


def too_few(rows: int) -> str | None:
    """Why `rows` sampled rows are not judged, or None when they are enough."""
    if rows < MIN_ROWS_TO_JUDGE:
        return f"too few rows to judge (n = {rows:,} < {MIN_ROWS_TO_JUDGE})"
    return None


class DriftError(NotRetryable):
    """New data drifted past a threshold and the run is configured to fail on drift."""


def _key(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return str(value)


def profile(frame: pd.DataFrame) -> dict:
    """The reference profile of a (training) frame."""
    features = {}
    for name in schema.CONTINUOUS_FEATURES:
        values = frame[name].dropna().to_numpy(dtype="float64")
        edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1])) if len(values) else np.array([])
        features[name] = {"kind": "numeric", "edges": edges.tolist(),
                          "proportions": binned(values, edges).tolist(), "mean": float(np.mean(values)),
                          "missing": float(frame[name].isna().mean())}
    for name in schema.DISCRETE_FEATURES:
        # the key of each distinct value, not of each row (2.3 million calls at 324,000 training rows)
        counts: dict[str, int] = {}
        for value, count in frame[name].value_counts(dropna=False, sort=False).items():
            counts[_key(value)] = counts.get(_key(value), 0) + int(count)
        ranked = sorted(counts.items(), key=lambda item: -item[1])  # most frequent first
        features[name] = {"kind": "categorical", "frequencies": {k: c / len(frame) for k, c in ranked}}
    return {"rows": int(len(frame)), "features": features}


def reference_profile(registry, version: str | None = None) -> tuple[str, dict]:
    """A registered model's training profile (the champion's by default); LookupError when there is none."""
    if version is None:
        champion = registry.champion()
        if champion is None:
            raise LookupError("no champion yet, so no training profile to compare with")
        version = champion.version
    reference = registry.version_json(version, "profile.json")
    if reference is None:
        raise LookupError(f"model {version} has no training profile (pushed before profiles existed?)")
    return version, reference


def binned(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The share of `values` in each bin between `edges` (len(edges) + 1 bins; a value on an edge goes up)."""
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return counts / max(counts.sum(), 1)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two distributions over the same bins (shares summing to 1)."""
    expected, actual = np.asarray(expected) + _EPSILON, np.asarray(actual) + _EPSILON
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass
class FeatureDrift:
    feature: str
    metric: str  # "psi" | "linf"
    distance: float
    threshold: float
    drifted: bool
    js_distance: float | None = None  # numeric features: also the Jensen-Shannon distance (base 2)
    detail: str = ""


@dataclass
class DriftReport:
    reference_rows: int
    current_rows: int
    features: list[FeatureDrift] = field(default_factory=list)

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def as_dict(self) -> dict:
        return {"reference_rows": self.reference_rows, "current_rows": self.current_rows, "drifted": self.drifted,
                "features": [f.__dict__ for f in self.features]}

    def table(self) -> str:
        lines = [f"{'feature':22s} {'metric':6s} {'distance':>9s} {'threshold':>9s} {'JS':>6s}  verdict"]
        for f in self.features:
            js = "" if f.js_distance is None else f"{f.js_distance:.3f}"
            lines.append(f"{f.feature:22s} {f.metric:6s} {f.distance:9.4f} {f.threshold:9.3f} {js:>6s}  "
                         f"{'DRIFT' if f.drifted else 'ok'}{'  ' + f.detail if f.detail else ''}")
        return "\n".join(lines)


def check_thresholds(thresholds: dict | None, what: str = "drift_thresholds") -> dict:
    """`thresholds` if every key is a feature and every limit a number >= 0 (`params.check_feature_limits`)."""
    from ..params import check_feature_limits

    return check_feature_limits(thresholds, what)


def compare(reference: dict, frame: pd.DataFrame, thresholds: dict | None = None) -> DriftReport:
    """Distances of `frame` from a reference profile; `thresholds` maps a feature to its own limit."""
    thresholds = check_thresholds(thresholds)
    report = DriftReport(reference["rows"], int(len(frame)))
    for name, ref in reference["features"].items():
        if ref["kind"] == "numeric":
            edges = np.asarray(ref["edges"])
            expected = np.asarray(ref["proportions"])
            actual = binned(frame[name].dropna().to_numpy(dtype="float64"), edges)
            distance = psi(expected, actual)
            limit = float(thresholds.get(name, DEFAULT_PSI))
            js = float(jensenshannon(expected + _EPSILON, actual + _EPSILON, base=2))
            detail = f"mean {ref['mean']:.4g} -> {frame[name].mean():.4g}"
            report.features.append(FeatureDrift(name, "psi", distance, limit, distance > limit, js, detail))
        else:
            before: dict[str, float] = ref["frequencies"]
            shares = frame[name].map(_key).value_counts(normalize=True, dropna=False)
            now = {str(k): float(v) for k, v in shares.items()}
            changes = {k: now.get(k, 0.0) - before.get(k, 0.0) for k in set(before) | set(now)}
            worst = max(changes, key=lambda k: abs(changes[k]))
            distance = abs(changes[worst])
            limit = float(thresholds.get(name, DEFAULT_LINF))
            detail = f"{worst!r}: {before.get(worst, 0.0):.1%} -> {now.get(worst, 0.0):.1%}"
            report.features.append(FeatureDrift(name, "linf", distance, limit, distance > limit, None, detail))
    return report
