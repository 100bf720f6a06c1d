"""The data contract: the single source of truth for the 12 columns of the Kaggle file.

The loader's CSV checks, the raw snapshot's Parquet schema, the Great Expectations suite, the feature
pipeline and the checks of every value from outside (`casting`: service requests, batch scoring, CSV
files) are all derived from `COLUMNS` below.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

TRAINING = "training"  # a labelled customer: key, features, label
SERVING = "serving"  # one request row: the features only
SCORING = "scoring"  # a customer scored in bulk: key and features (the scores are written back by key)
ENVIRONMENTS = (TRAINING, SERVING, SCORING)


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "integer" | "float" | "category" (a string with a closed set of values)
    role: str  # "key" | "feature" | "label"
    description: str
    allowed: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    # A coded integer (region, channel): a label, not a magnitude. The model also takes its response rate
    # (target encoding, `features.TARGET_ENCODED`); drift compares its value shares.
    categorical: bool = False
    environments: tuple[str, ...] = ENVIRONMENTS
    example: Any = None  # a typical value: form defaults, warm-up predictions, docs

    @property
    def pandas_dtype(self) -> str:
        return {"integer": "int64", "float": "float64", "category": "str"}[self.kind]

    @property
    def choices(self) -> tuple:
        """The allowed values in their order (a category's code is its position); () when any value goes."""
        return self.allowed or ()


COLUMNS: tuple[Column, ...] = (
    Column("id", "integer", "key", "Customer id; the natural key of a document.", minimum=1,
           environments=(TRAINING, SCORING), example=1),
    Column("Gender", "category", "feature", "Customer gender.", allowed=("Male", "Female"), example="Male"),
    Column("Age", "integer", "feature", "Age in years (the real data spans 20-85).", minimum=18, maximum=100,
           example=44),
    Column("Driving_License", "integer", "feature", "1 if the customer holds a driving licence.", allowed=(0, 1),
           example=1),
    # Kaggle writes the codes as floats ("28.0"); they are integers (codes, see `categorical`).
    Column("Region_Code", "integer", "feature", "Region of the customer (53 codes).", minimum=0, maximum=52,
           categorical=True, example=28),
    Column("Previously_Insured", "integer", "feature", "1 if the customer already has vehicle insurance.",
           allowed=(0, 1), example=0),
    Column("Vehicle_Age", "category", "feature", "Age of the vehicle.", allowed=("< 1 Year", "1-2 Year", "> 2 Years"),
           example="> 2 Years"),
    Column("Vehicle_Damage", "category", "feature", "Vehicle damaged in the past.", allowed=("Yes", "No"),
           example="Yes"),
    Column("Annual_Premium", "float", "feature", "Health premium per year (real data: 2,630-540,165).",
           minimum=0.0, maximum=1_000_000.0, example=40454.0),
    Column("Policy_Sales_Channel", "integer", "feature", "Outreach channel code (agents, mail, phone...).",
           minimum=1, maximum=163, categorical=True, example=26),
    Column("Vintage", "integer", "feature", "Days the customer has been with the company (real data: 10-299).",
           minimum=0, maximum=3650, example=217),
    Column("Response", "integer", "label", "1 if the customer is interested in vehicle insurance.", allowed=(0, 1),
           environments=(TRAINING,), example=1),
)

BY_NAME = {c.name: c for c in COLUMNS}
KEY = "id"
LABEL = "Response"
FEATURES = tuple(c.name for c in COLUMNS if c.role == "feature")
# Continuous: a number with no closed set of values (age, premium, vintage); everything else is discrete
# (string categories, codes, 0/1 flags). Drift compares deciles of the first and value shares of the second.
CONTINUOUS_FEATURES = tuple(c.name for c in COLUMNS
                            if c.role == "feature" and c.kind != "category" and c.allowed is None and not c.categorical)
DISCRETE_FEATURES = tuple(name for name in FEATURES if name not in CONTINUOUS_FEATURES)


@dataclass(frozen=True)
class ProtectedAttribute:
    """A column fairness is measured on (`fairness`): per group, for candidate and champion, every run.

    A category's groups are its values; a number is cut into `bands` (lower edges; each band runs to the
    next edge, the last is open). `gated`: the blessing rule caps its equalized-odds difference
    (`max_equalized_odds_difference`). Age is measured but not gated: buying genuinely differs by age (in
    the real sample 3.9 % of under-30s buy, 20-21 % of 30-49s), so any useful model has a large gap there
    (benchmarks/README.md, "Fairness"); a reviewer reads it in the report. Whether an attribute is also a
    model input is the training run's choice (`exclude_features`).
    """

    name: str
    bands: tuple[int, ...] | None = None
    gated: bool = False


PROTECTED_ATTRIBUTES: tuple[ProtectedAttribute, ...] = (
    ProtectedAttribute("Gender", gated=True),
    ProtectedAttribute("Age", bands=(18, 30, 40, 50, 60, 70)),
)
# The columns whose values identify or describe a person: the key and the protected attributes. Validation
# results, reports, task logs and alerts count their unexpected values and never quote one.
PERSONAL_COLUMNS = frozenset({KEY, *(attribute.name for attribute in PROTECTED_ATTRIBUTES)})
# Raw-snapshot column holding values that could not take their declared type (see `cast_frame`).
INVALID_VALUES_COLUMN = "_invalid_values"
# Sane bounds for the share of positive labels in a training snapshot (real data: 12.26 %).
LABEL_RATE_BOUNDS = (0.02, 0.5)


def example_record(environment: str = SERVING) -> dict:
    """One valid record (the first row of the Kaggle file): warm-up input and form defaults."""
    return {c.name: c.example for c in columns(environment)}


@functools.cache  # a tuple of frozen columns: the same answer every time, asked on every request
def columns(environment: str = TRAINING) -> tuple[Column, ...]:
    if environment not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {environment!r}; expected one of {ENVIRONMENTS}")
    return tuple(c for c in COLUMNS if environment in c.environments)


def column_names(environment: str = TRAINING) -> list[str]:
    return [c.name for c in columns(environment)]


def arrow_schema(environment: str = TRAINING, with_invalid_values: bool = False):
    import pyarrow as pa

    types = {"integer": pa.int64(), "float": pa.float64(), "category": pa.string()}
    fields = [pa.field(c.name, types[c.kind]) for c in columns(environment)]
    if with_invalid_values:
        fields.append(pa.field(INVALID_VALUES_COLUMN, pa.string()))
    return pa.schema(fields)


@dataclass(frozen=True)
class Problem:
    """One offending value. `row` is the frame's positional row (None for a whole-column problem)."""

    row: int | None
    column: str
    reason: str

    def as_dict(self) -> dict:
        return {"row": self.row, "column": self.column, "reason": self.reason}
