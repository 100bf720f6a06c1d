"""Flask app factory: `gunicorn -c serving/gunicorn.conf.py "serving.app:create_app()"`.

Endpoints (serving/routes.py): POST /predict, GET /model, GET /ready, GET /health, GET /metrics, and a
form at /; MLflow's /invocations, /ping, /version and the Open Inference Protocol's /v2/... on the same checks
(serving/protocols.py). Every client error is a 4xx with a reason: malformed JSON, a duplicate key, nesting deeper than
8 levels or both request formats in one body 400, missing/wrong API key 401,
wrong content type 415, too many rows or too large a body 413, rows breaking the schema 422.
This process only serves: it reads signed manifests and ONNX files and never unpickles anything.
"""

from __future__ import annotations

import atexit
import logging
import time
import weakref
from dataclasses import dataclass

import orjson
from flask import Flask, g, jsonify, request
from flask.json.provider import JSONProvider
from werkzeug.exceptions import HTTPException

from cross_sell.settings import s3_client
from cross_sell.storage.registry import ModelRegistry
from cross_sell.storage.signing import ManifestVerifier

from . import metrics
from .champion import ChampionHolder
from .config import ServingConfig
from .logging_config import access_line
from .payload import ClientError
from .predictor import Predictor
from .protocols import bp as protocols_bp
from .routes import bp
from .rows import RowEndpoints
from .sampling import RequestSampler

log = logging.getLogger("serving")

# Every sampler of this process writes what it holds when the process exits (one hook, not one per app).
_SAMPLERS: "weakref.WeakSet[RequestSampler]" = weakref.WeakSet()
atexit.register(lambda: [sampler.flush() for sampler in list(_SAMPLERS)])


class OrjsonProvider(JSONProvider):
    """JSON out through orjson (a 10,000-row answer spent a quarter of its time in the standard library)."""

    def dumps(self, obj, **kwargs) -> str:
        return orjson.dumps(obj).decode()

    def loads(self, s, **kwargs):
        return orjson.loads(s)


@dataclass
class Service:
    """What the routes use: settings, the champion holder and the predictor."""

    config: ServingConfig
    holder: ChampionHolder
    predictor: Predictor


def build_holder(config: ServingConfig) -> ChampionHolder:
    verifier = ManifestVerifier.from_file(config.public_key_path) if config.public_key_path else None
    registry = ModelRegistry(s3_client(), config.s3_bucket, config.s3_prefix, verifier)
    return ChampionHolder(registry, config.poll_seconds, on_reload=metrics.record_reload,
                          onnx_threads=config.onnx_threads, retry_backoff_seconds=config.retry_backoff_seconds)


def build_shadow(config: ServingConfig, registry: ModelRegistry) -> ChampionHolder | None:
    """The challenger named by shadow.json, loaded with the champion's verification; it only ever scores
    sampled rows in the sampler's thread. None when sampling is off (nothing to score)."""
    if config.sample_rate <= 0:
        return None
    return ChampionHolder(registry, config.poll_seconds, onnx_threads=1,
                          retry_backoff_seconds=config.retry_backoff_seconds, pointer_key=registry.shadow_key)


def create_app(config: ServingConfig | None = None, holder: ChampionHolder | None = None,
               start_poller: bool = True, sampler: RequestSampler | None = None) -> Flask:
    config = config or ServingConfig.from_env()
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes  # the form; /predict reads its body itself
    holder = holder or build_holder(config)
    shadow = None
    if sampler is None:
        shadow = build_shadow(config, holder.registry)
        sampler = RequestSampler(holder.registry.s3, config.s3_bucket, config.s3_prefix, config.sample_rate,
                                 flush_seconds=config.sample_flush_seconds, shadow=shadow)
    _SAMPLERS.add(sampler)
    holder.refresh()  # first load; without a champion yet /ready answers 503 until the poller finds one
    if shadow is not None:
        shadow.refresh()
    if start_poller:
        holder.start()
        if shadow is not None:
            shadow.start()
    app.extensions["cross_sell"] = Service(config, holder, Predictor(holder, sampler))
    app.extensions["champion"] = holder
    app.extensions["shadow"] = shadow
    app.extensions["sampler"] = sampler
    app.register_blueprint(bp)
    app.register_blueprint(protocols_bp)  # MLflow's scoring protocol and the Open Inference Protocol V2
    # The endpoints that take rows are plain WSGI in front of Flask: nearly all the traffic, none of Flask's
    # machinery needed (serving/rows.py).
    app.wsgi_app = RowEndpoints(app.wsgi_app, app.extensions["cross_sell"])  # type: ignore[method-assign]
    _install_hooks(app)
    return app


def _install_hooks(app: Flask) -> None:
    @app.before_request
    def start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def observe(response):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.observe_request(endpoint, response.status_code, seconds)
        access_line({"method": request.method, "path": request.path, "status": response.status_code,
                     "duration_ms": round(seconds * 1000, 2), "rows": g.get("rows"),
                     "model_version": g.get("model_version"),
                     "remote_addr": request.headers.get("X-Real-IP", request.remote_addr)})
        return response

    @app.errorhandler(ClientError)
    def client_error(error: ClientError):
        return jsonify(error.body()), error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return jsonify({"error": error.name, "message": error.description}), error.code

    @app.errorhandler(Exception)
    def server_error(error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify({"error": "internal error"}), 500
