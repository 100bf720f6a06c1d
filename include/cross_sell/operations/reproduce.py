"""Rebuild a registry version from what its signed manifest records, and say whether it comes out the same.

`python -m cross_sell reproduce VERSION`: the snapshot the version was trained on (its sha256 from the
manifest's `lineage`, checked on download), split again with the recorded seed (each split compared with
the recorded one), the estimator retrained with the recorded seed, model family and procedure (`training`:
fitted on train + validation, threshold from out-of-fold predictions; a version without it the way it was
trained then), estimator params and excluded features, converted to ONNX, and scored on the test split as
it serves. The report: whether the ONNX file is byte-identical (and if not: which metadata fields, whether
the graph's structure, which initializers differ, and whether its predictions on the test split are
identical to the recorded file's), every metric's recorded and rebuilt value,
the threshold, and the code and library versions of then and now (a difference there is the first suspect
when something differs).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import casting, schema, snapshot
from ..errors import NotRetryable
from ..governance import provenance
from ..model import evaluation, features, model_input, onnx_export, training
from ..model.onnx_model import OnnxModel
from ..storage import objects
from ..storage.registry import ModelRegistry


class NotReproducible(NotRetryable):
    """The manifest lacks what a rebuild needs (a version from before it was recorded)."""


def reproduce(registry: ModelRegistry, version: str) -> dict:
    manifest = registry.manifest(version)  # signature-verified: what it records is the training side's
    missing = provenance.missing(manifest)
    if missing:
        raise NotReproducible(f"{version}'s manifest does not record {', '.join(missing)} (it predates "
                              "reproducible manifests): it cannot be rebuilt")
    recorded_as = provenance.of_manifest(manifest)  # the one provenance record, as signed
    lineage, seed = recorded_as["lineage"], int(recorded_as["seed"])
    _still_there(registry, version, [lineage["snapshot"], *lineage["splits"].values()])
    with tempfile.TemporaryDirectory() as tmp:
        # CustodyError if the snapshot is no longer the recorded bytes (e.g. rewritten by an erasure)
        path = objects.download_artifact(registry.s3, registry.bucket, lineage["snapshot"], Path(tmp) / "s.parquet")
        frame, problems = casting.validate_frame(snapshot.read(str(path)), schema.TRAINING)
        if problems:
            raise NotReproducible(f"the recorded snapshot breaks today's schema: {problems[:5]}")
        parts = features.split(frame, seed)
        splits = {}
        for name, recorded in lineage["splits"].items():
            split_path = objects.download_artifact(registry.s3, registry.bucket, recorded, Path(tmp) / f"{name}.pq")
            splits[name] = bool(pd.read_parquet(split_path).equals(parts[name]))
    recorded, excluded = recorded_as["training"], tuple(recorded_as["excluded_features"])
    if recorded:  # fitted on train + validation, threshold from out-of-fold predictions (issue #33)
        model = training.train(parts["train"], parts["validation"], seed, excluded, recorded_as["estimator_params"],
                               family=recorded["family"])
    else:  # a version from before: the hgb family on the train split, threshold on the validation split
        model = training.train_on_train_split(parts["train"], parts["validation"], seed, excluded,
                                              recorded_as["estimator_params"])
    threshold = training.threshold(model)
    exported = onnx_export.export(model, threshold, model_input.from_frame(parts["test"]))
    if exported.onnx is None:
        raise NotReproducible(f"the rebuilt model does not convert to ONNX: {exported.problem}")
    y, probability, _ = evaluation.predictions(
        evaluation.ServedClassifier(OnnxModel(exported.onnx, threshold)), parts["test"])
    rebuilt = evaluation.metrics_of(y, probability, threshold)
    metrics = {name: {"recorded": value, "rebuilt": rebuilt.get(name),
                      "difference": abs(rebuilt[name] - value) if isinstance(value, (int, float)) else None}
               for name, value in manifest["metrics"].items() if name in rebuilt}
    differences = [m["difference"] for m in metrics.values() if m["difference"] is not None]
    onnx = {"recorded": manifest["artifacts"].get(registry.ONNX), "rebuilt": objects.sha256_bytes(exported.onnx)}
    onnx["identical"] = onnx["recorded"] == onnx["rebuilt"]
    if not onnx["identical"]:  # say what differs, and whether it matters for what is served
        served = registry.artifact(version, registry.ONNX, manifest)  # sha256 checked against the manifest
        onnx["differences"] = onnx_export.differences(served, exported.onnx) if served else None
        if served:
            matrix = model_input.from_frame(parts["test"])
            onnx["test_predictions_identical"] = bool(np.array_equal(
                OnnxModel(served, manifest["threshold"]).probability(matrix),
                OnnxModel(exported.onnx, threshold).probability(matrix)))
    largest = max(differences, default=0.0)
    now_libraries = provenance.library_versions()
    recorded_libraries = recorded_as["library_versions"] or {}
    return {
        "version": version,
        "identical": onnx["identical"] and largest == 0.0 and all(splits.values()),
        "snapshot": {**lineage["snapshot"], "verified": True, "rows": len(frame)},
        "splits_identical": splits,
        "onnx_sha256": onnx,
        "threshold": {"recorded": manifest["threshold"], "rebuilt": threshold},
        "metrics": metrics,
        "largest_metric_difference": largest,
        "recorded_with": {name: recorded_as[name] for name in provenance.HOW},
        "code_version": {"recorded": recorded_as["code_version"], "now": provenance.code_version()},
        "library_versions": {name: {"recorded": recorded_libraries.get(name), "now": now_libraries.get(name)}
                             for name in sorted(set(recorded_libraries) | set(now_libraries))},
        "library_differences": sorted(name for name in set(recorded_libraries) | set(now_libraries)
                                      if recorded_libraries.get(name) != now_libraries.get(name)),
    }


def _still_there(registry: ModelRegistry, version: str, recorded: list) -> None:
    """NotReproducible naming the first recorded object that is gone (deleted by retention, say)."""
    from botocore.exceptions import ClientError

    for artifact in recorded:
        try:
            registry.s3.head_object(Bucket=registry.bucket, Key=artifact["key"])
        except ClientError as error:
            status = (getattr(error, "response", {}) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status != 404:
                raise
            raise NotReproducible(f"{version} cannot be rebuilt: its recorded training data {artifact['key']} is "
                                  "gone (deleted by retention?)") from None


def summary(found: dict) -> str:
    """One line of what `reproduce` found: identical or not, how the ONNX file differs (metadata, graph
    structure, initializers, and whether the test-split predictions are the same), the largest metric
    difference and the libraries whose versions differ from the recorded ones."""
    onnx = found["onnx_sha256"]
    what = "byte-identical" if onnx["identical"] else _onnx_differences(onnx)
    return (f"{'identical' if found['identical'] else 'DIFFERS'} (ONNX {what}, largest metric difference "
            f"{found['largest_metric_difference']:.2e}; library versions differing from the recorded ones: "
            f"{', '.join(found['library_differences']) or 'none'})")


def _onnx_differences(onnx: dict) -> str:
    found = onnx.get("differences")
    if not found:
        return "differs"
    parts = [f"metadata {', '.join(found['metadata'])}" if found["metadata"] else "",
             "graph structure differs" if found["graph_structure"] != "identical" else "",
             f"{len(found['initializers'])} initializers differ" if found["initializers"] else ""]
    predictions = "identical" if onnx.get("test_predictions_identical") else "different"
    return (f"differs: {'; '.join(p for p in parts if p) or 'encoding only'}; test-split predictions "
            f"{predictions}")
