"""Feature transformation: the seeded split and the model input, both derived from the schema."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.preprocessing import TargetEncoder

from . import schema

SPLIT_FRACTIONS = {"train": 0.70, "validation": 0.15, "test": 0.15}
# The layout of `model_input`, recorded in every manifest. A model saved for another layout would
# silently mis-predict on this one, so the service refuses to load it and evaluation does not score it.
MODEL_INPUT = "schema-codes-float64/1"


def input_mismatch(version: str, manifest: dict) -> str | None:
    """Why a registered model cannot take `model_input`, or None when it can."""
    found = manifest.get("model_input")
    if found == MODEL_INPUT:
        return None
    return f"model {version} takes model input {found!r}, not {MODEL_INPUT!r} (retrain it with this release)"
# High-cardinality codes (53 regions, ~150 channels) also enter the model as their out-of-fold
# response rate: 5-fold CV on the real sample showed +0.002 ROC-AUC over the codes alone
# (benchmarks/bench_model_quality.py).
TARGET_ENCODED = ("Region_Code", "Policy_Sales_Channel")
# Closed string categories become their position in the schema's `allowed` tuple; unknown -> NaN.
# Vehicle_Age's allowed values are listed youngest first, so its code is also an order.
CODES = {c.name: {value: float(code) for code, value in enumerate(c.allowed)}
         for c in schema.COLUMNS if c.role == "feature" and c.kind == "category"}


def split(frame: pd.DataFrame, seed: int) -> dict[str, pd.DataFrame]:
    """Stratified train/validation/test split, reproducible from `seed` whatever the input row order."""
    frame = frame.sort_values(schema.KEY, kind="stable").reset_index(drop=True)
    holdout = SPLIT_FRACTIONS["validation"] + SPLIT_FRACTIONS["test"]
    train, rest = train_test_split(frame, test_size=holdout, stratify=frame[schema.LABEL], random_state=seed)
    validation, test = train_test_split(
        rest, test_size=SPLIT_FRACTIONS["test"] / holdout, stratify=rest[schema.LABEL], random_state=seed
    )
    return {name: part.reset_index(drop=True) for name, part in
            (("train", train), ("validation", validation), ("test", test))}


def model_input(frame: pd.DataFrame) -> np.ndarray:
    """What every model takes: the schema's features in schema order as one float64 matrix.

    Numbers stay numbers and string categories become their schema codes, so the estimator needs no
    encoder of its own at predict time (scikit-learn's per-call checks of an encoder cost more than
    the trees on a one-row request). The manifest records the feature order (`features`).
    """
    columns = []
    for name in schema.FEATURES:
        if name in CODES:
            columns.append(frame[name].map(CODES[name]).to_numpy(dtype="float64", na_value=np.nan))
        else:
            columns.append(frame[name].to_numpy(dtype="float64", na_value=np.nan))
    return np.column_stack(columns) if columns else np.empty((len(frame), 0))


def model_input_rows(rows: list[dict]) -> np.ndarray:
    """`model_input` for a few already cast records (`schema.cast_records`) without building a DataFrame."""
    def value(name: str, raw):
        if name in CODES:
            return CODES[name].get(raw, math.nan)
        return math.nan if raw is None else raw
    return np.array([[value(name, row[name]) for name in schema.FEATURES] for row in rows], dtype="float64")


def features_and_label(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return model_input(frame), frame[schema.LABEL].to_numpy()


def preprocessor(seed: int) -> ColumnTransformer:
    """All features as they are, then the out-of-fold target encoding of the `TARGET_ENCODED` codes.

    Cross-fitting (5 stratified folds, seeded) keeps a row's own label out of its encoding during fit;
    an unseen code at serving time gets the training response rate.
    """
    position = {name: i for i, name in enumerate(schema.FEATURES)}  # columns of `model_input`
    encoder = TargetEncoder(target_type="binary", cv=StratifiedKFold(5, shuffle=True, random_state=seed))
    return ColumnTransformer([
        ("features", "passthrough", list(range(len(schema.FEATURES)))),
        ("response_rate", encoder, [position[name] for name in TARGET_ENCODED]),
    ])

