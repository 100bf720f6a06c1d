"""Loading customers into MongoDB from a Kaggle-format CSV or the synthetic generator.

The whole file is checked against the contract before the first write, so a bad file is refused
with its line numbers and nothing of it reaches the collection. Writes are idempotent upserts keyed
on the customer id: the document `_id` is the Kaggle `id` (always unique and indexed, on every
MongoDB-compatible server), and a unique index on `id` is declared as well.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import pandas as pd

from . import schema
from .errors import NotRetryable

BATCH_SIZE = 5_000
MAX_REPORTED_PROBLEMS = 20


class LoadError(NotRetryable):
    """A file that breaks the contract; the message names each offending line and field."""


@dataclass
class LoadStats:
    rows: int
    inserted: int
    updated: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def read_csv(path: str) -> pd.DataFrame:
    """Read and check a Kaggle-format CSV; returns the typed frame or raises LoadError."""
    try:
        raw = pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise LoadError(f"{path}: unreadable CSV: {error}") from None
    frame, problems = schema.validate_frame(raw, schema.TRAINING)
    if not problems:
        duplicated = frame[schema.KEY].duplicated(keep="first").to_numpy()
        problems = [schema.Problem(int(row), schema.KEY, f"duplicate id {frame[schema.KEY].iloc[row]}")
                    for row in duplicated.nonzero()[0]]
    if problems:
        raise LoadError(_describe(path, problems))
    return frame


def _describe(path: str, problems: list[schema.Problem]) -> str:
    lines = [f"{path}: refused, {len(problems)} problem(s); nothing was loaded"]
    for problem in problems[:MAX_REPORTED_PROBLEMS]:
        where = "header" if problem.row is None else f"line {problem.row + 2}"  # +1 header, +1 one-based
        lines.append(f"  {where}, column {problem.column}: {problem.reason}")
    if len(problems) > MAX_REPORTED_PROBLEMS:
        lines.append(f"  ... and {len(problems) - MAX_REPORTED_PROBLEMS} more")
    return "\n".join(lines)


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

    def __init__(self, total: int, what: str, enabled: bool, every: float = 10.0):
        from tqdm import tqdm

        self.total, self.what, self.every = total, what, every
        self.enabled, self.tty = enabled, sys.stderr.isatty()
        self.bar = tqdm(total=total, unit="rows", desc=what, disable=not (enabled and self.tty))
        self.done, self.last = 0, time.monotonic()

    def update(self, rows: int) -> None:
        self.done += rows
        self.bar.update(rows)
        if self.enabled and not self.tty and time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            print(f"{self.what}: {self.done:,} of {self.total:,} rows ({self.done / max(self.total, 1):.0%})",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


def upsert(collection, frame: pd.DataFrame, batch_size: int = BATCH_SIZE, progress: bool = True) -> LoadStats:
    """Upsert every row of an already checked frame in batches (unordered bulk writes)."""
    from pymongo import ReplaceOne

    collection.create_index(schema.KEY, unique=True, name="customer_id_unique")
    inserted = updated = 0
    bar = Progress(len(frame), "upserting", progress)
    batch = []
    for document in documents(frame):
        batch.append(ReplaceOne({"_id": document["_id"]}, document, upsert=True))
        if len(batch) == batch_size:
            inserted, updated = _flush(collection, batch, inserted, updated)
            bar.update(len(batch))
            batch = []
    if batch:
        inserted, updated = _flush(collection, batch, inserted, updated)
        bar.update(len(batch))
    bar.close()
    return LoadStats(rows=len(frame), inserted=inserted, updated=updated)


def _flush(collection, batch, inserted, updated):
    result = collection.bulk_write(batch, ordered=False)
    return inserted + result.upserted_count, updated + result.matched_count
