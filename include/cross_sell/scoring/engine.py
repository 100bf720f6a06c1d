"""Customers checked and scored a batch at a time, through the service's own checks and model input.

`scored_batches` turns a stream of MongoDB documents into `ScoredBatch`es of bounded size: each piece of
documents is checked column by column (`casting.cast_documents`), the rows that fail are set aside with
their reasons, and the others go into one reused set of arrays (`BatchArrays`) that ONNX Runtime scores
`INFERENCE_ROWS` at a time in its own thread while the next pieces are checked. `BatchScorer` does the same
for frames of a CSV file (`file_scoring`) and for small lists of documents (tests).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from ..data import casting, schema
from ..model import model_input
from ..model.onnx_model import OnnxModel

FIELDS = tuple(schema.column_names(schema.SCORING))  # what is read of each customer document
# Rows per ONNX Runtime call: large enough that the inference thread rarely waits for the GIL between
# calls, small enough that its buffers stay small (benchmarks/README.md, "Batch scoring").
INFERENCE_ROWS = 5_000


def plain(value):
    """A cell or document value as plain JSON (None for a missing or NaN value), for quarantine files."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value


def probability_of(model: OnnxModel, matrix: np.ndarray) -> np.ndarray:
    return model.probability(matrix) if len(matrix) else np.empty(0)


@dataclass
class Prepared:
    """A frame of a CSV file checked and turned into model input; the rows that failed are set aside."""

    ids: np.ndarray
    matrix: np.ndarray
    quarantined: list[dict]  # {"id", "problems": [{"field", "reason"}], "document"[, "line"]}


@dataclass
class ScoredBatch:
    """Scored customers (ids, probabilities, labels) and the documents set aside, with their reasons."""

    ids: np.ndarray
    probability: np.ndarray
    labels: np.ndarray
    quarantined: list[dict]


class BatchScorer:
    """Checks and scores batches of customers with one model, through the service's own path."""

    def __init__(self, model: OnnxModel):
        self.model = model

    def prepare(self, raw, allow_text: bool = False, lines=None) -> Prepared:
        """A frame of customers (CSV cells when `allow_text`) checked against the schema's scoring
        environment; `lines` gives a quarantined row's line in a file."""
        absent = [name for name in FIELDS if name not in raw.columns]
        cast, problems = casting.cast_columns(
            {name: raw[name].to_numpy() for name in FIELDS if name in raw.columns}, len(raw), schema.SCORING,
            allow_text)
        bad: dict[int, list[dict]] = {}
        if absent:  # a column the file lacks is every row's problem, named once per row, first
            bad = {row: [{"field": name, "reason": "missing column"} for name in absent] for row in range(len(raw))}
        for problem in problems:
            assert problem.row is not None  # a frame's problems are a row's
            if problem.column not in absent:
                bad.setdefault(problem.row, []).append({"field": problem.column, "reason": problem.reason})
        quarantined = []
        for row, reasons in sorted(bad.items()):
            document = {k: plain(v) for k, v in raw.iloc[row].items()}
            quarantined.append({"id": document.get(schema.KEY), "problems": reasons, "document": document,
                                **({"line": int(lines[row])} if lines is not None else {})})
        good = np.ones(len(raw), dtype=bool)
        good[list(bad)] = False
        kept = {name: values[good] for name, values in cast.items()}
        matrix = model_input.from_columns(kept, np.empty((int(good.sum()), len(schema.FEATURES)), dtype=np.float32))
        return Prepared(kept[schema.KEY], matrix, quarantined)

    def finish(self, prepared: Prepared, probability: np.ndarray) -> ScoredBatch:
        return ScoredBatch(prepared.ids, probability, self.model.labels(probability), prepared.quarantined)

    def score(self, documents: list[dict]) -> ScoredBatch:
        """One list of documents as MongoDB holds them, checked and scored (tests, small batches)."""
        batch = BatchArrays(len(documents), self.model)
        batch.add(documents)
        return batch.scored()


class BatchArrays:
    """Room for `rows` customers' ids, model input (float32, the type ONNX Runtime takes), probabilities
    and labels, filled piece by piece with the documents that pass `casting.cast_documents`. Every
    `INFERENCE_ROWS` rows go to `inference` (a one-thread executor; None: here and now), so the model
    scores them while the next pieces are checked. Only these arrays and the quarantined documents
    outlive a piece, and `clear` reuses them for the next batch."""

    def __init__(self, rows: int, model: OnnxModel, inference=None):
        self.model, self.inference = model, inference
        self.ids = np.empty(rows, dtype=np.int64)
        self.matrix = np.empty((rows, len(schema.FEATURES)), dtype=np.float32)
        self.probability = np.empty(rows, dtype=np.float64)
        self.labels = np.empty(rows, dtype=np.int8)
        self.clear()

    def clear(self) -> None:
        self.filled = self.submitted = 0
        self.pending: list = []
        self.quarantined: list[dict] = []

    def add(self, documents: list[dict]) -> None:
        cast, problems = casting.cast_documents(documents, schema.SCORING)
        good = np.ones(len(documents), dtype=bool)
        for row, found in itertools.groupby(problems, key=lambda p: p.row):
            good[row] = False
            document = {name: plain(documents[row].get(name)) for name in FIELDS}
            self.quarantined.append({"id": document.get(schema.KEY), "document": document,
                                     "problems": [{"field": p.column, "reason": p.reason} for p in found]})
        if problems:
            cast = {name: values[good] for name, values in cast.items()}
        end = self.filled + len(cast[schema.KEY])
        self.ids[self.filled:end] = cast[schema.KEY]
        model_input.from_columns(cast, self.matrix[self.filled:end])
        self.filled = end
        if self.filled - self.submitted >= INFERENCE_ROWS:
            self._submit()

    def _submit(self) -> None:
        start, end = self.submitted, self.filled
        if end == start:
            return
        self.submitted = end
        if self.inference is None:
            self._infer(start, end)
        else:
            self.pending.append(self.inference.submit(self._infer, start, end))

    def _infer(self, start: int, end: int) -> None:
        probability = self.model.probability(self.matrix[start:end])
        self.probability[start:end] = probability
        self.labels[start:end] = self.model.labels(probability)

    def scored(self) -> ScoredBatch:
        """The batch's results: views on its arrays, valid until `clear`."""
        self._submit()
        for call in self.pending:
            call.result()
        end = self.filled
        return ScoredBatch(self.ids[:end], self.probability[:end], self.labels[:end], self.quarantined)


def scored_batches(documents: Iterable[dict], model: OnnxModel, rows: int, clock: dict, inference=None,
                   piece: int = 1_000) -> Iterator[ScoredBatch]:
    """Customers checked and scored in batches of up to `rows`, `piece` documents at a time, so that no
    more than a piece of documents is held beyond the cursor's own reply. One set of arrays serves every
    batch: a batch's arrays are overwritten once the next one is asked for. `clock["reading"]` adds up
    the time spent waiting for documents."""
    iterator, batch, chunk, seen = iter(documents), None, [], 0
    while True:
        started = time.perf_counter()
        document = next(iterator, None)
        clock["reading"] += time.perf_counter() - started
        if document is not None:
            chunk.append(document)
        if len(chunk) == min(piece, rows - seen) or (document is None and chunk):
            batch = batch or BatchArrays(rows, model, inference)
            batch.add(chunk)
            seen, chunk = seen + len(chunk), []
        if seen and (seen == rows or document is None):
            assert batch is not None  # made when the first chunk was added
            yield batch.scored()
            batch.clear()
            seen = 0
        if document is None:
            return
