"""Feature transformation: the seeded split and the preprocessing, both derived from the schema."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import OrdinalEncoder

from . import schema

SPLIT_FRACTIONS = {"train": 0.70, "validation": 0.15, "test": 0.15}


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


def features_and_label(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    return frame[list(schema.FEATURES)], frame[schema.LABEL].to_numpy()


def preprocessor() -> ColumnTransformer:
    """Encode categories as ordinals; unknown or missing ones become NaN, which the estimator routes
    as missing instead of failing at serving time. Closed sets come from the schema, so category codes
    never depend on which values one training snapshot happened to contain."""
    encoders = []
    for name in schema.CATEGORICAL_FEATURES:
        column = schema.BY_NAME[name]
        if column.allowed is not None:
            categories = [list(column.allowed)]
        else:
            categories = [list(range(int(column.minimum), int(column.maximum) + 1))]
        encoder = OrdinalEncoder(
            categories=categories, handle_unknown="use_encoded_value", unknown_value=np.nan,
            encoded_missing_value=np.nan, dtype=np.float64,
        )
        encoders.append((name, encoder, [name]))
    return ColumnTransformer(
        encoders + [("numeric", "passthrough", list(schema.NUMERIC_FEATURES))],
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
