"""Shared helpers for the serving tests: small real models, signed and published to the local S3 registry."""

from __future__ import annotations

from functools import cache

from cross_sell import features, model_input, onnx_export, synthetic, training
from cross_sell.registry import ModelRegistry
from cross_sell.signing import ManifestSigner

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
    from cross_sell.registry import PointerError

    try:
        current = registry.champion()
        etag = current.etag if current else None
    except PointerError as unreadable:
        etag = unreadable.etag
    registry.set_champion(version, etag, "promote", signer or session_signer(), run_id=f"run-{version}")
