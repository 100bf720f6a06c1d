"""Feature transformation for training: the seeded split and the target encoding (scikit-learn).

What a model takes at predict time is `model_input` (no scikit-learn), shared with the service.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.preprocessing import TargetEncoder

from ..data import schema
from . import model_input

SPLIT_FRACTIONS = {"train": 0.70, "validation": 0.15, "test": 0.15}
# High-cardinality codes (53 regions, ~150 channels) also enter the model as their out-of-fold
# response rate: 5-fold CV on the real sample showed +0.002 ROC-AUC over the codes alone
# (benchmarks/bench_model_quality.py).
TARGET_ENCODED = tuple(c.name for c in schema.COLUMNS if c.role == "feature" and c.categorical)


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


def features_and_label(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return model_input.from_frame(frame), frame[schema.LABEL].to_numpy()


def check_excluded(exclude: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The features a run trains without (sorted), each a schema feature, at least one feature left."""
    unknown = sorted(set(exclude) - set(schema.FEATURES))
    if unknown:
        raise ValueError(f"exclude_features names no feature: {unknown} (features: {', '.join(schema.FEATURES)})")
    if set(exclude) >= set(schema.FEATURES):
        raise ValueError("exclude_features leaves no feature to train on")
    return tuple(sorted(set(exclude)))


def preprocessor(seed: int, exclude: tuple[str, ...] = ()) -> ColumnTransformer:
    """The features as they are, then the out-of-fold target encoding of the `TARGET_ENCODED` codes;
    `exclude`d features are dropped here, so the model input (what the service sends) stays the same.

    Cross-fitting (5 stratified folds, seeded) keeps a row's own label out of its encoding during fit;
    an unseen code at serving time gets the training response rate.
    """
    position = {name: i for i, name in enumerate(schema.FEATURES)}  # columns of the model input
    encoder = TargetEncoder(target_type="binary", cv=StratifiedKFold(5, shuffle=True, random_state=seed))
    kept = [i for name, i in position.items() if name not in exclude]
    encoded = [position[name] for name in TARGET_ENCODED if name not in exclude]
    return ColumnTransformer([("features", "passthrough", kept)]
                             + ([("response_rate", encoder, encoded)] if encoded else []))

