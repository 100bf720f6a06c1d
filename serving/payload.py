"""Request and response formats of `/predict`, decoded and checked without Flask.

Two request formats, as MLflow's scoring server names them:

    {"records": [{"Gender": "Male", "Age": 44, ...}, ...]}
    {"dataframe_split": {"columns": ["Gender", "Age", ...], "data": [["Male", 44, ...], ...]}}

The answer: {"model_version", "threshold", "predictions": [{"probability", "label"}, ...]}.
"""

from __future__ import annotations

import orjson

RECORDS = "records"
DATAFRAME_SPLIT = "dataframe_split"
FORMATS = (RECORDS, DATAFRAME_SPLIT)


class ClientError(Exception):
    """A request the client must change: answered with `status` and the message (and per-row problems)."""

    def __init__(self, status: int, message: str, problems: list[dict] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems

    def body(self) -> dict:
        body = {"error": self.message}
        if self.problems is not None:
            body["problems"] = self.problems
        return body


def decode_json(body: bytes):
    """orjson takes UTF-8 only (RFC 8259) and refuses NaN/Infinity: both are 400."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ClientError(400, f"malformed JSON: {error}") from None


def records_from_payload(payload, max_rows: int) -> list[dict]:
    """The rows of a decoded request in either format; 413 over `max_rows`, 422 for a wrong shape."""
    if not isinstance(payload, dict):
        raise ClientError(422, f"the body must be a JSON object with {RECORDS!r} or {DATAFRAME_SPLIT!r}")
    if RECORDS in payload:
        records = payload[RECORDS]
        if not isinstance(records, list):
            raise ClientError(422, f"{RECORDS!r} must be a list of objects")
    elif DATAFRAME_SPLIT in payload:
        records = _split_records(payload[DATAFRAME_SPLIT], max_rows)
    else:
        raise ClientError(422, f"the body must have {RECORDS!r} or {DATAFRAME_SPLIT!r}")
    if not records:
        raise ClientError(422, "no rows to predict")
    if len(records) > max_rows:
        raise ClientError(413, f"{len(records)} rows; at most {max_rows} per request")
    not_objects = [{"row": i, "field": None, "message": "expected an object"}
                   for i, record in enumerate(records) if not isinstance(record, dict)]
    if not_objects:
        raise ClientError(422, "invalid input", not_objects)
    return records


def _split_records(split, max_rows: int) -> list[dict]:
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
    return [dict(zip(columns, row, strict=True)) for row in data]


def predictions_body(version: str, threshold: float, probabilities: list[float], labels: list[int]) -> dict:
    return {"model_version": version, "threshold": threshold,
            "predictions": [{"probability": p, "label": y} for p, y in zip(probabilities, labels, strict=True)]}
