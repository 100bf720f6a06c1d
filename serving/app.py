"""Flask app factory: `gunicorn -c serving/gunicorn.conf.py "serving.app:create_app()"`.

Endpoints: POST /predict, GET /model, GET /ready, GET /health, GET /metrics, and a form at /.
Every client error is a 4xx with a reason: malformed JSON 400, missing/wrong API key 401, wrong
content type 415, too many rows or too large a body 413, rows breaking the schema 422.
"""

from __future__ import annotations

import atexit
import hmac
import logging
import time

import orjson
from flask import Flask, g, jsonify, render_template, request
from flask.json.provider import JSONProvider
from werkzeug.exceptions import HTTPException

from cross_sell import features, schema
from cross_sell.registry import ModelRegistry
from cross_sell.settings import s3_client

from . import metrics
from .batching import MicroBatcher
from .champion import ChampionHolder
from .config import ServingConfig
from .sampling import RequestSampler

log = logging.getLogger("serving")
access_log = logging.getLogger("serving.access")


class ClientError(Exception):
    def __init__(self, status: int, message: str, problems: list[dict] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems


def records_from_payload(payload, max_rows: int) -> list[dict]:
    """`{"records": [...]}` or MLflow-style `{"dataframe_split": {"columns": [...], "data": [[...]]}}`."""
    if not isinstance(payload, dict):
        raise ClientError(422, "the body must be a JSON object with 'records' or 'dataframe_split'")
    if "records" in payload:
        records = payload["records"]
        if not isinstance(records, list):
            raise ClientError(422, "'records' must be a list of objects")
    elif "dataframe_split" in payload:
        split = payload["dataframe_split"]
        if not isinstance(split, dict) or not isinstance(split.get("columns"), list) \
                or not isinstance(split.get("data"), list):
            raise ClientError(422, "'dataframe_split' must be an object with lists 'columns' and 'data'")
        columns = split["columns"]
        if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
            raise ClientError(422, "'dataframe_split.columns' must be distinct strings")
        records = split["data"]
        if len(records) > max_rows:
            raise ClientError(413, f"{len(records)} rows; at most {max_rows} per request")
        problems = [{"row": i, "field": None, "message": f"expected a list of {len(columns)} values"}
                    for i, row in enumerate(records) if not isinstance(row, list) or len(row) != len(columns)]
        if problems:
            raise ClientError(422, "invalid input", problems)
        records = [dict(zip(columns, row, strict=True)) for row in records]
    else:
        raise ClientError(422, "the body must have 'records' or 'dataframe_split'")
    if not records:
        raise ClientError(422, "no rows to predict")
    if len(records) > max_rows:
        raise ClientError(413, f"{len(records)} rows; at most {max_rows} per request")
    not_objects = [{"row": i, "field": None, "message": "expected an object"}
                   for i, record in enumerate(records) if not isinstance(record, dict)]
    if not_objects:
        raise ClientError(422, "invalid input", not_objects)
    return records


class OrjsonProvider(JSONProvider):
    """JSON in and out through orjson: a 10,000-row request spent a quarter of its time in the standard
    library's json. orjson takes UTF-8 only (RFC 8259) and refuses NaN/Infinity, both answered 400."""

    def dumps(self, obj, **kwargs) -> str:
        return orjson.dumps(obj).decode()

    def loads(self, s, **kwargs):
        return orjson.loads(s)


def _problems(problems: list[schema.Problem]) -> list[dict]:
    return [{"row": p.row, "field": p.column, "message": p.reason} for p in problems]


def create_app(config: ServingConfig | None = None, holder: ChampionHolder | None = None,
               start_poller: bool = True, sampler: RequestSampler | None = None) -> Flask:
    config = config or ServingConfig.from_env()
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    if holder is None:
        registry = ModelRegistry(s3_client(), config.s3_bucket, config.s3_prefix)
        holder = ChampionHolder(registry, config.poll_seconds, on_reload=metrics.record_reload,
                                onnx_threads=config.onnx_threads if config.engine == "onnx" else None)
    if sampler is None:
        sampler = RequestSampler(holder.registry.s3, config.s3_bucket, config.s3_prefix, config.sample_rate,
                                 flush_seconds=config.sample_flush_seconds)
    atexit.register(sampler.flush)  # a worker stopping writes what it sampled
    app.extensions["sampler"] = sampler
    holder.refresh()  # first load; without a champion yet /ready answers 503 until the poller finds one
    if start_poller:
        holder.start()
    app.extensions["champion"] = holder
    batcher = MicroBatcher()

    def check_api_key(given: str | None) -> None:
        if config.api_key and not hmac.compare_digest((given or "").encode(), config.api_key.encode()):
            raise ClientError(401, "missing or wrong API key (header X-API-Key)")

    def predict_records(records: list[dict], allow_text: bool = False):
        model = holder.current  # this request uses this model to the end, whatever a swap does
        if model is None:
            raise ClientError(503, "no champion model is loaded yet")
        small = len(records) <= schema.SMALL_BATCH  # plain Python beats pandas' fixed cost on a few rows
        if small:
            rows, problems = schema.cast_records(records, schema.SERVING, allow_text=allow_text)
        else:
            typed, problems = schema.validate_records(records, schema.SERVING, allow_text=allow_text)
        if problems:
            raise ClientError(422, "invalid input", _problems(problems))
        picks = sampler.choose(len(records))
        if small:
            matrix, sampled = features.model_input_rows(rows), [rows[i] for i in picks]
        else:
            matrix, sampled = features.model_input(typed), typed.iloc[picks].to_dict("records") if picks else []
        sampler.add(sampled, model.version)
        probabilities, labels = batcher.predict(model, matrix)
        g.rows, g.model_version = len(records), model.version
        metrics.PREDICTED_ROWS.inc(len(records))
        return model, probabilities, labels

    @app.before_request
    def start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def observe(response):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.observe_request(endpoint, response.status_code, seconds)
        access_log.info("request", extra={
            "method": request.method, "path": request.path, "status": response.status_code,
            "duration_ms": round(seconds * 1000, 2), "rows": g.get("rows"), "model_version": g.get("model_version"),
            "remote_addr": request.remote_addr,
        })
        return response

    @app.errorhandler(ClientError)
    def client_error(error: ClientError):
        body = {"error": error.message}
        if error.problems is not None:
            body["problems"] = error.problems
        return jsonify(body), error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return jsonify({"error": error.name, "message": error.description}), error.code

    @app.errorhandler(Exception)
    def server_error(error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify({"error": "internal error"}), 500

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/ready")
    def ready():
        model = holder.current
        if model is None:
            return {"ready": False, "reason": holder.status.last_error or "no champion loaded yet"}, 503
        return {"ready": True, "model_version": model.version}

    @app.get("/model")
    def model_info():
        model = holder.current
        status = holder.status
        body = {"loaded": model is not None, "last_check_at": status.last_check_at,
                "last_reload_error": status.last_error, "last_reload_error_at": status.last_error_at,
                "reloads": status.reloads, "poll_seconds": holder.poll_seconds}
        if model is not None:
            manifest = model.manifest
            body.update({"version": model.version, "threshold": model.threshold, "loaded_at": model.loaded_at,
                         "engine": model.engine, "engine_note": model.onnx_note,
                         "load_seconds": round(model.load_seconds, 3), "metrics": manifest.get("metrics"),
                         "trained_at": manifest.get("trained_at"),
                         "data_fingerprint": manifest.get("data_fingerprint"), "rows": manifest.get("rows"),
                         "run_id": manifest.get("run_id"), "code_version": manifest.get("code_version")})
        return body, 200 if model is not None else 503

    @app.post("/predict")
    def predict():
        check_api_key(request.headers.get("X-API-Key"))
        if not request.is_json:
            raise ClientError(415, f"expected Content-Type: application/json, got {request.mimetype or 'none'!r}")
        try:
            payload = app.json.loads(request.get_data(cache=False))
        except ValueError as error:  # orjson.JSONDecodeError, for bad UTF-8 and too deep nesting too
            raise ClientError(400, f"malformed JSON: {error}") from None
        records = records_from_payload(payload, config.max_rows)
        model, probabilities, labels = predict_records(records)
        return jsonify({
            "model_version": model.version,
            "threshold": model.threshold,
            "predictions": [{"probability": p, "label": y} for p, y in zip(probabilities, labels, strict=True)],
        })

    @app.route("/", methods=["GET", "POST"])
    def form():
        values = {k: str(v) for k, v in schema.example_record().items()}
        errors, result, status = {}, None, 200
        if request.method == "POST":
            values = {name: request.form.get(name, "").strip() for name in schema.FEATURES}
            record = {name: (value if value != "" else None) for name, value in values.items()}
            try:
                check_api_key(request.form.get("api_key"))
                model, probabilities, labels = predict_records([record], allow_text=True)
                result = {"probability": probabilities[0], "label": labels[0], "version": model.version,
                          "threshold": model.threshold}
            except ClientError as error:
                status = error.status
                errors = {p["field"]: p["message"] for p in error.problems or []}
                errors.setdefault(None, None if error.problems else error.message)
        return render_template("index.html", columns=schema.columns(schema.SERVING), values=values, errors=errors,
                               result=result, needs_key=bool(config.api_key)), status

    @app.get("/metrics")
    def prometheus():
        body, content_type = metrics.exposition()
        return body, 200, {"Content-Type": content_type}

    return app
