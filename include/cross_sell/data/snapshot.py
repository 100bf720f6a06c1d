"""The raw snapshot: documents streamed into one Parquet file in bounded chunks, with a fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from . import casting, schema

CHUNK_ROWS = 10_000  # documents held at once; bounds extraction memory


@dataclass
class SnapshotStats:
    rows: int
    fingerprint: str  # order-independent: the same documents give the same value however they stream
    invalid_rows: int  # rows holding a value that could not take its declared type
    bytes: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _chunks(documents: Iterable[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for document in documents:
        chunk.append(document)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def typed_chunk(documents: list[dict]):
    """One Arrow table in the contract's training types.

    A value of the wrong type (e.g. Age "forty") is stored as null and quoted in the
    `_invalid_values` column, so validation can name it instead of extraction crashing on it.
    """
    import pyarrow as pa

    raw = pd.DataFrame.from_records(documents, columns=schema.column_names(schema.TRAINING))
    typed, problems = casting.cast_frame(raw, schema.TRAINING)
    invalid: dict[int, dict] = {}
    for problem in problems:
        assert problem.row is not None  # a frame's problems are a row's
        invalid.setdefault(problem.row, {})[problem.column] = raw.iloc[problem.row][problem.column]
    typed[schema.INVALID_VALUES_COLUMN] = pd.Series(
        [json.dumps(invalid[i], sort_keys=True, default=str) if i in invalid else None for i in range(len(typed))],
        dtype="object", index=typed.index,
    )
    arrow_schema = schema.arrow_schema(schema.TRAINING, with_invalid_values=True)
    arrays = [pa.array(typed[f.name], type=f.type, from_pandas=True) for f in arrow_schema]
    return pa.Table.from_arrays(arrays, schema=arrow_schema), len(invalid)


def _row_hash_sum(table) -> int:
    hashes = pd.util.hash_pandas_object(table.to_pandas(), index=False).to_numpy(dtype=np.uint64)
    return int(hashes.sum(dtype=np.uint64))  # wraps modulo 2**64, which keeps it order-independent


def write(documents: Iterable[dict], path: str, chunk_rows: int = CHUNK_ROWS) -> SnapshotStats:
    """Stream `documents` into a Parquet file at `path`, holding at most `chunk_rows` of them at once."""
    import pyarrow.parquet as pq

    rows = invalid_rows = 0
    digest = 0
    with pq.ParquetWriter(path, schema.arrow_schema(schema.TRAINING, with_invalid_values=True)) as writer:
        for chunk in _chunks(documents, chunk_rows):
            table, invalid = typed_chunk(chunk)
            writer.write_table(table)
            rows += table.num_rows
            invalid_rows += invalid
            digest = (digest + _row_hash_sum(table)) % (1 << 64)
    fingerprint = hashlib.sha256(f"{rows}:{digest:016x}".encode()).hexdigest()
    return SnapshotStats(rows=rows, fingerprint=fingerprint, invalid_rows=invalid_rows, bytes=os.path.getsize(path))


def read(path: str) -> pd.DataFrame:
    """The snapshot as pandas; integer columns holding nulls come back as float64."""
    return pd.read_parquet(path)
