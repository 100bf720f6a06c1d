"""Prometheus metrics. Under gunicorn, PROMETHEUS_MULTIPROC_DIR makes every worker's numbers add up."""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REQUESTS = Counter("serving_requests_total", "HTTP requests", ["endpoint", "status"])
LATENCY = Histogram("serving_request_seconds", "Request latency", ["endpoint"],
                    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5))
PREDICTED_ROWS = Counter("serving_predicted_rows_total", "Rows predicted")
RELOADS = Counter("serving_model_reloads_total", "Champion reload attempts that changed or kept the model",
                  ["result"])
MODEL_VERSION = Gauge("serving_model_version_info", "1 for the model version a worker serves", ["version"],
                      multiprocess_mode="liveall")


def observe_request(endpoint: str, status: int, seconds: float) -> None:
    REQUESTS.labels(endpoint, str(status)).inc()
    LATENCY.labels(endpoint).observe(seconds)


def record_reload(result: str, model) -> None:
    RELOADS.labels(result).inc()
    if result == "success":
        for sample in MODEL_VERSION.collect()[0].samples:
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
