"""The rungs below the service for bench_serving.py's CPU profile of a one-row request: the same gunicorn
config and nginx front with less and less of the service behind them.

    bare: a WSGI callable that reads the body and answers a fixed prediction (gunicorn's own cost)
    flask: a Flask app with the same route, no hooks, fixed answer (Flask's dispatch on top)
"""

from __future__ import annotations

from flask import Flask, request

ANSWER = b'{"model_version":"bench","threshold":0.3,"predictions":[{"probability":0.1,"label":0}]}'


def bare(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))])
    return [ANSWER]


flask = Flask(__name__)


@flask.post("/predict")
def predict():
    request.environ["wsgi.input"].read(request.content_length or 0)
    return flask.response_class(ANSWER, mimetype="application/json")


@flask.get("/ready")
def ready():
    return {"ready": True}


# The floor of a prediction request (issue #34): decode the JSON, build the model's float32 matrix with plain
# lookups (no check of any value), run ONNX Runtime on the service's own session settings, answer. What no
# service can do without; the service's CPU per request is compared with it (bench_serving.py --floors).
_FLOOR = {}


def _floor_model():
    if not _FLOOR:
        import os

        from cross_sell.data import schema
        from cross_sell.model import model_input
        from cross_sell.model.onnx_model import OnnxModel

        with open(os.environ["FLOOR_ONNX"], "rb") as handle:
            _FLOOR["model"] = OnnxModel(handle.read(), float(os.environ["FLOOR_THRESHOLD"]), threads=2)
        _FLOOR["features"] = [(name, model_input.CODES.get(name)) for name in schema.FEATURES]
    return _FLOOR["model"], _FLOOR["features"]


def floor(environ, start_response):
    import numpy as np
    import orjson

    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    if environ.get("PATH_INFO") != "/predict":
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
        return [b"{}"]
    model, features = _floor_model()
    records = orjson.loads(body)["records"]
    matrix = np.array([[codes[r[name]] if codes else r[name] for name, codes in features] for r in records],
                      dtype=np.float32)
    probability = model.probability(matrix)
    labels = model.labels(probability)
    answer = orjson.dumps({"predictions": [{"probability": p, "label": y}
                                           for p, y in zip(probability.tolist(), labels.tolist(), strict=True)]})
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))])
    return [answer]
