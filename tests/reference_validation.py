"""The service's request validation as it was before the column-wise engine (`cross_sell.data.casting`),
frozen verbatim from commit bdde984 (`schema.py`'s casting section and `serving/predictor.py`'s choice of
path): the reference the differential tests compare today's answers with. Not product code.
"""
# ruff: noqa

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from cross_sell.data.schema import SCORING, SERVING, TRAINING, Column, Problem, column_names, columns

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _is_missing(value: Any) -> bool:
    # pandas.NA without importing pandas (a JSON request never holds it; a frame's cell may)
    return value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NAType"


def _cast_value(column: Column, value: Any, allow_text: bool = True) -> tuple[Any, str | None]:
    """Cast one raw value (from CSV text, JSON or BSON) to the column's type, or say why it cannot be.

    `allow_text` accepts numbers written as strings ("44", "28.0"), as in CSV files and HTML forms;
    JSON clients are held to real numbers."""
    if _is_missing(value):
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


def cast_frame(raw: pd.DataFrame, environment: str = TRAINING,
               allow_text: bool = True) -> tuple[pd.DataFrame, list[Problem]]:
    """Give each column of the environment its declared type.

    Values that cannot take the type become missing and are reported as type problems; columns the
    environment lacks are reported once each; extra columns are dropped. Integer columns that end up
    holding missing values become float64 (that is how pandas represents them), which the suite flags.
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
            cast, reason = _cast_value(column, value, allow_text)
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


def value_problems(frame: pd.DataFrame, environment: str = TRAINING) -> list[Problem]:
    """Missing values, unknown categories and out-of-range values of an already typed frame.

    Boolean masks per column; a reason string is only made for a row that breaks a rule (a column of
    reason strings for every row cost ~30 MB per 20,000 rows in batch scoring)."""
    import pandas as pd

    problems: list[Problem] = []
    for column in columns(environment):
        if column.name not in frame.columns:
            continue
        series = frame[column.name]
        missing = series.isna().to_numpy()
        present = ~missing
        unknown = out_of_range = None
        if column.allowed is not None:
            unknown = present & ~series.isin(list(column.allowed)).to_numpy()
        if column.minimum is not None or column.maximum is not None:
            numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64")
            low = -np.inf if column.minimum is None else column.minimum
            high = np.inf if column.maximum is None else column.maximum
            with np.errstate(invalid="ignore"):
                out_of_range = present & ((numbers < low) | (numbers > high))
        bad = missing | (unknown if unknown is not None else False) | \
            (out_of_range if out_of_range is not None else False)
        for row in np.flatnonzero(bad):
            if missing[row]:
                problems.append(Problem(int(row), column.name, "missing value"))
                continue
            # the later rule wins, as before: out of range is reported over not-allowed
            reason = _out_of_range(column) if out_of_range is not None and out_of_range[row] else _not_allowed(column)
            problems.append(Problem(int(row), column.name, f"{reason}: {_plain(column, series.iloc[row])!r}"))
    return problems


def _plain(column: Column, value: Any) -> Any:
    """A value as the client sent it: a Python scalar, and an integer column's 3.0 shown as 3."""
    value = value.item() if isinstance(value, np.generic) else value
    if column.kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _value_reason(column: Column, value: Any) -> str | None:
    """The scalar twin of `value_problems` for one already cast value (same wording)."""
    if value is None:
        return "missing value"
    if column.allowed is not None and value not in column.allowed:
        return f"{_not_allowed(column)}: {value!r}"
    if column.minimum is None and column.maximum is None:
        return None
    low = -math.inf if column.minimum is None else column.minimum
    high = math.inf if column.maximum is None else column.maximum
    if not low <= value <= high:
        return f"{_out_of_range(column)}: {value!r}"
    return None


def _not_allowed(column: Column) -> str:
    return "not one of " + ", ".join(map(repr, column.allowed))


def _out_of_range(column: Column) -> str:
    return f"out of range [{_fmt(column.minimum)}, {_fmt(column.maximum)}]"


def _fmt(bound: float | None) -> str:
    if bound is None:
        return "-inf"
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def validate_frame(raw: pd.DataFrame, environment: str = TRAINING,
                   allow_text: bool = True) -> tuple[pd.DataFrame, list[Problem]]:
    """Cast and check a frame against the contract: the typed frame and every problem, sorted by row."""
    typed, problems = cast_frame(raw, environment, allow_text)
    already = {(p.row, p.column) for p in problems}  # a value of the wrong type is not also "missing"
    problems += [p for p in value_problems(typed, environment) if (p.row, p.column) not in already]
    order = {name: i for i, name in enumerate(column_names(environment))}
    problems.sort(key=lambda p: (-1 if p.row is None else p.row, order[p.column]))
    return typed, problems


def _as_sent(values: list, column: Column) -> pd.Series:
    """A column of JSON values, typed when they all have the column's kind (the fast path), otherwise
    kept as objects so a stray boolean, string, float or null is judged as sent, not as pandas coerces it."""
    import pandas as pd

    kinds = set(map(type, values))
    expected = {"integer": {int}, "float": {float}, "category": {str}}[column.kind]
    if kinds == expected or (column.kind == "float" and kinds == {int}):
        return pd.Series(values)
    return pd.Series(values, dtype=object)


# Up to this many records, rows are checked value by value in plain Python (`cast_records`): a one-row
# request then costs about 0.1 ms instead of the ~4 ms of pandas' fixed overhead. Both paths give the
# same problems.
SMALL_BATCH = 32


def _field_problems(records: list, names: list[str]) -> tuple[list[Problem], set]:
    known = set(names)
    problems, missing = [], set()
    for i, record in enumerate(records):
        if record.keys() == known:  # the usual case, one set comparison in C
            continue
        problems += [Problem(i, field, "unknown field") for field in record if field not in known]
        missing.update((i, name) for name in names if name not in record)
    return problems + [Problem(i, name, "missing field") for i, name in missing], missing


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.row if p.row is not None else -1, p.column))


def cast_records(records: Iterable[dict], environment: str = SERVING,
                 allow_text: bool = False) -> tuple[list[dict], list[Problem]]:
    """Cast and check records value by value in plain Python: the cheap path for a few rows.

    Returns the cast records (every column of `environment`, None where missing) and every problem.
    """
    records = list(records)
    problems, _ = _field_problems(records, column_names(environment))
    cast = []
    for i, record in enumerate(records):
        cast_record = {}
        for column in columns(environment):
            if column.name not in record:
                cast_record[column.name] = None
                continue
            value, reason = _cast_value(column, record[column.name], allow_text)
            reason = reason or _value_reason(column, value)
            if reason:
                problems.append(Problem(i, column.name, reason))
            cast_record[column.name] = value
        cast.append(cast_record)
    return cast, _sorted(problems)


def validate_records(records: Iterable[dict], environment: str = SERVING,
                     allow_text: bool = False) -> tuple[pd.DataFrame, list[Problem]]:
    """Validate JSON-like records into a typed frame (the serving path for more than `SMALL_BATCH` rows;
    `cast_records` is the same rules for a few): also refuses unknown and missing fields."""
    import pandas as pd

    records = list(records)
    names = column_names(environment)
    problems, missing = _field_problems(records, names)
    raw = pd.DataFrame({c.name: _as_sent([record.get(c.name) for record in records], c)
                        for c in columns(environment)})
    typed, found = validate_frame(raw, environment, allow_text)
    problems += [p for p in found if (p.row, p.column) not in missing]
    return typed, _sorted(problems)


def cast_columns(records: list[dict], environment: str = SCORING,
                 allow_text: bool = False) -> tuple[dict[str, np.ndarray], list[Problem]]:
    """`cast_records` column by column, for many documents (batch scoring) without building a DataFrame.

    Each column of `environment` becomes one NumPy array: integers int64, floats float64, categories the
    position of the value in `allowed` (int8). A column whose values all have its kind is cast and checked
    in NumPy; a value that breaks a rule there, and every value of a column of mixed kinds, goes through
    the scalar rules (`_cast_value`, `_value_reason`), so the problems are those of `cast_records`, in
    schema order within a row. An absent field is a missing value. The arrays hold an arbitrary value in a
    row that has a problem: drop those rows."""
    problems: list[Problem] = []
    cast = {}
    for column in columns(environment):
        values = [record.get(column.name) for record in records]
        cast[column.name], found = _cast_column(values, column, allow_text)
        problems += found
    problems.sort(key=lambda p: p.row)  # stable: schema order within a row
    return cast, problems


_INTEGERS, _FLOATS = (int, np.integer), (float, np.floating)


def _cast_column(values: list, column: Column, allow_text: bool) -> tuple[np.ndarray, list[Problem]]:
    kinds = set(map(type, values))
    array = None
    if column.kind == "category":
        if column.allowed is None:
            raise ValueError(f"{column.name}: cast_columns needs the category's allowed values")
        if kinds == {str}:
            position = {value: code for code, value in enumerate(column.allowed)}
            array = np.fromiter((position.get(v, -1) for v in values), dtype=np.int8, count=len(values))
            suspect = array < 0
    elif kinds and all(issubclass(k, _INTEGERS) and not issubclass(k, (bool, np.bool_)) or
                       (column.kind == "float" and issubclass(k, _FLOATS)) for k in kinds):
        try:
            array = np.array(values, dtype=np.int64 if column.kind == "integer" else np.float64)
        except OverflowError:  # beyond int64: the scalar rules say so
            array = None
        if array is not None:
            suspect = ~np.isfinite(array) if column.kind == "float" else np.zeros(len(array), dtype=bool)
            if column.allowed is not None:
                suspect |= ~np.isin(array, column.allowed)
            with np.errstate(invalid="ignore"):
                if column.minimum is not None:
                    suspect |= array < column.minimum
                if column.maximum is not None:
                    suspect |= array > column.maximum
    if array is None:  # mixed kinds (a stray string, boolean, null...): every value by the scalar rules
        array = np.zeros(len(values), dtype=np.int8 if column.kind == "category" else
                         np.int64 if column.kind == "integer" else np.float64)
        suspect = np.ones(len(values), dtype=bool)
    problems = []
    for row in np.flatnonzero(suspect):
        value, reason = _cast_value(column, values[row], allow_text)
        reason = reason or _value_reason(column, value)
        if reason:
            problems.append(Problem(int(row), column.name, reason))
        elif column.kind == "category":
            array[row] = column.allowed.index(value)
        else:
            array[row] = value
    return array, problems


def service_answer(records: list[dict], allow_text: bool = False):
    """What `Predictor.predict` did before the engine: (problems as the 422 lists them, model input)."""
    from cross_sell.model import model_input
    if len(records) <= SMALL_BATCH:
        rows, problems = cast_records(records, SERVING, allow_text=allow_text)
        matrix = None if problems else _from_rows(rows)
    else:
        typed, problems = validate_records(records, SERVING, allow_text=allow_text)
        matrix = None if problems else _from_frame(typed)
    return [{"row": p.row, "field": p.column, "message": p.reason} for p in problems], matrix


def _from_frame(frame):
    from cross_sell.model.model_input import CODES
    from cross_sell.data.schema import FEATURES
    out = []
    for name in FEATURES:
        if name in CODES:
            out.append(frame[name].map(CODES[name]).to_numpy(dtype="float64", na_value=np.nan))
        else:
            out.append(frame[name].to_numpy(dtype="float64", na_value=np.nan))
    return np.column_stack(out)


def _from_rows(rows):
    from cross_sell.model.model_input import CODES
    from cross_sell.data.schema import FEATURES

    def value(name, raw):
        if name in CODES:
            return CODES[name].get(raw, math.nan)
        return math.nan if raw is None else raw
    return np.array([[value(name, row[name]) for name in FEATURES] for row in rows], dtype="float64")
