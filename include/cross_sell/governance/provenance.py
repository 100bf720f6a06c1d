"""Where a model came from, recorded once: the signed manifest's provenance part, and every view of it.

`record` is built by the training run from its stage records (the `evaluate` task for MLflow, `push` for the
manifest: the same inputs, so the same record). Everything else that describes a model's origin is derived
from it by the functions below, never re-collected: the MLflow training run's params (`mlflow_params`),
`python -m cross_sell lineage`'s upstream (`of_manifest`) and what `reproduce` retrains from
(`of_manifest`, checked by `missing`).
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from .. import __version__

LIBRARIES = ("scikit-learn", "skl2onnx", "onnxruntime", "pandas", "numpy", "joblib", "pyarrow",
             "great-expectations", "model-signing", "fairlearn", "lightgbm", "catboost", "onnxmltools")
# How the model was made: with `lineage`'s snapshot, what `reproduce` retrains it from.
HOW = ("seed", "excluded_features", "model_family", "estimator_params", "training", "split_fractions")
# Where its data came from: the run, its artifacts, the exact objects (sha256, size) and the data's identity.
WHENCE = ("run_id", "run_artifacts", "trained_at", "rows", "data_fingerprint", "lineage")
WITH = ("code_version", "library_versions")  # the code and the libraries it was made with
FIELDS = WHENCE + HOW + WITH
# What a rebuild cannot do without (a manifest from before reproducible manifests lacks some).
NEEDED_TO_REBUILD = ("lineage", "seed", "estimator_params", "excluded_features")


def library_versions() -> dict:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def code_version() -> str:
    """Package version, plus the git commit when running from a checkout (CROSS_SELL_CODE_VERSION wins)."""
    if os.environ.get("CROSS_SELL_CODE_VERSION"):
        return os.environ["CROSS_SELL_CODE_VERSION"]
    try:
        commit = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+g{commit}" if commit else __version__


def record(run_id: str, run_artifacts: str, trained: Mapping[str, Any], extracted: Mapping[str, Any],
           validation: Mapping[str, Any] | None) -> dict:
    """The provenance of a candidate, from its run's records: what the manifest signs (`FIELDS`)."""
    from ..model import features, model_families

    family = trained.get("model_family", "hgb")
    return {
        "run_id": run_id,
        "run_artifacts": run_artifacts,
        "trained_at": trained["trained_at"],
        "rows": extracted["rows"],
        "data_fingerprint": extracted["fingerprint"],
        # The exact objects it was trained and tested on (sha256 and size), as their writers recorded them,
        # and the validation verdict of that snapshot.
        "lineage": {**trained["lineage"], "validation": validation},
        "seed": trained["seed"],
        "excluded_features": trained.get("excluded_features", []),
        "model_family": family,
        "estimator_params": model_families.get(family).params,
        "training": trained.get("training"),  # how it was fitted and its threshold chosen
        "split_fractions": features.SPLIT_FRACTIONS,
        "code_version": code_version(),
        "library_versions": library_versions(),
    }


def of_manifest(manifest: Mapping[str, Any]) -> dict:
    """The provenance part of a signed manifest (a field an older manifest lacks is None)."""
    return {name: manifest.get(name) for name in FIELDS}


def missing(manifest: Mapping[str, Any]) -> list[str]:
    return [name for name in NEEDED_TO_REBUILD if name not in manifest]


def mlflow_params(provenance: Mapping[str, Any]) -> dict:
    """The MLflow training run's params of a provenance record: how it was made, the data's size and
    identity (the snapshot's sha256 and bytes), and each code and library version as `version.<name>`."""
    snapshot = provenance["lineage"]["snapshot"]
    return {**{name: provenance[name] for name in HOW}, "rows": provenance["rows"],
            "data_fingerprint": provenance["data_fingerprint"], "snapshot_sha256": snapshot["sha256"],
            "snapshot_bytes": snapshot["bytes"], "version.code": provenance["code_version"],
            **{f"version.{name}": value for name, value in provenance["library_versions"].items()}}
