"""Request and response formats of `/predict`, decoded and checked without Flask.

Two request formats, as MLflow's scoring server names them:

    {"records": [{"Gender": "Male", "Age": 44, ...}, ...]}
    {"dataframe_split": {"columns": ["Gender", "Age", ...], "data": [["Male", 44, ...], ...]}}

The answer: {"model_version", "threshold", "predictions": [{"probability", "label"}, ...]}.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from cross_sell import casting

RECORDS = "records"
DATAFRAME_SPLIT = "dataframe_split"


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
    """orjson takes UTF-8 only (RFC 8259) and refuses NaN/Infinity: both are 400."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ClientError(400, f"malformed JSON: {error}") from None


@dataclass(frozen=True)
class RequestRows:
    """The rows of a request, as sent (`records`, or `dataframe_split`'s names and data): the engine
    takes either straight to columns (`casting.check_records`, `casting.check_split`)."""

    count: int
    records: list[dict] | None = None
    names: list[str] | None = None
    data: list[list] | None = None

    def check(self, allow_text: bool = False) -> casting.CheckedRequest:
        if self.records is not None:
            return casting.check_records(self.records, allow_text=allow_text)
        assert self.names is not None and self.data is not None  # `rows_from_payload` sets one form or the other
        return casting.check_split(self.names, self.data, allow_text=allow_text)


def rows_from_payload(payload, max_rows: int) -> RequestRows:
    """The rows of a decoded request in either format; 413 over `max_rows`, 422 for a wrong shape."""
    if not isinstance(payload, dict):
        raise ClientError(422, f"the body must be a JSON object with {RECORDS!r} or {DATAFRAME_SPLIT!r}")
    if RECORDS in payload:
        records = payload[RECORDS]
        if not isinstance(records, list):
            raise ClientError(422, f"{RECORDS!r} must be a list of objects")
        rows = RequestRows(len(records), records=records)
    elif DATAFRAME_SPLIT in payload:
        rows = _split_rows(payload[DATAFRAME_SPLIT], max_rows)
    else:
        raise ClientError(422, f"the body must have {RECORDS!r} or {DATAFRAME_SPLIT!r}")
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


def _split_rows(split, max_rows: int) -> RequestRows:
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
    return RequestRows(len(data), names=columns, data=data)


def predictions_body(version: str, threshold: float, probabilities: list[float], labels: list[int]) -> dict:
    return {"model_version": version, "threshold": threshold,
            "predictions": [{"probability": p, "label": y} for p, y in zip(probabilities, labels, strict=True)]}
