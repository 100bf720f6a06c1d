"""The endpoints that take rows, served as plain WSGI in front of Flask: POST /predict, MLflow's POST
/invocations and the Open Inference Protocol's POST /v2/models/<name>[/versions/<version>]/infer.

They are nearly all of a service's traffic and need none of Flask's machinery (routing tables, request and
application contexts, the request hooks, the error handlers). `RowEndpoints` wraps the Flask app's WSGI
callable (`app.wsgi_app`, as WSGI middleware does) and answers these three itself, with every check the
Flask routes had: the API key, the content type, the body limits (chunked too), the JSON structure check,
the schema's validation with reasons, the sampler and the metrics, and one access line per request; any other
request goes to Flask. A client error is a 4xx with a reason (`ClientError`); anything else a logged 500.
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
import time
from dataclasses import dataclass
from http import HTTPStatus

import orjson

from . import metrics, payload, protocols
from .logging_config import access_line
from .payload import ClientError

log = logging.getLogger("serving")

INFER = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$")
JSON = "application/json"


@dataclass
class Request:
    """What a row endpoint reads of a request: its headers, its content type and its body."""

    wsgi_env: dict

    @property
    def mimetype(self) -> str:
        return self.wsgi_env.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()

    @property
    def is_json(self) -> bool:  # as Flask's `request.is_json`
        mimetype = self.mimetype
        return mimetype == JSON or (mimetype.startswith("application/") and mimetype.endswith("+json"))

    def header(self, name: str) -> str | None:
        return self.wsgi_env.get("HTTP_" + name.upper().replace("-", "_"))

    def body(self, max_bytes: int) -> bytes:
        """The request body; 413 when it is larger than `max_bytes`, with or without Content-Length. A
        chunked body has no length up front: one byte past the limit is read from the server's stream
        (gunicorn ends it at the last chunk) rather than let a truncated body pass as JSON."""
        stream = self.wsgi_env["wsgi.input"]
        length = self.wsgi_env.get("CONTENT_LENGTH")
        if length:
            if not length.isdigit():
                raise ClientError(400, f"Content-Length {length!r} is not a number")
            if int(length) > max_bytes:
                raise ClientError(413, f"body of {length} bytes; at most {max_bytes}")
            return stream.read(int(length))
        if not self.wsgi_env.get("wsgi.input_terminated"):
            return b""  # neither a length nor a terminated stream: there is no body to read safely
        body = stream.read(max_bytes + 1)
        if len(body) > max_bytes:
            raise ClientError(413, f"chunked body over {max_bytes} bytes")
        return body


def check_api_key(key: str | None, given: str | None) -> None:
    if key and not hmac.compare_digest((given or "").encode(), key.encode()):
        raise ClientError(401, "missing or wrong API key (header X-API-Key)")


@dataclass
class Answer:
    body: bytes
    status: int = 200
    content_type: str = JSON
    rows: int | None = None
    model_version: str | None = None


def predict(service, request: Request) -> Answer:
    check_api_key(service.config.api_key, request.header("X-API-Key"))
    if not request.is_json:
        raise ClientError(415, f"expected Content-Type: application/json, got {request.mimetype or 'none'!r}")
    rows = payload.rows_from_payload(payload.decode_json(request.body(service.config.max_body_bytes)),
                                     service.config.max_rows, service.config.id_column)
    result = service.predictor.predict(rows)
    body = payload.predictions_body(result.model.version, result.model.threshold, result.probabilities,
                                    result.labels, result.ids)
    return Answer(orjson.dumps(body), rows=rows.count, model_version=result.model.version)


def invocations(service, request: Request) -> Answer:
    check_api_key(service.config.api_key, request.header("X-API-Key"))
    rows, allow_text = protocols.invocation_rows(service, request.mimetype, request.is_json,
                                                 request.body(service.config.max_body_bytes))
    result = service.predictor.predict(rows, allow_text=allow_text)
    body = {"predictions": payload.predictions(result.probabilities, result.labels, result.ids)}
    return Answer(orjson.dumps(body), rows=rows.count, model_version=result.model.version)


def infer(service, request: Request, name: str, version: str | None) -> Answer:
    check_api_key(service.config.api_key, request.header("X-API-Key"))
    rows, answer = protocols.inference(service, name, version, request.mimetype, request.is_json,
                                       request.header(protocols.BINARY_HEADER),
                                       request.body(service.config.max_body_bytes))
    return Answer(orjson.dumps(answer), rows=rows.count, model_version=answer["model_version"])


@functools.cache
def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


class RowEndpoints:
    """WSGI middleware: the row endpoints answered here, everything else by `app` (Flask)."""

    def __init__(self, app, service):
        self.app = app
        self.service = service

    def _route(self, method: str, path: str):
        """(metrics' endpoint label, handler) of a row endpoint, or None for Flask's."""
        if method != "POST":
            return None
        if path == "/predict":
            return "/predict", predict
        if path == "/invocations":
            return "/invocations", invocations
        found = INFER.match(path) if path.startswith("/v2/") else None
        if found is None:
            return None
        label = "/v2/models/<name>/versions/<version>/infer" if found["version"] else "/v2/models/<name>/infer"
        return label, lambda service, request: infer(service, request, found["name"], found["version"])

    def __call__(self, wsgi_env, start_response):
        path = wsgi_env.get("PATH_INFO", "")
        route = self._route(wsgi_env.get("REQUEST_METHOD", ""), path)
        if route is None:
            return self.app(wsgi_env, start_response)
        started = time.perf_counter()
        endpoint, handler = route
        try:
            answer = handler(self.service, Request(wsgi_env))
        except ClientError as error:
            answer = Answer(orjson.dumps(error.body()), error.status)
        except Exception:
            log.exception("unhandled error on POST %s", path)
            answer = Answer(b'{"error":"internal error"}', 500)
        status = answer.status
        start_response(_status_line(status),
                       [("Content-Type", answer.content_type), ("Content-Length", str(len(answer.body)))])
        seconds = time.perf_counter() - started
        metrics.observe_request(endpoint, status, seconds)
        access_line({"method": "POST", "path": path, "status": status, "duration_ms": round(seconds * 1000, 2),
                     "rows": answer.rows, "model_version": answer.model_version,
                     "remote_addr": wsgi_env.get("HTTP_X_REAL_IP") or wsgi_env.get("REMOTE_ADDR")})
        return [answer.body]
