"""Request and response formats, decoded and checked without Flask.

Row formats, as MLflow's scoring server names them (every endpoint that takes rows accepts each):

    {"records": [{"Gender": "Male", "Age": 44, ...}, ...]}                    (this project's own name)
    {"dataframe_records": [{"Gender": "Male", "Age": 44, ...}, ...]}          (MLflow; `instances` too)
    {"dataframe_split": {"columns": ["Gender", "Age", ...], "data": [["Male", 44, ...], ...]}}
    {"inputs": {"Gender": ["Male", ...], "Age": [44, ...], ...}}              (columnar; or a list of records)

A row may carry the identifier column (`id` by default, SERVING_ID_COLUMN): never fed to the model, echoed
back with its prediction. `/predict` answers {"model_version", "threshold", "predictions": [{"probability",
"label"[, "id"]}, ...]}; MLflow's `/invocations` {"predictions": [...]} (serving/protocols.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import orjson

from cross_sell.data import casting

RECORDS = "records"
DATAFRAME_SPLIT = "dataframe_split"
DATAFRAME_RECORDS = "dataframe_records"
INSTANCES = "instances"
INPUTS = "inputs"
FORMATS = (RECORDS, DATAFRAME_SPLIT, DATAFRAME_RECORDS, INSTANCES, INPUTS)
# A `records` body is 3 levels deep (object, list, record), `dataframe_split` 4 (object, object, data, row);
# a value nested a little (a list where a number belongs) is the client's 422 like any wrong value, a
# deeper one a 400 before anything walks it (Python's repr of a list 1,000 deep raised RecursionError).
MAX_DEPTH = 8
# Below this many bytes `bytes.count` beats NumPy's fixed cost (a one-row body is ~250 bytes).
_NUMPY_COUNT_BYTES = 8 * 1024


class ClientError(Exception):
    """A request the client must change: answered with `status` and the message (and per-row problems)."""

    def __init__(self, status: int, message: str, problems: list[dict] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems

    def body(self) -> dict:
        body: dict = {"error": self.message}
        if self.problems is not None:
            body["problems"] = self.problems
        return body


def decode_json(body: bytes):
    """The body as JSON, or a 400 with the reason: orjson takes UTF-8 only (RFC 8259) and refuses NaN and
    Infinity; an object with a key twice (orjson would keep the last silently) and nesting deeper than
    `MAX_DEPTH` are refused too (`check_structure`)."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if str(error).startswith("depth limit exceeded"):  # orjson's own limit, 1,024 levels
            raise ClientError(400, f"JSON nested more than {MAX_DEPTH} levels deep") from None
        raise ClientError(400, f"malformed JSON: {error}") from None
    check_structure(body, decoded)
    return decoded


def check_structure(body: bytes, decoded) -> None:
    """400 for a duplicate key (at any level) or nesting deeper than `MAX_DEPTH`, before anything recurses.

    The usual body is proven clean by counting three bytes: every object has one `{`, every list one `[`
    and every key one `:` outside strings, so when the body holds exactly as many as the request format's
    own containers and keys (`_format_counts`, from the decoded body), there is no other container (no
    nesting) and no key orjson dropped (no duplicate). Only a body that fails the count (a nested or an
    odd value, a `:` inside a string) is walked: its depth without recursion, then its keys (by the standard
    library's parser, which keeps every pair; slower, and only for such bodies)."""
    expected = _format_counts(decoded)  # each count of the body is at least its own: equal sums suffice
    if expected is not None and _byte_counts(body) == expected:
        return
    if _deeper_than(decoded, MAX_DEPTH):
        raise ClientError(400, f"JSON nested more than {MAX_DEPTH} levels deep")
    try:
        json.loads(body, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as duplicate:
        raise ClientError(400, f"duplicate key {duplicate.key!r} in a JSON object") from None
    except (ValueError, RecursionError):  # orjson took it, the standard library does not: refuse
        raise ClientError(400, "malformed JSON") from None


def _format_counts(decoded, level: int = 1) -> tuple[int, int] | None:
    """(objects and lists, keys) of the body's containers, assuming that every list of many objects or of
    lists holds scalars only (the rows of a request), without looking at one of its values; None for a body
    that is not an object, or containers nested deeper than `MAX_DEPTH` here. The byte counts then prove
    the assumption (any container it missed adds a `{` or `[`, any key a `:`)."""
    if level > MAX_DEPTH:
        return None
    kind = type(decoded)
    if kind is dict:
        containers, keys = 1, len(decoded)
        for value in decoded.values():
            if type(value) is dict or type(value) is list:
                found = _format_counts(value, level + 1)
                if found is None:
                    return None
                containers, keys = containers + found[0], keys + found[1]
        return containers, keys
    if kind is not list:
        return None if level == 1 else (0, 0)
    if level == 1:
        return None
    types = set(map(type, decoded))
    if dict not in types and list not in types:  # values (a column, a split's names, a shape)
        return 1, 0
    if types == {dict} and len(decoded) > _WALKED_ITEMS:  # rows as records: one object each, their keys
        return 1 + len(decoded), sum(map(len, decoded))
    if types == {list} and len(decoded) > _WALKED_ITEMS:  # rows as lists
        return 1 + len(decoded), 0
    containers, keys = 1, 0
    for value in decoded:  # a few containers (an Open Inference Protocol request's inputs): walked
        if type(value) is dict or type(value) is list:
            found = _format_counts(value, level + 1)
            if found is None:
                return None
            containers, keys = containers + found[0], keys + found[1]
    return containers, keys


# A list of at most this many containers is walked (each container's own counts); a longer one is rows.
_WALKED_ITEMS = 64


def _byte_counts(body: bytes) -> tuple[int, int]:
    """How many `{` or `[` (one pass: the two differ by bit 0x20 only, and no other byte does) and how many
    `:` the body holds, in strings too."""
    if len(body) < _NUMPY_COUNT_BYTES:
        return body.count(b"{") + body.count(b"["), body.count(b":")
    view = np.frombuffer(body, dtype=np.uint8)
    return int(np.count_nonzero((view | 0x20) == ord("{"))), int(np.count_nonzero(view == ord(":")))


def _deeper_than(decoded, limit: int) -> bool:
    """Whether containers nest more than `limit` levels (the body itself is level 1), walked with a stack
    of its own down to `limit + 1` levels at most."""
    stack = [(decoded, 1)]
    while stack:
        value, level = stack.pop()
        if type(value) is dict:
            value = value.values()
        elif type(value) is not list:
            continue
        if level > limit:
            return True
        stack.extend((item, level + 1) for item in value)
    return False


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        self.key = key if len(key) <= 40 else key[:39] + "…"


def _refuse_duplicates(pairs: list[tuple[str, object]]) -> dict:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return found


@dataclass(frozen=True)
class RequestRows:
    """The rows of a request, as sent (records, a split's names and data, or columns by name): the engine
    takes each straight to columns (`casting.check_records`, `check_split`, `check_columns`); `passthrough`
    names the identifier column echoed back."""

    count: int
    records: list[dict] | None = None
    names: list[str] | None = None
    data: list[list] | None = None
    columns: dict[str, list] | None = None
    passthrough: str | None = None

    def check(self, allow_text: bool = False) -> casting.CheckedRequest:
        if self.records is not None:
            return casting.check_records(self.records, allow_text=allow_text, passthrough=self.passthrough)
        if self.columns is not None:
            return casting.check_columns(self.columns, self.count, allow_text=allow_text,
                                         passthrough=self.passthrough)
        assert self.names is not None and self.data is not None  # `rows_from_payload` sets one form
        return casting.check_split(self.names, self.data, allow_text=allow_text, passthrough=self.passthrough)


def rows_from_payload(payload, max_rows: int, passthrough: str | None = None) -> RequestRows:
    """The rows of a decoded request in any of `FORMATS`; 400 for two formats in one body, 413 over
    `max_rows`, 422 for a wrong shape."""
    if not isinstance(payload, dict):
        raise ClientError(422, f"the body must be a JSON object with one of {', '.join(map(repr, FORMATS))}")
    given = [name for name in FORMATS if name in payload]
    if len(given) > 1:
        raise ClientError(400, f"the body has both {' and '.join(map(repr, given))}; send one format")
    if not given:
        raise ClientError(422, f"the body must have one of {', '.join(map(repr, FORMATS))}")
    name, value = given[0], payload[given[0]]
    if name == DATAFRAME_SPLIT:
        rows = _split_rows(value, max_rows, passthrough)
    elif name == INPUTS and isinstance(value, dict):
        rows = _column_rows(value, max_rows, passthrough)
    else:
        if not isinstance(value, list):
            raise ClientError(422, f"{name!r} must be a list of objects" + (
                " or an object of columns" if name == INPUTS else ""))
        rows = RequestRows(len(value), records=value, passthrough=passthrough)
    if not rows.count:
        raise ClientError(422, "no rows to predict")
    if rows.count > max_rows:
        raise ClientError(413, f"{rows.count} rows; at most {max_rows} per request")
    if rows.records is not None and set(map(type, rows.records)) != {dict}:  # one pass in C when all are
        not_objects = [{"row": i, "field": None, "message": "expected an object"}
                       for i, record in enumerate(rows.records) if not isinstance(record, dict)]
        if not_objects:
            raise ClientError(422, "invalid input", not_objects)
    return rows


def _split_rows(split, max_rows: int, passthrough: str | None) -> RequestRows:
    if not isinstance(split, dict) or not isinstance(split.get("columns"), list) \
            or not isinstance(split.get("data"), list):
        raise ClientError(422, f"{DATAFRAME_SPLIT!r} must be an object with lists 'columns' and 'data'")
    columns, data = split["columns"], split["data"]
    if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
        raise ClientError(422, f"'{DATAFRAME_SPLIT}.columns' must be distinct strings")
    if len(data) > max_rows:
        raise ClientError(413, f"{len(data)} rows; at most {max_rows} per request")
    problems = [{"row": i, "field": None, "message": f"expected a list of {len(columns)} values"}
                for i, row in enumerate(data) if not isinstance(row, list) or len(row) != len(columns)]
    if problems:
        raise ClientError(422, "invalid input", problems)
    return RequestRows(len(data), names=columns, data=data, passthrough=passthrough)


def _column_rows(columns: dict, max_rows: int, passthrough: str | None) -> RequestRows:
    """`{"inputs": {name: [values], ...}}`: every column a list, all of one length."""
    lengths = {len(values) for values in columns.values() if isinstance(values, list)}
    if not columns or len(lengths) != 1 or not all(isinstance(values, list) for values in columns.values()):
        raise ClientError(422, f"{INPUTS!r} as columns must map each name to a list, all of one length")
    count = lengths.pop()
    if count > max_rows:
        raise ClientError(413, f"{count} rows; at most {max_rows} per request")
    return RequestRows(count, columns=columns, passthrough=passthrough)


def predictions(probabilities: list[float], labels: list[int], ids: list | None = None) -> list[dict]:
    """One answer per row: its probability and label, and the identifier it was sent with, if any."""
    if ids is None:
        return [{"probability": p, "label": y} for p, y in zip(probabilities, labels, strict=True)]
    return [{"id": i, "probability": p, "label": y} for i, p, y in zip(ids, probabilities, labels, strict=True)]


def predictions_body(version: str, threshold: float, probabilities: list[float], labels: list[int],
                     ids: list | None = None) -> dict:
    return {"model_version": version, "threshold": threshold, "predictions": predictions(probabilities, labels, ids)}
