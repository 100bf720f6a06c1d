"""Shared helpers for the serving tests: small real models, signed and published to the local S3 registry."""

from __future__ import annotations

from functools import cache

from cross_sell.data import synthetic
from cross_sell.model import features, model_input, onnx_export, training
from cross_sell.storage.registry import ModelRegistry
from cross_sell.storage.signing import ManifestSigner

PREFIX = "vi"


@cache
def train_model(seed: int, rows: int = 4_000) -> dict:
    """A trained model as the pipeline publishes it: files (ONNX, joblib) and manifest fields."""
    import io

    import joblib

    parts = features.split(synthetic.generate(rows, seed=seed), seed=seed)
    model = training.train(parts["train"], parts["validation"], seed=seed)
    threshold = training.threshold(model)
    exported = onnx_export.export(model, threshold, model_input.from_frame(parts["test"]))
    estimator = io.BytesIO()
    joblib.dump(model, estimator)
    return {"model": model,
            "files": {ModelRegistry.ONNX: exported.onnx, ModelRegistry.ESTIMATOR: estimator.getvalue()},
            "manifest": {"threshold": threshold, "model_input": model_input.LAYOUT, "onnx_parity": exported.parity,
                         "metrics": {"roc_auc": 0.8}, "trained_at": "2026-11-22T00:00:00+00:00",
                         "data_fingerprint": "f" * 64}}


def publish(registry: ModelRegistry, version: str, trained: dict, signer, **manifest) -> dict:
    return registry.publish({"version": version, **trained["manifest"], **manifest}, trained["files"], signer)


@cache
def session_signer() -> ManifestSigner:
    """The training side's key of this test session (tests/support.py makes the pair)."""
    from support import SIGNING_KEY

    return ManifestSigner.from_file(SIGNING_KEY)


def promote(registry: ModelRegistry, version: str, signer: ManifestSigner | None = None) -> None:
    """Make `version` the champion, over whatever pointer is there (an unreadable one included)."""
    from cross_sell.storage.registry import PointerError

    try:
        current = registry.champion()
        etag = current.etag if current else None
    except PointerError as unreadable:
        etag = unreadable.etag
    registry.set_champion(version, etag, "promote", signer or session_signer(), run_id=f"run-{version}")


def record_run(registry: ModelRegistry, run: str, frame=None) -> dict:
    """A training run's snapshot and splits in the bucket (`runs/<run>/`, Parquet with an `id` column, from
    `frame` or a few synthetic customers), and their records as a manifest's `lineage` names them."""
    import io

    from cross_sell.storage import objects

    frame = synthetic.generate(30, seed=len(run)) if frame is None else frame
    lineage: dict = {"splits": {}}
    for name in ("snapshot", "train", "validation", "test"):
        key = objects.join_key(registry.prefix, "runs", run, "raw/snapshot.parquet" if name == "snapshot"
                               else f"features/{name}.parquet")
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        body = buffer.getvalue()
        objects.put(registry.s3, registry.bucket, key, body)
        if name == "snapshot":
            lineage["snapshot"] = objects.artifact(key, body)
        else:
            lineage["splits"][name] = objects.artifact(key, body)
    return lineage


def publish_from_run(registry: ModelRegistry, version: str, run: str, signer, frame=None, seed: int = 1) -> dict:
    """A version as the pipeline pushes it: trained (`seed`) on a recorded run (`record_run`)."""
    return publish(registry, version, train_model(seed), signer, run_id=run, lineage=record_run(registry, run, frame),
                   seed=seed, estimator_params={}, excluded_features=[])
