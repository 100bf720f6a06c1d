"""What every model takes: the schema's features, in schema order, as one float64 matrix.

Numbers stay numbers and closed string categories become their position in the schema's `allowed`
tuple (unknown -> NaN), so a model needs no encoder of its own at predict time. Only NumPy and the
schema: the prediction service builds its input here without scikit-learn (and without importing
pandas for the few-row requests that are most of its traffic).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..data import schema

if TYPE_CHECKING:
    import pandas as pd

# The layout, recorded in every manifest. A model saved for another layout would silently
# mis-predict on this one, so the service refuses to load it and evaluation does not score it.
LAYOUT = "schema-codes-float64/1"
# Vehicle_Age's allowed values are listed youngest first, so its code is also an order.
CODES = {c.name: {value: float(code) for code, value in enumerate(c.choices)}
         for c in schema.COLUMNS if c.role == "feature" and c.kind == "category"}


def mismatch(version: str, manifest: dict) -> str | None:
    """Why a registered model cannot take this layout, or None when it can."""
    found = manifest.get("model_input")
    if found == LAYOUT:
        return None
    return f"model {version} takes model input {found!r}, not {LAYOUT!r} (retrain it with this release)"


def from_frame(frame: pd.DataFrame) -> np.ndarray:
    """The model input of a typed frame (`casting.validate_frame`: training, evaluation)."""
    columns = []
    for name in schema.FEATURES:
        if name in CODES:
            columns.append(frame[name].map(CODES[name]).to_numpy(dtype="float64", na_value=np.nan))
        else:
            columns.append(frame[name].to_numpy(dtype="float64", na_value=np.nan))
    return np.column_stack(columns) if columns else np.empty((len(frame), 0))


def from_columns(columns: dict[str, np.ndarray], out: np.ndarray) -> np.ndarray:
    """`from_frame` for the columns of the engine (`casting`), written into `out` (rows x features; the
    service and batch scoring pass float32, the type ONNX Runtime takes). A category's position in
    `allowed` is its code by definition of `CODES`."""
    for j, name in enumerate(schema.FEATURES):
        out[:, j] = columns[name]
    return out


def from_rows(rows: list[dict]) -> np.ndarray:
    """`from_frame` for a few already cast records (the request sampler's rows), without a DataFrame."""
    def value(name: str, raw):
        if name in CODES:
            return CODES[name].get(raw, math.nan)
        return math.nan if raw is None else raw
    return np.array([[value(name, row[name]) for name in schema.FEATURES] for row in rows], dtype="float64")


def example() -> np.ndarray:
    """One valid row (the schema's example record): warm-up input."""
    return from_rows([schema.example_record()])
