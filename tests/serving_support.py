"""Shared helpers for the serving tests: small real models published to the local S3 registry."""

from __future__ import annotations

from pathlib import Path

from cross_sell import features, synthetic, training
from cross_sell.registry import ModelRegistry

PREFIX = "vi"


def train_model(path: Path, seed: int, rows: int = 4_000) -> dict:
    """Train and save a model; returns the manifest fields the service reads."""
    parts = features.split(synthetic.generate(rows, seed=seed), seed=seed)
    model = training.train(parts["train"], parts["validation"], seed=seed)
    return {"sha256": training.save(model, str(path)), "threshold": training.threshold(model),
            "model_input": features.MODEL_INPUT,
            "metrics": {"roc_auc": 0.8}, "trained_at": "2026-11-22T00:00:00+00:00", "data_fingerprint": "f" * 64}


def publish(registry: ModelRegistry, path: Path, version: str, fields: dict) -> None:
    registry.publish(path, {"version": version, **fields})


def promote(registry: ModelRegistry, version: str) -> None:
    current = registry.champion()
    registry.set_champion(version, current.etag if current else None, "promote", run_id=f"run-{version}")
