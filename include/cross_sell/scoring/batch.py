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

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..contracts import Campaign, Published, Scored
from ..data import schema
from ..errors import NotRetryable
from ..memory import lean_allocators
from ..model.onnx_model import OnnxModel
from ..privacy import consent
from ..privacy.suppression import Suppression, as_id
from ..storage.artifacts import RunArtifacts
from . import deciles
from .engine import INFERENCE_ROWS, ScoredBatch, scored_batches

log = logging.getLogger(__name__)

BATCH_ROWS = 100_000  # customers per batch: what memory grows with (benchmarks/README.md)
PAGE_BYTES = 64 * 1024  # Parquet data pages of the scores files
# Rows per row group of the scores files, and so per step of the second pass (row group by row group).
PASS_ROWS = 20_000
SCORES = ("scores.parquet",)
QUARANTINE = ("quarantine.jsonl",)


def served(registry, which: str = "champion") -> tuple[OnnxModel, str, dict | None]:
    """The model to score with (the champion, or a version), verified as the service verifies it, and its
    test-split calibration table (None for versions pushed before it existed)."""
    version = registry.resolve(which)
    # One ONNX Runtime thread: batch scoring overlaps inference with checking the next pieces instead
    # (a second thread was slower: benchmarks/README.md, "Figures behind the defaults").
    model, _ = registry.served_model(version, threads=1)
    return model, version, registry.version_json(version, "calibration.json")


def _leave_out(documents: Iterable[dict], excluded: dict[int, str], counts: dict[str, int],
               suppression: Suppression | None = None) -> Iterator[dict]:
    """`documents` without the erased customers (`suppression`, whatever the collections say) and those
    `excluded` names (no consent, contacted recently), counted by reason."""
    erased = suppression if suppression else None  # an empty list: nobody to hash
    for document in documents:
        customer = document.get(schema.KEY)
        if erased is not None and erased.erased(customer):
            reason: str | None = consent.ERASED
        elif excluded:
            number = as_id(customer)
            reason = excluded.get(number) if number is not None else None
        else:
            reason = None
        if reason is None:
            yield document
        else:
            counts[reason] = counts.get(reason, 0) + 1


@dataclass
class _Tally:
    """What the first pass counted: customers scored and quarantined, the probabilities' histogram (the
    deciles' cut-offs), and the customers left out by reason."""

    histogram: np.ndarray = field(default_factory=lambda: np.zeros(deciles.HISTOGRAM_BINS, dtype=np.int64))
    rows: int = 0
    quarantined: int = 0
    left_out: dict[str, int] = field(default_factory=dict)  # reason -> customers neither scored nor listed

    def add(self, scored: ScoredBatch) -> None:
        for start in range(0, len(scored.probability), INFERENCE_ROWS):  # small temporaries
            deciles.add_to_histogram(self.histogram, scored.probability[start:start + INFERENCE_ROWS])
        self.rows += len(scored.ids)
        self.quarantined += len(scored.quarantined)


_RAW_COLUMNS = (("id", "int64"), ("probability", "float64"), ("label", "int8"))


def _first_pass(documents: Iterable[dict], model: OnnxModel, batch_rows: int, excluded: dict[int, str],
                raw_path: Path, quarantine_path: Path, clock: dict, suppression: Suppression | None = None) -> _Tally:
    """Every customer checked and scored into `raw_path` (id, probability, label), the rows that fail
    into `quarantine_path` with their reasons; `clock["reading"]` adds up the wait for documents."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.parquet as pq

    tally = _Tally()
    raw_schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in _RAW_COLUMNS])
    # ONNX Runtime releases the GIL: one piece is scored in its thread while the next is checked here. No
    # dictionaries for unique ids and probabilities, and small data pages: both held megabytes for nothing.
    with pq.ParquetWriter(raw_path, raw_schema, use_dictionary=False, data_page_size=PAGE_BYTES) as writer, \
            open(quarantine_path, "w") as bad, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx") as inference:
        for scored in scored_batches(_leave_out(documents, excluded, tally.left_out, suppression), model,
                                     batch_rows, clock, inference):
            writer.write_table(pa.table({"id": scored.ids, "probability": scored.probability,
                                         "label": scored.labels}, schema=raw_schema), row_group_size=PASS_ROWS)
            for row in scored.quarantined:
                bad.write(json.dumps(row, default=str) + "\n")
            tally.add(scored)
    return tally


def _second_pass(raw_path: Path, final_path: Path, edges: np.ndarray, stats: deciles.DecileStats,
                 model_version: str, stamp: str) -> None:
    """`raw_path` rewritten to `final_path` with each customer's decile, model version and time, a row
    group at a time; `stats` gathers the lift and gain per decile on the way."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    final_schema = pa.schema([("id", pa.int64()), ("probability", pa.float64()), ("label", pa.int8()),
                              ("decile", pa.int8()), ("model_version", pa.string()), ("scored_at", pa.string())])
    source = pq.ParquetFile(raw_path)
    with pq.ParquetWriter(final_path, final_schema, data_page_size=PAGE_BYTES,
                          use_dictionary=["label", "decile", "model_version", "scored_at"]) as writer:
        for part in (source.read_row_group(g) for g in range(source.num_row_groups)):  # PASS_ROWS each
            probability = part.column("probability").to_numpy()
            decile = deciles.decile_of(probability, edges)
            stats.add(probability, decile)
            writer.write_table(pa.table({
                "id": part.column("id"), "probability": part.column("probability"),
                "label": part.column("label"), "decile": decile.astype("int8"),
                "model_version": pa.repeat(pa.scalar(model_version), len(part)),
                "scored_at": pa.repeat(pa.scalar(stamp), len(part))}, schema=final_schema))


def score(documents: Iterable[dict], artifacts: RunArtifacts, model: OnnxModel, model_version: str,
          scored_at: datetime, calibration: dict | None = None, batch_rows: int = BATCH_ROWS,
          excluded: dict[int, str] | None = None, suppression: Suppression | None = None) -> Scored:
    """Score every customer (see the module doc) but the erased ones (`suppression`: the keyed hashes of
    the suppression list, checked whatever the collections hold) and those `excluded` (id -> reason:
    `consent.excluded`); two passes over a local Parquet file, bounded memory. The summary counts who was
    left out, by reason."""
    lean_allocators()
    stamp = scored_at.isoformat()
    # Waiting for documents; checking them into batches, scoring and writing; deciles and uploads.
    clock = {"reading": 0.0, "scoring": 0.0, "finishing": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        raw_path, final_path, quarantine_path = (Path(tmp) / name for name in
                                                 ("raw.parquet", "scores.parquet", "quarantine.jsonl"))
        started = time.perf_counter()
        tally = _first_pass(documents, model, batch_rows, excluded or {}, raw_path, quarantine_path, clock,
                            suppression)
        clock["scoring"] = time.perf_counter() - started - clock["reading"]
        started = time.perf_counter()
        if tally.rows == 0:
            raise NotRetryable(f"no customer could be scored ({tally.quarantined} quarantined)")
        edges = deciles.decile_edges(tally.histogram)
        stats = deciles.DecileStats(calibration)
        _second_pass(raw_path, final_path, edges, stats, model_version, stamp)
        scores = artifacts.upload_file(final_path, *SCORES)
        quarantine = artifacts.upload_file(quarantine_path, *QUARANTINE)
        clock["finishing"] = time.perf_counter() - started
    summary = {"rows": tally.rows, "quarantined": tally.quarantined, "excluded": tally.left_out,
               "model_version": model_version, "scored_at": stamp,
               "decile_edges": edges.tolist(), "deciles": stats.table(), "calibration": stats.source}
    saved = artifacts.put_json(summary, "summary.json")  # the same bytes on a re-run: no clock in it
    artifacts.put_json({k: round(v, 3) for k, v in clock.items()}, "timing.json")  # for people and benchmarks
    log.info("scored %s customers with %s (%s quarantined: %s); waiting for documents %.1f s, checking and "
             "scoring %.1f s (%s rows/s), deciles and uploads %.1f s", f"{tally.rows:,}", model_version,
             f"{tally.quarantined:,}", artifacts.uri(quarantine["key"]), clock["reading"], clock["scoring"],
             f"{(tally.rows + tally.quarantined) / max(clock['scoring'], 1e-9):,.0f}", clock["finishing"])
    log.info("left out (neither scored nor on a campaign list): %s",
             ", ".join(f"{n:,} {why}" for why, n in sorted(tally.left_out.items())) or "nobody")
    if tally.left_out.get(consent.ERASED):
        log.warning("%s erased customer(s) are in the customers collection again (written back by a CRM or a "
                    "load?): left out by the suppression list", f"{tally.left_out[consent.ERASED]:,}")
    log.info("lift and gain per decile (expected buyers per call from %s):\n%s", stats.source,
             deciles.lift_table(summary["deciles"]))
    return Scored(scores=scores, quarantine=quarantine, summary=saved, rows=tally.rows,
                  quarantined=tally.quarantined, excluded=tally.left_out, model_version=model_version,
                  scored_at=stamp)


def score_customers(clients, artifacts: RunArtifacts, *, model: str = "champion", scored_at: datetime,
                    batch_rows: int = 100_000, exclude_contacted_days: int | None = None) -> Scored:
    """The scoring operation (the `cross_sell_scoring` DAG's `score`): every customer scored with `model` (the
    champion or a version), through MongoDB's scoring connection of `clients` (`cross_sell.clients.Clients`):
    erased customers, those who objected and, if asked, those contacted in the last
    `exclude_contacted_days` left out."""
    from .engine import FIELDS

    settings = clients.settings
    conn = settings.scoring_mongo_conn_id
    served_model, version, calibration = served(clients.registry, model)
    excluded = consent.excluded(clients.collection(settings.consent_collection, conn),
                                clients.collection(settings.contacts_collection, conn),
                                contacted_within_days=exclude_contacted_days, now=scored_at)
    return score(clients.customer_documents(FIELDS, conn), artifacts, served_model, model_version=version,
                 scored_at=scored_at, calibration=calibration, batch_rows=batch_rows, excluded=excluded,
                 suppression=clients.suppression(conn))


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
        histogram = np.zeros(deciles.HISTOGRAM_BINS, dtype=np.int64)
        for group in range(source.num_row_groups):
            probability = source.read_row_group(group, columns=["probability"]).column(0).to_numpy()
            deciles.add_to_histogram(histogram, probability)
        from_top = np.cumsum(histogram[::-1])
        cutoff = deciles.cutoff(from_top, min(wanted, from_top[-1]))
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


def publish_scores(clients, artifacts: RunArtifacts, scored: Scored) -> Published:
    """The scoring DAG's `publish`: `publish` into the CRM's scores collection, through MongoDB's scoring
    connection of `clients`."""
    settings = clients.settings
    return publish(artifacts, scored, clients.collection(settings.scores_collection, settings.scoring_mongo_conn_id,
                                                         written=True))


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
