"""`python -m cross_sell score`: a Kaggle-format CSV scored chunk by chunk with the DAG's checks and model."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from ..errors import NotRetryable
from ..memory import lean_allocators
from ..model.onnx_model import OnnxModel
from .engine import BatchScorer, probability_of


def score_csv(path: str, out: str, model: OnnxModel, model_version: str, scored_at: datetime,
              rows: int | None = None) -> dict:
    """`python -m cross_sell score`: a Kaggle-format CSV (the label, if present, is ignored) scored chunk
    by chunk with the same checks and engine as the DAG; OUT gets id, probability, label, model_version,
    scored_at; rows that fail go to OUT.quarantine.jsonl with their physical line and reasons."""
    from ..data import loader

    quarantine = f"{out}.quarantine.jsonl"
    for written in (out, quarantine):  # opening it for writing would empty the input before a row is read
        if Path(written).exists() and Path(path).exists() and Path(written).samefile(path):
            raise NotRetryable(f"{written} is the input file {path}: give --out another path")
    rows = rows or loader.CHUNK_ROWS  # the file's text cells, as the loader reads them
    lean_allocators()
    scorer = BatchScorer(model)
    scored = quarantined = 0
    with open(out, "w") as output, open(quarantine, "w") as bad:
        output.write("id,probability,label,model_version,scored_at\n")
        for frame, lines in loader.raw_chunks(path, rows):
            prepared = scorer.prepare(frame, allow_text=True, lines=lines)
            batch = scorer.finish(prepared, probability_of(model, prepared.matrix))
            for row in batch.quarantined:
                bad.write(json.dumps(row, default=str) + "\n")
            for customer, probability, label in zip(batch.ids, batch.probability, batch.labels, strict=True):
                output.write(f"{customer},{float(probability)!r},{int(label)},{model_version},{scored_at.isoformat()}\n")
            scored, quarantined = scored + len(batch.ids), quarantined + len(batch.quarantined)
    if not quarantined:
        Path(quarantine).unlink()  # "quarantine": null means no such file
    return {"scored": scored, "quarantined": quarantined, "model_version": model_version, "out": out,
            "quarantine": quarantine if quarantined else None}


def score_file(clients, csv_path: str, out: str, model: str = "champion", estimator=None,
               name: str | None = None) -> dict:
    """The `score` operation: `score_csv` with a registry model (verified as the service verifies it), or with
    `estimator`, a local one the user loaded, run as the service would run it: converted to ONNX."""
    from datetime import timezone

    if estimator is not None:
        from ..model import onnx_export

        served, version = OnnxModel(onnx_export.to_onnx(estimator), estimator.best_threshold_), name or "local"
    else:
        from .batch import served as registry_model

        served, version, _ = registry_model(clients.registry, model)
    return score_csv(csv_path, out, served, version, datetime.now(timezone.utc))
