"""The protocols other clients already speak, on the same checks as /predict (schema with reasons, limits,
the API key, sampling, metrics): MLflow's scoring server and the Open Inference Protocol V2 (KServe, Triton,
MLServer).

MLflow (`mlflow models serve`'s API; MLflow's own client `ScoringServerClient`, `mlflow models predict`):

    GET /ping                      200 once a champion is loaded (503 before)
    GET /version                   the service's and the served model's versions, as text
    POST /invocations              JSON with one of dataframe_split, dataframe_records, instances, inputs
                                   (and an empty `params`), or CSV (text/csv, a header row)
                                   -> {"predictions": [{"probability", "label"[, "id"]}, ...]}

Open Inference Protocol V2 (REST; `tritonclient.http`, KServe's client), the model named SERVING_MODEL_NAME:

    GET /v2, /v2/health/live, /v2/health/ready
    GET /v2/models/<name>[/versions/<version>][/ready]
    POST /v2/models/<name>[/versions/<version>]/infer
        one input per column (BYTES for categories, INT64 or FP64 for numbers; shape [n] or [n, 1]; JSON
        data or Triton's binary tensor extension), outputs `probability` (FP64) and `label` (INT64), and
        `id` when the request sent the identifier column. Errors as {"error": "..."}.
"""

from __future__ import annotations

import csv
import io
import struct
from importlib import metadata

import numpy as np
import orjson
from flask import Blueprint, current_app

from cross_sell.data import schema

from . import payload
from .payload import ClientError

bp = Blueprint("protocols", __name__)

MLFLOW_FORMATS = (payload.DATAFRAME_SPLIT, payload.DATAFRAME_RECORDS, payload.INSTANCES, payload.INPUTS)
# Open Inference Protocol datatypes each column takes: categories as text, numbers as numbers.
NUMBER_TYPES = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64"}
_NUMPY = {"BOOL": "?", "INT8": "i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "UINT8": "u1",
          "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
BINARY_HEADER = "Inference-Header-Content-Length"


def _service():
    return current_app.extensions["cross_sell"]


def _package_version() -> str:
    try:
        return metadata.version("cross-sell")
    except metadata.PackageNotFoundError:  # run from a checkout without the package installed
        return "unknown"


def _json(body, status: int = 200):
    return current_app.response_class(orjson.dumps(body), status=status, mimetype="application/json")


# -- MLflow's scoring protocol ------------------------------------------------------------------------------

@bp.get("/ping")
def ping():
    loaded = _service().holder.current is not None
    return current_app.response_class("\n", status=200 if loaded else 503, mimetype="text/plain")


@bp.get("/version")
def version():
    model = _service().holder.current
    return current_app.response_class(f"cross-sell {_package_version()}; model "
                                      f"{model.version if model else 'none loaded'}\n", mimetype="text/plain")


def invocation_rows(service, mimetype: str, is_json: bool, body: bytes) -> tuple[payload.RequestRows, bool]:
    """POST /invocations' rows (served by `serving.rows`) and whether their numbers may come as text (CSV)."""
    if mimetype == "text/csv":
        return _csv_rows(body, service.config.max_rows, service.config.id_column), True
    if not is_json:
        raise ClientError(415, f"expected Content-Type application/json or text/csv, got {mimetype or 'none'!r}")
    decoded = payload.decode_json(body)
    if isinstance(decoded, dict):
        if decoded.get("params"):  # MLflow's inference params: this model takes none
            raise ClientError(400, f"this model takes no params, got {sorted(decoded['params'])}")
        if payload.RECORDS in decoded and not any(name in decoded for name in MLFLOW_FORMATS):
            # this project's own name, not MLflow's (two formats in one body are refused below with 400)
            raise ClientError(422, f"use {payload.DATAFRAME_RECORDS!r} (MLflow's name) on /invocations")
    return payload.rows_from_payload(decoded, service.config.max_rows, service.config.id_column), False


def _csv_rows(body: bytes, max_rows: int, passthrough: str | None) -> payload.RequestRows:
    """A CSV body (a header row, then one row per customer; empty cells are missing values) as rows of text,
    checked as the form's are (numbers may be written as text)."""
    try:
        reader = csv.reader(io.StringIO(body.decode("utf-8-sig")))
        header = next(reader, None)
        data = [row for row in reader if row]
    except (UnicodeDecodeError, csv.Error) as error:
        raise ClientError(400, f"malformed CSV: {error}") from None
    if not header:
        raise ClientError(400, "CSV without a header row (the column names)")
    if len(data) > max_rows:
        raise ClientError(413, f"{len(data)} rows; at most {max_rows} per request")
    cells = [[None if cell == "" else cell for cell in row] for row in data]
    return payload.rows_from_payload({payload.DATAFRAME_SPLIT: {"columns": header, "data": cells}}, max_rows,
                                     passthrough)


# -- the Open Inference Protocol V2 -------------------------------------------------------------------------

def _model(service, name: str, version: str | None = None):
    """The served champion under this name (and version, if one is named); 404 otherwise."""
    if name != service.config.model_name:
        raise ClientError(404, f"unknown model {name!r}; this server serves {service.config.model_name!r}")
    model = service.holder.current
    if version is not None and (model is None or version != model.version):
        raise ClientError(404, f"model {name!r} has no version {version!r} loaded"
                               + (f" (it serves {model.version})" if model else ""))
    return model


@bp.get("/v2")
def server_metadata():
    return _json({"name": "cross-sell", "version": _package_version(), "extensions": ["binary_tensor_data"]})


@bp.get("/v2/health/live")
def live():
    return _json({"live": _service().holder.poller_alive()}, 200 if _service().holder.poller_alive() else 503)


@bp.get("/v2/health/ready")
def server_ready():
    loaded = _service().holder.current is not None
    return _json({"ready": loaded}, 200 if loaded else 503)


@bp.get("/v2/models/<name>/ready")
@bp.get("/v2/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None):
    model = _model(_service(), name, version)
    return _json({"name": name, "ready": model is not None}, 200 if model is not None else 503)


def _datatype(column: schema.Column) -> str:
    return "BYTES" if column.kind == "category" else "INT64" if column.kind == "integer" else "FP64"


@bp.get("/v2/models/<name>")
@bp.get("/v2/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None):
    model = _model(_service(), name, version)
    inputs: list[dict] = [{"name": c.name, "datatype": _datatype(c), "shape": [-1]}
                          for c in schema.columns(schema.SERVING)]
    id_column = _service().config.id_column
    if id_column:
        inputs.append({"name": id_column, "datatype": "BYTES", "shape": [-1],
                       "parameters": {"optional": True, "note": "an identifier echoed back as output 'id'"}})
    return _json({"name": name, "versions": [model.version] if model else [], "platform": "onnxruntime",
                  "inputs": inputs,
                  "outputs": [{"name": "probability", "datatype": "FP64", "shape": [-1]},
                              {"name": "label", "datatype": "INT64", "shape": [-1]}]})


def inference(service, name: str, version: str | None, mimetype: str, is_json: bool, binary_header: str | None,
              body: bytes) -> tuple[payload.RequestRows, dict]:
    """POST /v2/models/<name>[/versions/<version>]/infer (served by `serving.rows`): the rows and the answer."""
    _model(service, name, version)
    binary = b""
    if binary_header is not None:  # Triton's binary tensor extension: JSON, then the tensors' bytes
        if not binary_header.isdigit() or int(binary_header) > len(body):
            raise ClientError(400, f"{BINARY_HEADER} must be the JSON part's length, at most the body's")
        body, binary = body[:int(binary_header)], body[int(binary_header):]
    elif mimetype and not is_json:  # tritonclient sends JSON with no Content-Type at all
        raise ClientError(415, f"expected Content-Type: application/json, got {mimetype!r}")
    decoded = payload.decode_json(body)
    if not isinstance(decoded, dict) or not isinstance(decoded.get("inputs"), list) or not decoded["inputs"]:
        raise ClientError(400, "an inference request is an object with a non-empty list 'inputs'")
    columns, types = _oip_columns(decoded["inputs"], binary, service.config.max_rows)
    rows = payload.RequestRows(len(next(iter(columns.values()))), columns=columns,
                               passthrough=service.config.id_column)
    result = service.predictor.predict(rows)
    outputs = {"probability": {"name": "probability", "datatype": "FP64", "shape": [rows.count],
                               "data": result.probabilities},
               "label": {"name": "label", "datatype": "INT64", "shape": [rows.count], "data": result.labels}}
    if result.ids is not None and service.config.id_column:
        outputs["id"] = {"name": "id", "datatype": types[service.config.id_column], "shape": [rows.count],
                         "data": result.ids}
    wanted = [o.get("name") if isinstance(o, dict) else None for o in decoded.get("outputs") or []]
    unknown = [n for n in wanted if not isinstance(n, str) or n not in outputs]
    if unknown:
        raise ClientError(400, f"unknown output(s) {unknown}; this model has {sorted(outputs)}")
    answer: dict = {"model_name": name, "model_version": result.model.version,
                    "outputs": [outputs[str(n)] for n in wanted] if wanted else list(outputs.values())}
    if isinstance(decoded.get("id"), str):
        answer["id"] = decoded["id"]
    return rows, answer


def _oip_columns(inputs: list, binary: bytes, max_rows: int) -> tuple[dict[str, list], dict[str, str]]:
    """Each input tensor as a column of values, by name, checked against the protocol (one name each, a
    known datatype, a 1-D shape or [n, 1] matching the data, all of one length); its datatype by name."""
    columns: dict[str, list] = {}
    types: dict[str, str] = {}
    offset = 0
    by_name = {c.name: c for c in schema.columns(schema.SERVING)}
    for number, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise ClientError(400, f"input {number} must be an object with a 'name'")
        name, datatype, shape = tensor["name"], tensor.get("datatype"), tensor.get("shape")
        if name in columns:
            raise ClientError(400, f"input {name!r} given twice")
        if not isinstance(datatype, str) or datatype != "BYTES" and datatype not in NUMBER_TYPES:
            raise ClientError(400, f"input {name!r}: datatype {datatype!r} is not one this model takes (BYTES for "
                                   "categories, INT64 or FP64 for numbers)")
        column = by_name.get(name)
        if column is not None and (column.kind == "category") != (datatype == "BYTES"):
            raise ClientError(400, f"input {name!r}: datatype {datatype} for a "
                                   f"{'category' if column.kind == 'category' else 'number'}; send "
                                   f"{_datatype(column)}")
        if not (isinstance(shape, list) and shape and all(type(d) is int and d >= 0 for d in shape)
                and (len(shape) == 1 or shape[1:] == [1])):
            raise ClientError(400, f"input {name!r}: shape must be [n] or [n, 1], got {shape!r}")
        rows = shape[0]
        if rows > max_rows:
            raise ClientError(413, f"{rows} rows; at most {max_rows} per request")
        size = (tensor.get("parameters") or {}).get("binary_data_size") if isinstance(
            tensor.get("parameters"), dict) else None
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise ClientError(400, f"input {name!r}: binary_data_size {size!r} runs past the body")
            values = _from_binary(binary[offset:offset + size], datatype, rows, name)
            offset += size
        else:
            data = tensor.get("data")
            values = data if isinstance(data, list) else []
            if isinstance(data, list) and len(shape) == 2 and all(type(v) is list and len(v) == 1 for v in values):
                values = [v[0] for v in values]  # [[a], [b]] for shape [n, 1]
            if not isinstance(data, list) or len(values) != rows:
                raise ClientError(400, f"input {name!r}: 'data' must hold {rows} values (its shape), "
                                       f"got {len(values) if isinstance(data, list) else type(data).__name__}")
        columns[name], types[name] = values, datatype
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1:
        raise ClientError(400, f"inputs of different lengths {sorted(lengths)}; every column needs one value per row")
    if offset != len(binary):
        raise ClientError(400, f"{len(binary) - offset} bytes of binary data no input claims")
    return columns, types


def _from_binary(raw: bytes, datatype: str, rows: int, name: str) -> list:
    """A tensor of Triton's binary extension as values: fixed-size numbers little-endian, BYTES as a
    4-byte little-endian length and the bytes, per element."""
    if datatype == "BYTES":
        values, offset = [], 0
        for _ in range(rows):
            if offset + 4 > len(raw):
                raise ClientError(400, f"input {name!r}: binary BYTES data ends early")
            (length,) = struct.unpack_from("<I", raw, offset)
            text = raw[offset + 4:offset + 4 + length]
            if len(text) != length:
                raise ClientError(400, f"input {name!r}: binary BYTES data ends early")
            try:
                values.append(text.decode("utf-8"))
            except UnicodeDecodeError:
                raise ClientError(400, f"input {name!r}: BYTES that are not UTF-8 text") from None
            offset += 4 + length
        if offset != len(raw):
            raise ClientError(400, f"input {name!r}: {len(raw) - offset} bytes past its {rows} elements")
        return values
    dtype = np.dtype(_NUMPY[datatype])
    if len(raw) != rows * dtype.itemsize:
        raise ClientError(400, f"input {name!r}: {len(raw)} bytes of {datatype}, expected {rows * dtype.itemsize}")
    array = np.frombuffer(raw, dtype=dtype)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ClientError(400, f"input {name!r}: NaN or infinity in {datatype} data")
    return array.tolist()
