"""The one engine that casts raw values to the schema's types and checks its rules, column by column.

Every path that takes customer values from outside goes through `cast_column`: the service's JSON
requests in both formats (`check_records`, `check_split`), batch scoring's MongoDB documents and CSV
frames (`cast_documents`, `cast_columns`), the CLI's included, and the training side's frames
(`validate_frame`: the loader, reproduce, the shadow report). A column whose values
all have its kind is cast and checked in NumPy; only a value that breaks a rule there, and every value of
a column of mixed kinds (a stray string, boolean or null), goes through the scalar rules (`cast_value`,
`rule_broken`), which are the wording of every problem. So the answers are the same whichever way the
values came in, and the cost per row is NumPy's.

Output: one array per column, integers int64, floats float64 and categories the position of the value in
the column's `allowed` (int8), which is also the model's code for it (`model_input`). A row that has a
problem holds an arbitrary value: drop it (the service refuses the request, scoring quarantines the row).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np

from .schema import COLUMNS, SERVING, TRAINING, Column, Problem, column_names, columns

if TYPE_CHECKING:  # pandas is imported where a frame is built: the service starts without it
    import pandas as pd

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INTEGERS, _FLOATS = (int, np.integer), (float, np.floating)
_DTYPES = {"integer": np.int64, "float": np.float64, "category": np.int8}
# Below this many values a column goes straight to the scalar rules (the same rules the vectorised checks
# defer to): a one-row request then costs no NumPy call per column (benchmarks/README.md, "Serving").
VECTOR_ROWS = 8


# -- the scalar rules: one value, and the wording of every problem ------------------------------------

def is_missing(value: Any) -> bool:
    # pandas.NA without importing pandas (a JSON request never holds it; a frame's cell may)
    return value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NAType"


def cast_value(column: Column, value: Any, allow_text: bool = True) -> tuple[Any, str | None]:
    """Cast one raw value (from CSV text, JSON or BSON) to the column's type, or say why it cannot be.

    `allow_text` accepts numbers written as strings ("44", "28.0"), as in CSV files and HTML forms;
    JSON clients are held to real numbers. A missing value casts to None without a reason here
    (`rule_broken` says it is missing)."""
    kind = type(value)  # the usual cases first: exactly the column's type
    if kind is int and column.kind == "integer" and _INT64_MIN <= value <= _INT64_MAX:
        return value, None
    if kind is str and column.kind == "category" or kind is float and column.kind == "float" and math.isfinite(value):
        return value, None
    if is_missing(value):
        return None, None
    if column.kind == "category":
        if isinstance(value, str):
            return value, None
        return None, f"expected a string, got {type(value).__name__} {value!r}"
    if isinstance(value, (bool, np.bool_)):
        return None, f"expected a number, got boolean {value!r}"
    number = value
    if isinstance(value, str) and not allow_text:
        return None, f"expected a number, got string {value!r}"
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text) if column.kind == "integer" and text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            return None, f"expected a number, got {value!r}"
    elif not isinstance(value, (int, float, np.integer, np.floating)):
        return None, f"expected a number, got {type(value).__name__} {value!r}"
    if isinstance(number, (float, np.floating)) and not math.isfinite(number):
        return None, f"expected a finite number, got {value!r}"
    if column.kind == "integer":
        if not isinstance(number, (int, np.integer)) and not float(number).is_integer():
            return None, f"expected an integer, got {value!r}"
        if not _INT64_MIN <= int(number) <= _INT64_MAX:
            return None, f"integer too large: {value!r}"
        return int(number), None
    return float(number), None


def rule_broken(column: Column, value: Any) -> str | None:
    """Why an already cast value breaks the column's rules (missing, not allowed, out of range), or None."""
    if value is None:
        return "missing value"
    if column.allowed is not None and value not in column.allowed:
        return f"{not_allowed(column)}: {value!r}"
    if column.minimum is None and column.maximum is None:
        return None
    low = -math.inf if column.minimum is None else column.minimum
    high = math.inf if column.maximum is None else column.maximum
    if not low <= value <= high:
        return f"{out_of_range(column)}: {value!r}"
    return None


def not_allowed(column: Column) -> str:
    return "not one of " + ", ".join(map(repr, column.choices))


def out_of_range(column: Column) -> str:
    return f"out of range [{_bound(column.minimum)}, {_bound(column.maximum)}]"


def _bound(bound: float | None) -> str:
    if bound is None:
        return "-inf"
    return str(int(bound)) if float(bound).is_integer() else str(bound)


# -- the engine: one column --------------------------------------------------------------------------

def cast_column(values: Sequence | np.ndarray, column: Column,
                allow_text: bool = False) -> tuple[np.ndarray, list[Problem]]:
    """One column's values (a list or tuple as decoded from JSON or BSON, or a NumPy array of a frame's
    column) cast to the column's array type and checked; the problems in row order."""
    if len(values) < VECTOR_ROWS:  # NumPy's fixed cost per call is more than a few scalar checks
        return _scalar_column(values.tolist() if isinstance(values, np.ndarray) else values, column, allow_text)
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":  # a frame's numeric column
        array, suspect = _numeric(values, column)
        rows, values_at = np.flatnonzero(suspect).tolist(), values.tolist  # only called if a value is suspect
    else:
        values = values.tolist() if isinstance(values, np.ndarray) else values
        array, suspect = _vectorised(values, column)
        rows, values_at = np.flatnonzero(suspect).tolist(), None
    problems = []
    if rows:
        raw = values_at() if values_at is not None else values
        for row in rows:
            value, reason = cast_value(column, raw[row], allow_text)
            reason = reason or rule_broken(column, value)
            if reason:
                problems.append(Problem(row, column.name, reason))
            elif column.kind == "category":
                array[row] = column.choices.index(value)
            else:
                array[row] = value
    return array, problems


def _scalar_column(values: Sequence, column: Column, allow_text: bool) -> tuple[np.ndarray, list[Problem]]:
    """A few values, each by the scalar rules (a one-row request: 10 columns of one value)."""
    cast, problems = [], []
    for row, raw in enumerate(values):
        value, reason = cast_value(column, raw, allow_text)
        reason = reason or rule_broken(column, value)
        if reason:
            problems.append(Problem(row, column.name, reason))
            value = 0
        elif column.kind == "category":
            value = _positions(column)[value]
        cast.append(value)
    return np.array(cast, dtype=_DTYPES[column.kind]), problems


def _vectorised(values: Sequence, column: Column) -> tuple[np.ndarray, np.ndarray]:
    """The array and the rows NumPy cannot vouch for (those go through the scalar rules)."""
    if column.kind == "category":
        if column.allowed is None:
            raise ValueError(f"{column.name}: the engine needs the category's allowed values")
        position = _positions(column)
        try:  # anything but an allowed string (None, a number, another string) is a suspect
            array = np.fromiter(map(position.get, values, repeat(-1)), dtype=np.int8, count=len(values))
        except TypeError:  # an unhashable value (a JSON list or object): every value by the scalar rules
            return np.zeros(len(values), dtype=np.int8), np.ones(len(values), dtype=bool)
        return array, array < 0
    kinds = set(map(type, values))
    numbers = kinds and not any(issubclass(k, (bool, np.bool_)) for k in kinds) and \
        all(issubclass(k, _INTEGERS) or issubclass(k, _FLOATS) for k in kinds)
    if numbers:
        exact = all(issubclass(k, _INTEGERS) for k in kinds) or column.kind == "float"
        try:
            array = np.array(values, dtype=_DTYPES[column.kind] if exact else np.float64)
        except OverflowError:  # beyond int64 (or float64): the scalar rules say so
            pass
        else:
            return (array, _breaks_numeric_rules(array, column)) if exact else _numeric(array, column)
    # mixed kinds: every value by the scalar rules
    return np.zeros(len(values), dtype=_DTYPES[column.kind]), np.ones(len(values), dtype=bool)


@functools.cache
def _names(environment: str) -> tuple[str, ...]:
    return tuple(column_names(environment))


def _positions(column: Column) -> dict:
    return _POSITIONS[column.name]


# A category's value -> its position in `allowed` (by name: hashing a frozen Column costs more than this).
_POSITIONS = {c.name: {value: code for code, value in enumerate(c.allowed)} for c in COLUMNS if c.allowed}


def _numeric(values: np.ndarray, column: Column) -> tuple[np.ndarray, np.ndarray]:
    """A numeric array (a frame's column, or JSON numbers with a fraction somewhere) for a numeric or
    category column. NaN (missing), a fraction in an integer column and a whole float beyond 2**53 (where
    floats skip integers: the scalar rules see the value as sent) are suspects, like every value that
    breaks a rule."""
    if column.kind == "category":
        return np.zeros(len(values), dtype=np.int8), np.ones(len(values), dtype=bool)
    if values.dtype.kind in "iu" and column.kind == "integer":
        if values.dtype.kind == "u" and len(values) and values.max() > _INT64_MAX:
            return np.zeros(len(values), dtype=np.int64), np.ones(len(values), dtype=bool)
        array = values.astype(np.int64, copy=False)
        return array, _breaks_numeric_rules(array, column)
    as_float = values.astype(np.float64, copy=False)
    if column.kind == "float":
        return as_float, _breaks_numeric_rules(as_float, column)
    with np.errstate(invalid="ignore"):
        whole = np.isfinite(as_float) & (as_float == np.floor(as_float)) & (np.abs(as_float) < 2.0**53)
    array = np.where(whole, as_float, 0).astype(np.int64)
    return array, ~whole | _breaks_numeric_rules(array, column)


def _breaks_numeric_rules(array: np.ndarray, column: Column) -> np.ndarray:
    suspect = ~np.isfinite(array) if array.dtype.kind == "f" else np.zeros(len(array), dtype=bool)
    if column.allowed is not None:  # a few values: one comparison each beats `np.isin`'s sort
        allowed = np.zeros(len(array), dtype=bool)
        for value in column.allowed:
            allowed |= array == value
        suspect |= ~allowed
    with np.errstate(invalid="ignore"):
        if column.minimum is not None:
            suspect |= array < column.minimum
        if column.maximum is not None:
            suspect |= array > column.maximum
    return suspect


# -- many columns: batch scoring (documents, CSV frames) --------------------------------------------

def cast_columns(values: Mapping[str, Sequence | np.ndarray | None], rows: int, environment: str,
                 allow_text: bool = False) -> tuple[dict[str, np.ndarray], list[Problem]]:
    """Every column of `environment`, cast and checked; a column given as None is absent (a missing
    value in every row). The problems sorted by row, in schema order within a row."""
    problems: list[Problem] = []
    cast = {}
    for column in columns(environment):
        found = values.get(column.name)
        cast[column.name], found = cast_column([None] * rows if found is None else found,
                                               column, allow_text)
        problems += found
    problems.sort(key=lambda p: -1 if p.row is None else p.row)  # stable: schema order within a row
    return cast, problems


def cast_documents(documents: list[dict], environment: str,
                   allow_text: bool = False) -> tuple[dict[str, np.ndarray], list[Problem]]:
    """`cast_columns` for documents as MongoDB holds them: an absent field is a missing value, an extra
    one (`_id`, the scores written back) is not this contract's business."""
    return cast_columns({name: [document.get(name) for document in documents]
                         for name in column_names(environment)}, len(documents), environment, allow_text)


# -- the service's requests: fields must be exactly the environment's --------------------------------

@dataclass(frozen=True)
class CheckedRequest:
    """A request's rows as model-ready columns, or every problem (sorted by row, then field name, the
    order of the service's 422 list); `passthrough`: the values of the request's identifier column (never
    fed to the model, echoed back with each prediction), None when it sent none."""

    columns: dict[str, np.ndarray]
    rows: int
    problems: list[Problem]
    passthrough: list | None = None

    def record(self, row: int) -> dict:
        """One row as plain values (categories as their strings): what the request sampler keeps."""
        out = {}
        for column in columns(SERVING):
            value = self.columns[column.name][row].item()
            out[column.name] = column.choices[value] if column.kind == "category" else value
        return out


_PASSTHROUGH_TYPES = (str, int, float, type(None))


def _passthrough_problems(values: Sequence, name: str) -> list[Problem]:
    """An identifier echoed back must be a string, a number or null (a JSON scalar), never an object."""
    if set(map(type, values)) <= set(_PASSTHROUGH_TYPES):
        return []
    return [Problem(i, name, "expected a string or a number (an identifier echoed back)")
            for i, value in enumerate(values) if type(value) not in _PASSTHROUGH_TYPES]


def check_records(records: list[dict], environment: str = SERVING, allow_text: bool = False,
                  passthrough: str | None = None) -> CheckedRequest:
    """`{"records": [...]}`: each record must have exactly the environment's fields ("unknown field",
    "missing field"), and may have the `passthrough` identifier; every value is checked."""
    names = _names(environment)
    sent = passthrough is not None and any(passthrough in record for record in records)
    wanted = len(names) + sent
    if len(names) > 1 and set(map(len, records)) == {wanted}:
        try:  # the usual case: every record has every field, so with as many keys it has no other
            by_name = {name: [record[name] for record in records] for name in names}
            ids = [record[passthrough] for record in records] if sent else None
        except KeyError:
            pass
        else:
            return _checked(by_name, len(records), environment, allow_text, [], set(), passthrough, ids)
    known = set(names) | ({passthrough} if sent else set())
    problems: list[Problem] = []
    missing: set[tuple[int, str]] = set()
    for i, record in enumerate(records):
        if record.keys() == known:
            continue
        problems += [Problem(i, field, "unknown field") for field in record if field not in known]
        missing.update((i, name) for name in names if name not in record)
    problems += [Problem(i, name, "missing field") for i, name in missing]
    by_name = {name: [record.get(name) for record in records] for name in names}
    ids = [record.get(passthrough) for record in records] if sent else None
    return _checked(by_name, len(records), environment, allow_text, problems, missing, passthrough, ids)


def check_split(names: list[str], data: list[list], environment: str = SERVING,
                allow_text: bool = False, passthrough: str | None = None) -> CheckedRequest:
    """`{"dataframe_split": {"columns": names, "data": rows}}` (rows already checked to be lists of
    `len(names)` values, names distinct): transposed straight to columns."""
    by_column = list(zip(*data, strict=True)) if data else [() for _ in names]
    return check_columns(dict(zip(names, by_column, strict=True)), len(data), environment, allow_text, passthrough)


def check_columns(by_name: Mapping[str, Sequence], rows: int, environment: str = SERVING,
                  allow_text: bool = False, passthrough: str | None = None) -> CheckedRequest:
    """Columns of `rows` values each, by name (a split's, or a columnar body's): a column not in the
    environment (nor the `passthrough` identifier) is an unknown field of every row; one the request lacks,
    a missing field of every row."""
    wanted = column_names(environment)
    problems = [Problem(i, name, "unknown field") for i in range(rows) for name in by_name
                if name not in wanted and name != passthrough]
    absent = [name for name in wanted if name not in by_name]
    missing = {(i, name) for i in range(rows) for name in absent}
    problems += [Problem(i, name, "missing field") for i, name in missing]
    values = {name: by_name[name] if name in by_name else [None] * rows for name in wanted}
    ids = list(by_name[passthrough]) if passthrough is not None and passthrough in by_name else None
    return _checked(values, rows, environment, allow_text, problems, missing, passthrough, ids)


def _checked(by_name: Mapping[str, Sequence], rows: int, environment: str, allow_text: bool,
             problems: list[Problem], missing: set, passthrough: str | None = None,
             ids: list | None = None) -> CheckedRequest:
    cast = _one_valid_row(by_name, environment) if rows == 1 and not problems else None
    if cast is not None:
        return CheckedRequest(cast, rows, _passthrough_problems(ids, passthrough) if ids is not None and
                              passthrough is not None else [], ids)
    cast = {}
    for column in columns(environment):
        cast[column.name], found = cast_column(by_name[column.name], column, allow_text)
        if found:
            problems += [p for p in found if (p.row, p.column) not in missing] if missing else found
    if ids is not None and passthrough is not None:
        problems += _passthrough_problems(ids, passthrough)
    if problems:
        problems.sort(key=lambda p: (p.row, p.column))
    return CheckedRequest(cast, rows, problems, ids)


def _one_valid_row(by_name: Mapping[str, Sequence], environment: str) -> dict[str, np.ndarray] | None:
    """A one-row request's columns when every value is of its column's exact type and within its rules (what
    `cast_column` would make of them: the scalar rules pass such a value through unchanged); None as soon
    as one is not, for the scalar rules to say why. Most of the service's requests are one valid row."""
    cast = {}
    for name, exact, positions, allowed, low, high, dtype in _row_rules(environment):
        value = by_name[name][0]
        if type(value) is not exact:
            return None
        if positions is not None:
            value = positions.get(value)
            if value is None:
                return None
        elif (allowed is not None and value not in allowed) or not low <= value <= high or \
                (exact is float and not math.isfinite(value)):
            return None
        cast[name] = np.array((value,), dtype)
    return cast


@functools.cache
def _row_rules(environment: str) -> tuple:
    """Per column of `environment`: (name, the exact type a valid value has, a category's positions, the
    allowed values, the bounds (an integer's within int64), the column's array type)."""
    rules = []
    for column in columns(environment):
        exact = {"integer": int, "float": float, "category": str}[column.kind]
        low = -math.inf if column.minimum is None else column.minimum
        high = math.inf if column.maximum is None else column.maximum
        if column.kind == "integer":
            low, high = max(low, _INT64_MIN), min(high, _INT64_MAX)
        positions = _POSITIONS.get(column.name) if column.kind == "category" else None
        if column.kind == "category" and positions is None:
            raise ValueError(f"{column.name}: the engine needs the category's allowed values")
        rules.append((column.name, exact, positions, column.allowed, low, high, _DTYPES[column.kind]))
    return tuple(rules)


# -- the snapshot: types only, the rules left to Great Expectations ----------------------------------

def cast_frame(raw: pd.DataFrame, environment: str = TRAINING,
               allow_text: bool = True) -> tuple[pd.DataFrame, list[Problem]]:
    """Give each column of the environment its declared type, for the suite to check.

    Values that cannot take the type become missing and are reported as type problems; columns the
    environment lacks are reported once each; extra columns are dropped. Integer columns that end up
    holding missing values become float64 (that is how pandas represents them), which the suite flags.
    Rule-breaking values of the right type stay as they are: the suite judges them, and quotes none.
    """
    import pandas as pd

    problems: list[Problem] = []
    out: dict[str, pd.Series] = {}
    for column in columns(environment):
        if column.name not in raw.columns:
            problems.append(Problem(None, column.name, "missing column"))
            continue
        fast = _fast_cast(raw[column.name], column)
        if fast is not None:
            out[column.name] = fast
            continue
        values = []
        for row, value in enumerate(raw[column.name].tolist()):
            cast, reason = cast_value(column, value, allow_text)
            if reason:
                problems.append(Problem(row, column.name, reason))
            values.append(cast)
        out[column.name] = _typed_series(values, column)
    return pd.DataFrame(out, index=raw.index), problems


def _fast_cast(series: pd.Series, column: Column) -> pd.Series | None:
    """Vectorised path for a column that already has a compatible dtype (the common, large case)."""
    import pandas as pd

    if column.kind == "category":
        return series.astype("str") if pd.api.types.is_string_dtype(series) and not series.isna().any() else None
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        return None
    if series.isna().any():
        return None
    as_float = series.astype("float64")
    if not np.isfinite(as_float).all():
        return None
    if column.kind == "float":
        return as_float
    if (as_float != np.floor(as_float)).any() or (as_float.abs() >= 2.0**63).any():
        return None
    return series.astype("int64")


def _typed_series(values: list, column: Column) -> pd.Series:
    import pandas as pd

    if column.kind == "category":
        return pd.Series(values, dtype="str")
    if any(v is None for v in values):
        return pd.Series([np.nan if v is None else v for v in values], dtype="float64")
    return pd.Series(values, dtype=column.pandas_dtype)


def validate_frame(raw: pd.DataFrame, environment: str = TRAINING,
                   allow_text: bool = True) -> tuple[pd.DataFrame, list[Problem]]:
    """A frame cast and checked by the engine every other path uses (`cast_column`: the same rules, wording
    and order): the typed frame (integers int64, floats float64, categories their strings) and every problem,
    sorted by row then schema order; a column the frame lacks is one problem, row None. A row with a problem
    holds arbitrary values: drop it or refuse the frame."""
    import pandas as pd

    problems: list[Problem] = []
    typed: dict[str, Any] = {}
    for column in columns(environment):
        if column.name not in raw.columns:
            problems.append(Problem(None, column.name, "missing column"))
            continue
        array, found = cast_column(raw[column.name].to_numpy(), column, allow_text)
        problems += found
        typed[column.name] = pd.Series(np.asarray(column.allowed, dtype=object)[array], dtype="str",
                                       index=raw.index) if column.kind == "category" else \
            pd.Series(array, index=raw.index)
    order = {name: i for i, name in enumerate(column_names(environment))}
    problems.sort(key=lambda p: (-1 if p.row is None else p.row, order[p.column]))
    return pd.DataFrame(typed, index=raw.index), problems
