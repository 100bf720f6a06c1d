"""Loading customers into MongoDB from a Kaggle-format CSV or the synthetic generator.

A CSV is read twice in chunks, so memory does not grow with the file: first every row is checked
against the contract, and a bad file is refused with the physical line number of each problem (blank
lines and quoted multi-line fields counted) before anything is written; then it is loaded. Writes are
idempotent upserts keyed on the customer id: the document `_id` is the Kaggle `id` (always unique and
indexed, on every MongoDB-compatible server), and a unique index on `id` is declared as well.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd

from .. import clock
from ..errors import NotRetryable
from . import casting, schema

BATCH_SIZE = 5_000
CHUNK_ROWS = 20_000  # rows checked (and loaded) at a time: their text cells are most of the memory
MAX_REPORTED_PROBLEMS = 20


class LoadError(NotRetryable):
    """A file that breaks the contract; the message names each offending line and field."""


@dataclass
class LoadStats:
    rows: int
    inserted: int
    updated: int
    suppressed: int = 0  # erased customers in the input, not loaded (the suppression list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Located:
    """One problem of a file, at its physical line (None: the header)."""

    line: int | None
    column: str
    reason: str


def _lines(handle, path: str) -> Iterator[str]:
    """The file's lines as text; a byte that is not UTF-8 is refused with its line and column."""
    for number, raw in enumerate(handle, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise LoadError(f"{path}: refused; line {number}, column {error.start + 1}: byte "
                            f"0x{raw[error.start]:02x} is not UTF-8; nothing was loaded") from None
        yield text.removeprefix("\ufeff") if number == 1 else text


def raw_chunks(path: str, rows: int = CHUNK_ROWS, problems: list[Located] | None = None,
               progress: Progress | None = None) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """The CSV as frames of text cells, `rows` at a time, with the physical line each row starts on.
    Rows with the wrong number of fields are skipped and reported into `problems`."""
    with open(path, "rb") as handle:
        reader = csv.reader(_lines(handle, path), skipinitialspace=True)
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            raise LoadError(f"{path}: refused; the file is empty") from None
        except csv.Error as error:
            raise LoadError(f"{path}: refused; line 1: unreadable CSV: {error}") from None
        cells, starts, previous, yielded = [], [], reader.line_num, False
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as error:
                raise LoadError(f"{path}: refused; line {reader.line_num}: unreadable CSV: {error}") from None
            start, previous = previous + 1, reader.line_num
            if not record:  # a blank line
                continue
            if len(record) != len(header):
                if problems is not None:
                    problems.append(Located(start, "(row)", f"expected {len(header)} fields, got {len(record)}"))
                continue
            cells.append(record)
            starts.append(start)
            if len(cells) == rows:
                if progress:
                    progress.update(handle.tell() - progress.done)
                yield pd.DataFrame(cells, columns=header), np.asarray(starts)
                cells, starts, yielded = [], [], True
        if progress:
            progress.update(handle.tell() - progress.done)
        if cells or not yielded:  # the last rows, or the header alone (its columns are still checked)
            yield pd.DataFrame(cells, columns=header), np.asarray(starts, dtype=np.int64)


def check_csv(path: str, rows: int = CHUNK_ROWS, progress: bool = False) -> int:
    """Check every row of a Kaggle-format CSV against the contract, a chunk at a time; the number of
    rows, or LoadError naming the physical line and field of each problem (the first 20 of them)."""
    problems: list[Located] = []
    ids: list[np.ndarray] = []  # the duplicate check: 8 bytes per row, the one thing that grows with the file
    total = 0
    bar = Progress(os.path.getsize(path), "checking", progress, unit="B")
    for frame, starts in raw_chunks(path, rows, problems, bar):
        typed, found = casting.validate_frame(frame, schema.TRAINING, allow_text=True)
        for problem in found:
            if problem.row is None:  # a missing column: the header, once
                if not any(p.line is None and p.column == problem.column for p in problems):
                    problems.append(Located(None, problem.column, problem.reason))
            else:
                problems.append(Located(int(starts[problem.row]), problem.column, problem.reason))
        if schema.KEY in typed and not any(p.line is None for p in problems):
            ids.append(np.array(typed[schema.KEY].dropna().to_numpy(dtype="int64"), copy=True))  # not a view
        total += len(frame)
        if any(p.line is None for p in problems):
            break  # a broken header: every row would repeat it
    bar.close()
    if not problems and ids:
        everything = np.concatenate(ids)
        ids.clear()
        problems += _duplicates(path, everything, rows)
    if problems:
        raise LoadError(_refusal(path, problems))
    return total


def _duplicates(path: str, ids: np.ndarray, rows: int) -> list[Located]:
    ids.sort()  # in place: the check needs no second copy
    repeated = set(ids[1:][ids[1:] == ids[:-1]].tolist())
    if not repeated:
        return []
    seen, found = set(), []
    for frame, starts in raw_chunks(path, rows):  # only when there are duplicates: find their lines
        typed, _ = casting.validate_frame(frame, schema.TRAINING, allow_text=True)
        for value, line in zip(typed[schema.KEY].to_numpy(dtype="int64"), starts, strict=True):
            if value in repeated:
                if value in seen:
                    found.append(Located(int(line), schema.KEY, f"duplicate id {int(value)}"))
                seen.add(value)
    return found


def read_csv_chunks(path: str, rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """Typed frames of a CSV that `check_csv` accepted, `rows` at a time."""
    for frame, starts in raw_chunks(path, rows):
        typed, problems = casting.validate_frame(frame, schema.TRAINING, allow_text=True)
        if problems:  # only if the file changed since it was checked (`checked_copy` prevents that)
            first = problems[0]
            where = "header" if first.row is None else f"line {int(starts[first.row])}"
            raise LoadError(f"{path} changed since it was checked: {where}, column {first.column}: {first.reason}")
        yield typed.reset_index(drop=True)


@contextmanager
def checked_copy(path: str, rows: int = CHUNK_ROWS, progress: bool = False) -> Iterator[tuple[str, int]]:
    """A private copy of the file, checked whole: (its path, its rows). What is loaded from it is exactly
    the bytes that were checked, even if the original changes meanwhile; messages still name `path`."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cross-sell-load-") as tmp:
        copy = os.path.join(tmp, os.path.basename(path))
        shutil.copyfile(path, copy)  # streamed: memory does not grow with the file
        try:
            total = check_csv(copy, rows, progress)
        except LoadError as refused:
            raise LoadError(str(refused).replace(copy, path)) from None
        yield copy, total


def read_csv(path: str) -> pd.DataFrame:
    """Check a Kaggle-format CSV and return it whole, typed (evaluation, benchmarks: files that fit)."""
    with checked_copy(path) as (copy, _):
        return pd.concat(list(read_csv_chunks(copy)), ignore_index=True)


def _refusal(path: str, problems: list[Located]) -> str:
    lines = [f"{path}: refused, {len(problems)} problem(s); nothing was loaded"]
    for problem in problems[:MAX_REPORTED_PROBLEMS]:
        where = "header" if problem.line is None else f"line {problem.line}"
        lines.append(f"  {where}, column {problem.column}: {problem.reason}")
    if len(problems) > MAX_REPORTED_PROBLEMS:
        lines.append(f"  ... and {len(problems) - MAX_REPORTED_PROBLEMS} more")
    return "\n".join(lines)


def read_outcomes(path: str, default_observed_at: str | None = None) -> pd.DataFrame:
    """Outcomes of contacted customers: `id` (a customer), `Response` (0/1), `observed_at` (ISO date or
    time, UTC unless it says otherwise; `default_observed_at` or now for rows without one)."""

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"id", "Response"} - set(frame.columns)
    if missing:
        raise LoadError(f"{path}: refused; missing column(s) {sorted(missing)}; nothing was loaded")
    default = default_observed_at or clock.stamp()
    problems, rows = [], []
    for number, record in enumerate(frame.to_dict("records"), start=2):
        found = _outcome(record, default)
        if isinstance(found, Located):
            problems.append(Located(number, found.column, found.reason))
        else:
            rows.append(found)
    if problems:
        raise LoadError(_refusal(path, problems))
    return pd.DataFrame(rows, columns=["id", "Response", "observed_at"])


def _outcome(record: dict, default: str) -> dict | Located:
    """One CSV row as an outcome document, or the first problem with it (its column and what is allowed)."""
    from datetime import datetime, timezone

    text = str(record["id"]).strip()
    if not text.isdigit() or int(text) < 1:
        return Located(None, "id", f"expected a customer id (a whole number >= 1), got {record['id']!r}")
    if str(record["Response"]).strip() not in ("0", "1"):
        return Located(None, "Response", f"expected 0 (did not buy) or 1 (bought), got {record['Response']!r}")
    when = record.get("observed_at") or default
    try:
        stamp = datetime.fromisoformat(when)
    except ValueError:
        return Located(None, "observed_at", f"expected an ISO date or time (2026-11-29 or 2026-11-29T08:30:00+01:00), "
                                            f"got {when!r}")
    stamp = (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    return {"id": int(text), "Response": int(record["Response"]), "observed_at": stamp.isoformat(timespec="seconds")}


def unknown_customers(collection, ids: list[int], batch_size: int = 10_000) -> list[int]:
    """The ids (of outcomes) that match no customer in `collection`, in order."""
    found: set[int] = set()
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        found.update(d["_id"] for d in collection.find({"_id": {"$in": chunk}}, projection={"_id": True}))
    return [i for i in ids if i not in found]


def upsert_outcomes(collection, outcomes: pd.DataFrame, batch_size: int = BATCH_SIZE) -> dict:
    """One outcome per customer, keyed on the id (`_id`): a later outcome replaces an earlier one."""
    from pymongo import ReplaceOne

    collection.create_index("observed_at")  # monitoring reads one day at a time
    inserted = updated = 0
    records = outcomes.to_dict("records")
    for start in range(0, len(records), batch_size):
        batch = [ReplaceOne({"_id": r["id"]}, {"_id": r["id"], **r}, upsert=True)
                 for r in records[start:start + batch_size]]
        inserted, updated = _flush(collection, batch, inserted, updated)
    return {"rows": len(records), "inserted": inserted, "updated": updated}


def documents(frame: pd.DataFrame):
    """Yield one MongoDB document per row, with Python scalars and `_id` = customer id."""
    names = schema.column_names(schema.TRAINING)
    for row in frame[names].itertuples(index=False, name=None):
        document = {name: value.item() if hasattr(value, "item") else value
                    for name, value in zip(names, row, strict=True)}
        document["_id"] = document[schema.KEY]
        yield document


class Progress:
    """A tqdm bar on a terminal; elsewhere (CI, a log file) one line every `every` seconds."""

    def __init__(self, total: int, what: str, enabled: bool, every: float = 10.0, unit: str = "rows"):
        from tqdm import tqdm

        self.total, self.what, self.every, self.unit = total, what, every, unit
        self.enabled, self.tty = enabled, sys.stderr.isatty()
        self.bar = tqdm(total=total, unit=unit, unit_scale=unit == "B", desc=what, disable=not (enabled and self.tty))
        self.done, self.last = 0, time.monotonic()

    def update(self, amount: int) -> None:
        self.done += amount
        self.bar.update(amount)
        if self.enabled and not self.tty and time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            self._line()

    def _line(self) -> None:
        print(f"{self.what}: {self.done:,} of {self.total:,} {self.unit} ({self.done / max(self.total, 1):.0%})",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        """The bar's end; off a terminal, the last line too (the periodic ones stop wherever they were)."""
        self.bar.close()
        if self.enabled and not self.tty:
            self._line()


def load_csv(collection, path: str, batch_size: int = BATCH_SIZE, rows: int = CHUNK_ROWS,
             progress: bool = True, suppression=None) -> LoadStats:
    """Check the whole file, then upsert it a chunk at a time: a bad file writes nothing, and what is
    written is exactly what was checked (a private copy is checked and loaded)."""
    inserted = updated = suppressed = 0
    with checked_copy(path, rows, progress) as (copy, total):
        bar = Progress(total, "upserting", progress)
        for frame in read_csv_chunks(copy, rows):
            stats = upsert(collection, frame, batch_size, progress=False, suppression=suppression)
            inserted, updated, suppressed = (inserted + stats.inserted, updated + stats.updated,
                                             suppressed + stats.suppressed)
            bar.update(len(frame))
        bar.close()
    return LoadStats(rows=total, inserted=inserted, updated=updated, suppressed=suppressed)


def upsert(collection, frame: pd.DataFrame, batch_size: int = BATCH_SIZE, progress: bool = True,
           suppression=None) -> LoadStats:
    """Upsert every row of an already checked frame in batches (unordered bulk writes); an erased customer
    (`suppression`) is left out and counted, never loaded again."""
    from pymongo import ReplaceOne

    collection.create_index(schema.KEY, unique=True, name="customer_id_unique")
    inserted = updated = 0
    suppressed = [0]
    bar = Progress(len(frame), "upserting", progress)
    batch = []
    rows = documents(frame) if suppression is None else suppression.filter(documents(frame), suppressed)
    for document in rows:
        batch.append(ReplaceOne({"_id": document["_id"]}, document, upsert=True))
        if len(batch) == batch_size:
            inserted, updated = _flush(collection, batch, inserted, updated)
            bar.update(len(batch))
            batch = []
    if batch:
        inserted, updated = _flush(collection, batch, inserted, updated)
        bar.update(len(batch))
    bar.close()
    return LoadStats(rows=len(frame), inserted=inserted, updated=updated, suppressed=suppressed[0])


def _flush(collection, batch, inserted, updated):
    result = collection.bulk_write(batch, ordered=False)
    return inserted + result.upserted_count, updated + result.matched_count


def load_customers(clients, csv_path: str | None = None, synthetic: int = 0, *, seed: int = 0, first_id: int = 1,
                   collection: str | None = None, batch_size: int = BATCH_SIZE, progress: bool = True,
                   say=None) -> dict:
    """The `load` operation: a Kaggle-format CSV (checked whole, then upserted a chunk at a time, so memory
    does not grow with the file) or `synthetic` generated customers, upserted into the customers
    collection (or `collection`). Erased customers stay out whatever file they are in (the suppression
    list refuses to open without its key once anyone was erased). `say`: where progress lines go."""
    from . import synthetic as generator

    say = say or (lambda text: None)
    target = clients.collection(collection or clients.settings.mongo_collection, written=True)
    where = f"{target.database.name}.{target.name}"
    erased = clients.suppression()
    started = time.perf_counter()
    if csv_path:
        say(f"checking {csv_path} against the data contract, then upserting it into {where} ...")
        stats = load_csv(target, csv_path, batch_size=batch_size, progress=progress, suppression=erased)
    else:
        say(f"generating {synthetic:,} synthetic customers (seed {seed}) ...")
        frame = generator.generate(synthetic, seed=seed, first_id=first_id)
        say(f"upserting {len(frame):,} customers into {where} ...")
        stats = upsert(target, frame, batch_size=batch_size, progress=progress, suppression=erased)
    return {**stats.as_dict(), "seconds": round(time.perf_counter() - started, 2), "collection": where}


def load_outcome_file(clients, csv_path: str, observed_at: str | None = None) -> tuple[dict, list[int]]:
    """The `load-outcomes` operation: outcomes of contacted customers (CSV: id, Response[, observed_at])
    upserted into the outcomes collection; with the ids that name no customer (loaded all the same: the
    customer may come later), for the caller to warn about."""
    settings = clients.settings
    outcomes = read_outcomes(csv_path, default_observed_at=observed_at)
    target = clients.collection(settings.outcomes_collection, written=True)
    stats = upsert_outcomes(target, outcomes)
    unknown = unknown_customers(clients.collection(settings.mongo_collection), outcomes["id"].tolist())
    return {**stats, "ids_matching_no_customer": len(unknown),
            "collection": f"{target.database.name}.{target.name}"}, unknown
