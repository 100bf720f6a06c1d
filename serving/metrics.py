"""Prometheus metrics. Under gunicorn, PROMETHEUS_MULTIPROC_DIR makes every worker's numbers add up.

The Grafana dashboard (docker/grafana/dashboards/) queries these; tests/test_dashboards.py checks that
every metric it names is exported.

A request's counts are summed in the worker and added to the shared files every `FLUSH_SECONDS` (and
before this worker answers /metrics, and when it exits): seven writes to the shared files, each under a
lock, were a sixth of a one-row request's CPU (benchmarks/README.md). A scrape may so miss the last half
second of another worker's requests; it gets them at the next scrape.
"""

from __future__ import annotations

import atexit
import bisect
import functools
import os
import threading
import time

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
_LATENCY_BOUNDS = list(LATENCY._upper_bounds)
FLUSH_SECONDS = 0.5


class _Pending:
    """Amounts to add to metric values (a counter's, a histogram's sum or bucket), summed per value until
    `flush` adds them: by a daemon thread every FLUSH_SECONDS, before /metrics, at exit."""

    def __init__(self):
        self._lock = threading.Lock()
        self._amounts: dict = {}
        self._flushing = False  # whether this process runs the flushing thread
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:  # a gunicorn worker: its own amounts, lock and thread
        self._lock, self._amounts, self._flushing = threading.Lock(), {}, False

    def add(self, *pairs) -> None:
        """(value, amount) pairs, e.g. `(counter_child._value, 1.0)`."""
        with self._lock:
            amounts = self._amounts
            for value, amount in pairs:
                if amount:
                    amounts[value] = amounts.get(value, 0.0) + amount
            if self._flushing:
                return
            self._flushing = True
        threading.Thread(target=self._run, name="metrics-flush", daemon=True).start()

    def flush(self) -> None:
        with self._lock:
            amounts, self._amounts = self._amounts, {}
        for value, amount in amounts.items():
            value.inc(amount)

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()


_PENDING = _Pending()
atexit.register(_PENDING.flush)


@functools.cache
def _request_series(endpoint: str, status: int):
    """The children of one endpoint and status (few of each): `labels()` takes a lock and builds keys."""
    return REQUESTS.labels(endpoint, str(status)), LATENCY.labels(endpoint)


@functools.cache
def _prediction_series(version: str):
    return PREDICTIONS.labels(version, "1"), PREDICTIONS.labels(version, "0"), PROBABILITY.labels(version)


def observe_request(endpoint: str, status: int, seconds: float) -> None:
    requests, latency = _request_series(endpoint, status)
    # What `requests.inc()` and `latency.observe(seconds)` write: the count, the latency's sum and the
    # first bucket whose bound holds it (the shared files keep buckets uncumulated).
    bucket = latency._buckets[bisect.bisect_left(_LATENCY_BOUNDS, seconds)]
    _PENDING.add((requests._value, 1.0), (latency._sum, seconds), (bucket, 1.0))


def observe_predictions(version: str, probabilities: list[float], labels: list[int]) -> None:
    """The distribution and positive rate the dashboard shows, in a few increments per request."""
    positive, negative, histogram = _prediction_series(version)
    positives = int(sum(labels))
    pairs = [(PREDICTED_ROWS._value, float(len(probabilities))), (positive._value, float(positives)),
             (negative._value, float(len(labels) - positives))]
    if len(probabilities) == 1:
        bucket = histogram._buckets[bisect.bisect_left(PROBABILITY._upper_bounds, probabilities[0])]
        _PENDING.add(*pairs, (histogram._sum, probabilities[0]), (bucket, 1.0))
        return
    # A 10,000-row request: one increment per bucket, not per row (observe() does the same per value:
    # add to the sum, then to the first bucket whose bound holds the value).
    counts = np.bincount(np.searchsorted(_BOUNDS, probabilities, side="left"), minlength=len(_BOUNDS))
    pairs.append((histogram._sum, float(np.sum(probabilities))))
    pairs += [(bucket, float(count)) for bucket, count in zip(histogram._buckets, counts[:len(_BOUNDS)], strict=True)
              if count]
    _PENDING.add(*pairs)


def record_reload(result: str, model) -> None:
    RELOADS.labels(result).inc()
    if result == "success":
        for sample in next(iter(MODEL_VERSION.collect())).samples:
            if sample.labels.get("version") != model.version:
                MODEL_VERSION.labels(sample.labels["version"]).set(0)
        MODEL_VERSION.labels(model.version).set(1)


def exposition() -> tuple[bytes, str]:
    _PENDING.flush()  # this worker's counts are current; another's are at most FLUSH_SECONDS late
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
