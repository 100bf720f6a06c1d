"""Batch scoring: every customer scored by the champion, written back for the CRM, and the campaign list.

The stages of the `cross_sell_scoring` DAG (and `python -m cross_sell score` for files):

* `score` streams customers in batches of bounded size, checks each piece of documents against the
  schema's scoring environment (the key and the serving features) column by column with the rules the
  service applies (`casting.cast_documents`), quarantines the rows that fail with their reasons, and scores
  the others with the model input the service builds (`model_input`) in the signed ONNX file. No
  DataFrame is built: a batch is a few NumPy arrays, reused from batch to batch. Scores go to
  `<prefix>/scores/<run id>/scores.parquet` with the decile of each customer; deciles come from a
  fixed-size histogram of the probabilities, so memory does not grow with the number of customers.
* `campaign` ranks the customers (top N or a top share) into `campaign.csv` / `campaign.parquet`, with
  the lift and gain per decile: expected buyers per call from the champion's test-split calibration.
* `publish` bulk-upserts the scores into a MongoDB collection keyed on the customer id (`_id`).

A re-run of the same run id writes the same keys and upserts the same documents: `scored_at` is the
run's own time, not the clock's.
"""

from __future__ import annotations

import itertools
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from . import casting, evaluation, model_input, schema
from .artifacts import RunArtifacts
from .contracts import Campaign, Published, Scored
from .errors import NotRetryable
from .memory import lean_allocators
from .onnx_model import OnnxModel

log = logging.getLogger(__name__)

BATCH_ROWS = 100_000  # ~5.7 MB of arrays per batch (ids, float32 model input, probabilities, labels)
DECILES = 10
HISTOGRAM_BINS = 100_000  # probabilities to 1e-5: deciles and campaign cut-offs in constant memory
PAGE_BYTES = 64 * 1024  # Parquet data pages of the scores files
# Rows per ONNX Runtime call: large enough that the inference thread rarely waits for the GIL between
# calls (1,000 cost a third of the throughput), small enough that its buffers stay small.
INFERENCE_ROWS = 5_000
# Rows per row group of the scores files, and so per step of the second pass (read row group by row
# group: `iter_batches` held ~10 MB more at 3.8M customers).
PASS_ROWS = 20_000
FIELDS = tuple(schema.column_names(schema.SCORING))  # what is read of each customer document
SCORES = ("scores.parquet",)
QUARANTINE = ("quarantine.jsonl",)


@dataclass
class Prepared:
    """A frame of a CSV file checked and turned into model input; the rows that failed are set aside."""

    ids: np.ndarray
    matrix: np.ndarray
    quarantined: list[dict]  # {"id", "problems": [{"field", "reason"}], "document"[, "line"]}


@dataclass
class Batch:
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
            if problem.column not in absent:
                bad.setdefault(problem.row, []).append({"field": problem.column, "reason": problem.reason})
        quarantined = []
        for row, reasons in sorted(bad.items()):
            document = {k: _plain(v) for k, v in raw.iloc[row].items()}
            quarantined.append({"id": document.get(schema.KEY), "problems": reasons, "document": document,
                                **({"line": int(lines[row])} if lines is not None else {})})
        good = np.ones(len(raw), dtype=bool)
        good[list(bad)] = False
        kept = {name: values[good] for name, values in cast.items()}
        matrix = model_input.from_columns(kept, np.empty((int(good.sum()), len(schema.FEATURES)), dtype=np.float32))
        return Prepared(kept[schema.KEY], matrix, quarantined)

    def finish(self, prepared: Prepared, probability: np.ndarray) -> Batch:
        return Batch(prepared.ids, probability, self.model.labels(probability), prepared.quarantined)

    def score(self, documents: list[dict]) -> Batch:
        """One list of documents as MongoDB holds them, checked and scored (tests, small batches)."""
        batch = _Batch(len(documents), self.model)
        batch.add(documents)
        return batch.scored()


class _Batch:
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
            document = {name: _plain(documents[row].get(name)) for name in FIELDS}
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

    def scored(self) -> Batch:
        """The batch's results: views on its arrays, valid until `clear`."""
        self._submit()
        for call in self.pending:
            call.result()
        end = self.filled
        return Batch(self.ids[:end], self.probability[:end], self.labels[:end], self.quarantined)


def scored_batches(documents: Iterable[dict], model: OnnxModel, rows: int, clock: dict, inference=None,
                   piece: int = 1_000) -> Iterator[Batch]:
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
            batch = batch or _Batch(rows, model, inference)
            batch.add(chunk)
            seen, chunk = seen + len(chunk), []
        if seen and (seen == rows or document is None):
            yield batch.scored()
            batch.clear()
            seen = 0
        if document is None:
            return


def served(registry, which: str = "champion") -> tuple[OnnxModel, str, dict | None]:
    """The model to score with (the champion, or a version), verified as the service verifies it, and its
    test-split calibration table (None for versions pushed before it existed)."""
    version = registry.resolve(which)
    # One ONNX Runtime thread: batch scoring overlaps inference with checking the next pieces instead
    # (measured 281k rows/s with one thread, 226k with two, on 20,000-row calls).
    model, _ = registry.served_model(version, threads=1)
    return model, version, registry.version_json(version, "calibration.json")


def _plain(value):
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value


def score_csv(path: str, out: str, model: OnnxModel, model_version: str, scored_at: datetime,
              rows: int | None = None) -> dict:
    """`python -m cross_sell score`: a Kaggle-format CSV (the label, if present, is ignored) scored chunk
    by chunk with the same checks and engine as the DAG; OUT gets id, probability, label, model_version,
    scored_at; rows that fail go to OUT.quarantine.jsonl with their physical line and reasons."""
    from . import loader

    rows = rows or loader.CHUNK_ROWS  # the file's text cells, as the loader reads them
    lean_allocators()
    scorer = BatchScorer(model)
    scored = quarantined = 0
    quarantine = f"{out}.quarantine.jsonl"
    with open(out, "w") as output, open(quarantine, "w") as bad:
        output.write("id,probability,label,model_version,scored_at\n")
        for frame, lines in loader.raw_chunks(path, rows):
            prepared = scorer.prepare(frame, allow_text=True, lines=lines)
            batch = scorer.finish(prepared, _probability(model, prepared.matrix))
            for row in batch.quarantined:
                bad.write(json.dumps(row, default=str) + "\n")
            for customer, probability, label in zip(batch.ids, batch.probability, batch.labels, strict=True):
                output.write(f"{customer},{float(probability)!r},{int(label)},{model_version},{scored_at.isoformat()}\n")
            scored, quarantined = scored + len(batch.ids), quarantined + len(batch.quarantined)
    if not quarantined:
        Path(quarantine).unlink()  # "quarantine": null means no such file
    return {"scored": scored, "quarantined": quarantined, "model_version": model_version, "out": out,
            "quarantine": quarantine if quarantined else None}


_BIN_BOUNDS = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)


def add_to_histogram(histogram: np.ndarray, probability: np.ndarray) -> None:
    """`np.histogram(probability, HISTOGRAM_BINS, range=(0, 1))` added in place, without its two
    bins-sized temporaries (1.6 MB per batch): bin i holds [bound i, bound i+1), the last one also 1.0."""
    np.add.at(histogram, np.minimum(np.searchsorted(_BIN_BOUNDS, probability, side="right") - 1,
                                    HISTOGRAM_BINS - 1), 1)


def _cutoff(from_top: np.ndarray, customers: float) -> float:
    """The lower bound of the histogram bin where the `customers` most likely ones are reached;
    `from_top` counts the customers at or above each bin's lower bound, top bin first."""
    reached = int(np.searchsorted(from_top, customers, side="left"))
    return float(_BIN_BOUNDS[HISTOGRAM_BINS - 1 - min(reached, HISTOGRAM_BINS - 1)])


def decile_edges(histogram: np.ndarray) -> np.ndarray:
    """Probability cut-offs between deciles, highest first: decile 1 holds the most likely buyers."""
    from_top = np.cumsum(histogram[::-1])
    total = from_top[-1] if len(from_top) else 0
    return np.asarray([_cutoff(from_top, total * k / DECILES) for k in range(1, DECILES)])


def decile_of(probability: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """1 for the top tenth (probability at or above the first edge) ... 10 for the bottom tenth."""
    return 1 + np.sum(probability[:, None] < edges[None, :], axis=1)


def _leave_out(documents: Iterable[dict], excluded: dict[int, str], counts: dict[str, int]) -> Iterator[dict]:
    """`documents` without the customers `excluded` names (no consent, contacted recently), counted by reason."""
    for document in documents:
        reason = excluded.get(document.get(schema.KEY)) if excluded else None
        if reason is None:
            yield document
        else:
            counts[reason] = counts.get(reason, 0) + 1


def score(documents: Iterable[dict], artifacts: RunArtifacts, model: OnnxModel, model_version: str,
          scored_at: datetime, calibration: dict | None = None, batch_rows: int = BATCH_ROWS,
          excluded: dict[int, str] | None = None) -> Scored:
    """Score every customer (see the module doc) but those `excluded` (id -> reason: `consent.excluded`);
    two passes over a local Parquet file, bounded memory."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.parquet as pq

    lean_allocators()
    histogram = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
    stamp = scored_at.isoformat()
    rows = quarantined = 0
    left_out: dict[str, int] = {}  # reason -> customers neither scored nor listed
    # Waiting for documents; checking them into batches, scoring and writing; deciles and uploads.
    clock = {"reading": 0.0, "scoring": 0.0, "finishing": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        raw_path, final_path, quarantine_path = (Path(tmp) / name for name in
                                                 ("raw.parquet", "scores.parquet", "quarantine.jsonl"))
        raw_schema = pa.schema([("id", pa.int64()), ("probability", pa.float64()), ("label", pa.int8())])

        def write(scored: Batch) -> None:
            nonlocal rows, quarantined
            writer.write_table(pa.table({"id": scored.ids, "probability": scored.probability,
                                         "label": scored.labels}, schema=raw_schema), row_group_size=PASS_ROWS)
            for start in range(0, len(scored.probability), INFERENCE_ROWS):  # small temporaries
                add_to_histogram(histogram, scored.probability[start:start + INFERENCE_ROWS])
            for row in scored.quarantined:
                bad.write(json.dumps(row, default=str) + "\n")
            rows, quarantined = rows + len(scored.ids), quarantined + len(scored.quarantined)

        started = time.perf_counter()
        # ONNX Runtime releases the GIL: one piece is scored in this thread while the next is checked.
        # No dictionaries for unique ids and probabilities (their encoders held ~6 MB to no purpose), and
        # 64 KiB data pages: with the default 1 MiB the writer's page and compression buffers held ~8 MB.
        with pq.ParquetWriter(raw_path, raw_schema, use_dictionary=False, data_page_size=PAGE_BYTES) as writer, \
                open(quarantine_path, "w") as bad, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx") as inference:
            for scored in scored_batches(_leave_out(documents, excluded or {}, left_out), model, batch_rows, clock,
                                         inference):
                write(scored)
        clock["scoring"] = time.perf_counter() - started - clock["reading"]
        started = time.perf_counter()
        if rows == 0:
            raise NotRetryable(f"no customer could be scored ({quarantined} quarantined)")
        edges = decile_edges(histogram)
        deciles = _DecileStats(calibration)
        final_schema = pa.schema([("id", pa.int64()), ("probability", pa.float64()), ("label", pa.int8()),
                                  ("decile", pa.int8()), ("model_version", pa.string()),
                                  ("scored_at", pa.string())])
        source = pq.ParquetFile(raw_path)
        with pq.ParquetWriter(final_path, final_schema, data_page_size=PAGE_BYTES,
                              use_dictionary=["label", "decile", "model_version", "scored_at"]) as writer:
            for part in (source.read_row_group(g) for g in range(source.num_row_groups)):  # PASS_ROWS each
                probability = part.column("probability").to_numpy()
                decile = decile_of(probability, edges)
                deciles.add(probability, decile)
                writer.write_table(pa.table({
                    "id": part.column("id"), "probability": part.column("probability"),
                    "label": part.column("label"), "decile": decile.astype("int8"),
                    "model_version": pa.repeat(pa.scalar(model_version), len(part)),
                    "scored_at": pa.repeat(pa.scalar(stamp), len(part))}, schema=final_schema))
        scores = artifacts.upload_file(final_path, *SCORES)
        quarantine = artifacts.upload_file(quarantine_path, *QUARANTINE)
        clock["finishing"] = time.perf_counter() - started
    summary = {"rows": rows, "quarantined": quarantined, "excluded": left_out, "model_version": model_version,
               "scored_at": stamp,
               "decile_edges": edges.tolist(), "deciles": deciles.table(), "calibration": deciles.source}
    saved = artifacts.put_json(summary, "summary.json")  # the same bytes on a re-run: no clock in it
    artifacts.put_json({k: round(v, 3) for k, v in clock.items()}, "timing.json")  # for people and benchmarks
    log.info("scored %s customers with %s (%s quarantined: %s); waiting for documents %.1f s, checking and "
             "scoring %.1f s (%s rows/s), deciles and uploads %.1f s", f"{rows:,}", model_version,
             f"{quarantined:,}", artifacts.uri(quarantine["key"]), clock["reading"], clock["scoring"],
             f"{(rows + quarantined) / max(clock['scoring'], 1e-9):,.0f}", clock["finishing"])
    log.info("left out (neither scored nor on a campaign list): %s",
             ", ".join(f"{n:,} {why}" for why, n in sorted(left_out.items())) or "nobody")
    log.info("lift and gain per decile (expected buyers per call from %s):\n%s", deciles.source,
             lift_table(summary["deciles"]))
    return Scored(scores=scores, quarantine=quarantine, summary=saved, rows=rows,
                  quarantined=quarantined, excluded=left_out, model_version=model_version, scored_at=stamp)


def _probability(model: OnnxModel, matrix: np.ndarray) -> np.ndarray:
    return model.probability(matrix) if len(matrix) else np.empty(0)


class _DecileStats:
    """Customers, mean probability and expected buyers per decile, accumulated batch by batch."""

    def __init__(self, calibration: dict | None):
        self.calibration = calibration
        self.source = "the champion's test-split calibration" if calibration else \
            "the model's probabilities (this version has no calibration table)"
        self.count = np.zeros(DECILES + 1)
        self.probability = np.zeros(DECILES + 1)
        self.expected = np.zeros(DECILES + 1)

    def add(self, probability: np.ndarray, decile: np.ndarray) -> None:
        rate = evaluation.calibrated_rate(self.calibration, probability) if self.calibration else probability
        self.count += np.bincount(decile, minlength=DECILES + 1)
        self.probability += np.bincount(decile, weights=probability, minlength=DECILES + 1)
        self.expected += np.bincount(decile, weights=rate, minlength=DECILES + 1)

    def table(self) -> list[dict]:
        total_customers, total_expected = self.count[1:].sum(), self.expected[1:].sum()
        overall = total_expected / max(total_customers, 1)
        rows, cumulative = [], 0.0
        for d in range(1, DECILES + 1):
            n = self.count[d]
            per_call = self.expected[d] / n if n else 0.0
            cumulative += self.expected[d]
            rows.append({"decile": d, "customers": int(n),
                         "mean_probability": float(self.probability[d] / n) if n else 0.0,
                         "expected_buyers_per_call": float(per_call), "expected_buyers": float(self.expected[d]),
                         "lift": float(per_call / overall) if overall else 0.0,
                         "cumulative_gain": float(cumulative / total_expected) if total_expected else 0.0})
        return rows


def lift_table(deciles: list[dict]) -> str:
    lines = [f"{'decile':>6s} {'customers':>10s} {'buyers/call':>11s} {'expected':>10s} {'lift':>6s} {'gain':>6s}"]
    for row in deciles:
        lines.append(f"{row['decile']:6d} {row['customers']:10,d} {row['expected_buyers_per_call']:11.3f} "
                     f"{row['expected_buyers']:10,.0f} {row['lift']:6.2f} {row['cumulative_gain']:6.1%}")
    return "\n".join(lines)


def campaign(artifacts: RunArtifacts, scored: Scored, top_share: float | None = 0.1,
             top_n: int | None = None) -> Campaign:
    """The customers to call first: ranked by probability, the top `top_n` (if given) or `top_share`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if top_n is None and not (top_share and 0 < top_share <= 1):
        raise NotRetryable(f"campaign size: give top_n or a top_share in (0, 1], not {top_share!r}")
    summary = artifacts.read_json(scored["summary"])
    wanted = top_n if top_n is not None else int(np.ceil(summary["rows"] * top_share))
    with tempfile.TemporaryDirectory() as tmp:
        source = pq.ParquetFile(artifacts.download(scored["scores"], Path(tmp) / "scores.parquet"))
        histogram = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
        for group in range(source.num_row_groups):
            probability = source.read_row_group(group, columns=["probability"]).column(0).to_numpy()
            add_to_histogram(histogram, probability)
        from_top = np.cumsum(histogram[::-1])
        cutoff = _cutoff(from_top, min(wanted, from_top[-1]))
        kept = [part.filter(pc.greater_equal(part.column("probability"), cutoff))
                for part in (source.read_row_group(g, columns=["id", "probability", "decile"])
                             for g in range(source.num_row_groups))]
        chosen = pa.concat_tables(kept).sort_by([("probability", "descending"), ("id", "ascending")])
        chosen = chosen.slice(0, wanted)
        calibration = summary["deciles"]
        per_call = np.asarray([calibration[d - 1]["expected_buyers_per_call"]
                               for d in chosen.column("decile").to_numpy()])
        chosen = chosen.append_column("expected_buyers_per_call", pa.array(per_call))
        chosen = chosen.add_column(0, "rank", pa.array(np.arange(1, len(chosen) + 1)))
        parquet_path, csv_path = Path(tmp) / "campaign.parquet", Path(tmp) / "campaign.csv"
        pq.write_table(chosen, parquet_path)
        chosen.to_pandas().to_csv(csv_path, index=False)
        parquet_key = artifacts.upload_file(parquet_path, "campaign.parquet")["key"]
        csv_key = artifacts.upload_file(csv_path, "campaign.csv")["key"]
    expected = float(per_call.sum())
    lowest = float(chosen.column("probability").to_numpy().min()) if len(chosen) else cutoff
    log.info("campaign: %s customers (probability >= %.4f), %.0f expected buyers: %s",
             f"{len(chosen):,}", lowest, expected, artifacts.uri(csv_key))
    return Campaign(csv_key=csv_key, parquet_key=parquet_key, customers=len(chosen), cutoff_probability=lowest,
                    expected_buyers=expected)


def publish(artifacts: RunArtifacts, scored: Scored, collection, batch_size: int = 5_000) -> Published:
    """Upsert every score into `collection`, one document per customer keyed on the id (`_id`): the scores
    file `score` wrote, checked against the sha256 it recorded, so nothing planted reaches the CRM."""
    import pyarrow.parquet as pq
    from pymongo import ReplaceOne

    inserted = updated = documents = 0
    with tempfile.TemporaryDirectory() as tmp:
        source = pq.ParquetFile(artifacts.download(scored["scores"], Path(tmp) / "scores.parquet"))
        for part in source.iter_batches(batch_size=batch_size):
            operations = [ReplaceOne({"_id": row["id"]}, {"_id": row["id"], **row, "run_id": artifacts.run_id},
                                     upsert=True) for row in part.to_pylist()]
            result = collection.bulk_write(operations, ordered=False)
            inserted += result.upserted_count
            updated += result.matched_count
            documents += len(operations)
    # Customers this run did not score (they objected, were erased, or were quarantined) keep no old score.
    removed = collection.delete_many({"run_id": {"$ne": artifacts.run_id}}).deleted_count
    log.info("upserted %s scores into %s.%s (%s new, %s updated); removed %s of customers this run did not "
             "score", f"{documents:,}", collection.database.name, collection.name, f"{inserted:,}", f"{updated:,}",
             f"{removed:,}")
    return Published(collection=f"{collection.database.name}.{collection.name}", documents=documents,
                     inserted=inserted, updated=updated, removed=removed)
