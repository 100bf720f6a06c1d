"""Prometheus metrics. Under gunicorn, PROMETHEUS_MULTIPROC_DIR makes every worker's numbers add up.

The Grafana dashboard (docker/grafana/dashboards/) queries these; tests/test_dashboards.py checks that
every metric it names is exported.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REQUESTS = Counter("serving_requests_total", "HTTP requests", ["endpoint", "status"])
LATENCY = Histogram("serving_request_seconds", "Request latency", ["endpoint"],
                    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5))
PREDICTED_ROWS = Counter("serving_predicted_rows_total", "Rows predicted")
PREDICTIONS = Counter("serving_predictions_total", "Rows predicted, by model version and predicted label",
                      ["model_version", "label"])
PROBABILITY = Histogram("serving_predicted_probability", "Predicted probability of buying, per model version",
                        ["model_version"], buckets=tuple(round(0.05 * i, 2) for i in range(1, 21)))
RELOADS = Counter("serving_model_reloads_total", "Champion reload attempts that changed or kept the model",
                  ["result"])
MODEL_VERSION = Gauge("serving_model_version_info", "1 for the model version a worker serves", ["version"],
                      multiprocess_mode="liveall")
_BOUNDS = np.asarray(PROBABILITY._upper_bounds)


@functools.cache
def _request_series(endpoint: str, status: int):
    """The children of one endpoint and status (few of each): `labels()` takes a lock and builds keys."""
    return REQUESTS.labels(endpoint, str(status)), LATENCY.labels(endpoint)


@functools.cache
def _prediction_series(version: str):
    return PREDICTIONS.labels(version, "1"), PREDICTIONS.labels(version, "0"), PROBABILITY.labels(version)


def observe_request(endpoint: str, status: int, seconds: float) -> None:
    requests, latency = _request_series(endpoint, status)
    requests.inc()
    latency.observe(seconds)


def observe_predictions(version: str, probabilities: list[float], labels: list[int]) -> None:
    """The distribution and positive rate the dashboard shows, in a few increments per request."""
    PREDICTED_ROWS.inc(len(probabilities))
    positive, negative, histogram = _prediction_series(version)
    positives = int(sum(labels))
    if positives:
        positive.inc(positives)
    if len(labels) - positives:
        negative.inc(len(labels) - positives)
    if len(probabilities) == 1:
        histogram.observe(probabilities[0])
        return
    # A 10,000-row request: one increment per bucket, not per row (observe() does the same per value:
    # add to the sum, then to the first bucket whose bound holds the value).
    counts = np.bincount(np.searchsorted(_BOUNDS, probabilities, side="left"), minlength=len(_BOUNDS))
    histogram._sum.inc(float(np.sum(probabilities)))
    for bucket, count in zip(histogram._buckets, counts[:len(_BOUNDS)], strict=True):
        if count:
            bucket.inc(int(count))


def record_reload(result: str, model) -> None:
    RELOADS.labels(result).inc()
    if result == "success":
        for sample in next(iter(MODEL_VERSION.collect())).samples:
            if sample.labels.get("version") != model.version:
                MODEL_VERSION.labels(sample.labels["version"]).set(0)
        MODEL_VERSION.labels(model.version).set(1)


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
