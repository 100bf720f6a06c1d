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
