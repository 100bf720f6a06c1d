"""gunicorn settings for the prediction service; every value can be overridden from the environment.

    gunicorn -c serving/gunicorn.conf.py "serving.app:create_app()"
"""

import gc
import os
import shutil
import tempfile

from gunicorn.glogging import Logger

from serving.logging_config import LOGCONFIG

# Comma-separated: behind the nginx front the service also binds a unix socket that nginx proxies to
# (gunicorn's deployment docs do the same; no slower than loopback TCP, benchmarks/README.md "Figures
# behind the defaults"), and keeps TCP for health checks and Prometheus.
bind = [address.strip() for address in os.environ.get("SERVING_BIND", "127.0.0.1:8000").split(",")]
workers = int(os.environ.get("SERVING_WORKERS", "2"))
# One request at a time per worker process (gunicorn's sync worker): with the model in ONNX Runtime a
# one-row request is under a millisecond of Python, and threads only add hand-offs and GIL contention
# (sync had the lower p99 and the higher rate: benchmarks/README.md). A sync worker is held by a slow
# client for as long as it trickles, so it always runs behind the buffering nginx front
# (docker/nginx/serving.conf.template), as gunicorn advises. SERVING_THREADS > 1 switches to gthread
# (keep-alive without a front).
threads = int(os.environ.get("SERVING_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
timeout = int(os.environ.get("SERVING_TIMEOUT", "30"))
graceful_timeout = 20
# With gthread, 0 closes each connection after its response: kept-alive connections pin their clients
# to the worker that accepted them, and a lopsided split of connections cut the rate by two thirds
# (benchmarks/README.md). The sync worker never keeps alive.
keepalive = int(os.environ.get("SERVING_KEEPALIVE", "0"))
preload_app = False  # each worker builds its own app, loads the champion and starts its own poller
logconfig_dict = LOGCONFIG


class AppWritesTheAccessLine(Logger):
    """The app logs each request itself (with its rows and model version, serving/app.py). With a logging
    config gunicorn would still build its own access line's atoms for every request (headers, environ)
    only for its WARNING level to drop it: 3 % of a worker's one-row request time, measured with py-spy."""

    def _compute_access_log_enabled(self):  # gunicorn's own switch, read by `access()`
        return False


logger_class = AppWritesTheAccessLine
os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per worker process; workers are the parallelism

# Metrics from all workers are aggregated through files in this directory.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="serving-metrics-")


def on_starting(server):
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def when_ready(server):
    # nginx runs as another user: it may connect to the socket, which lives in a directory (a volume in
    # compose) that only the service and the front share.
    for address in bind:
        if address.startswith("unix:"):
            os.chmod(address.removeprefix("unix:"), 0o666)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    # The worker has imported its libraries and loaded the champion: ~180,000 long-lived objects that
    # every full garbage collection would walk again (tens of milliseconds per pass, hit every few hundred
    # requests and by every large one). Frozen, they are skipped; requests' objects are not.
    # A champion replaced later is still freed: by reference counting (the model and its ONNX session
    # hold no reference cycles; checked with gc.collect() after a swap).
    # No request builds a DataFrame (the column-wise engine, `cross_sell.data.casting`): pandas is never imported.
    gc.freeze()
