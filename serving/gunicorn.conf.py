"""gunicorn settings for the prediction service; every value can be overridden from the environment.

    gunicorn -c serving/gunicorn.conf.py "serving.app:create_app()"
"""

import os
import shutil
import tempfile

from serving.logging_config import LOGCONFIG

bind = os.environ.get("SERVING_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("SERVING_WORKERS", "2"))
# Threads let concurrent requests reach one worker at once, so its micro-batcher can answer them with
# a single model call (serving/batching.py); the model itself runs one call at a time per worker.
worker_class = "gthread"
threads = int(os.environ.get("SERVING_THREADS", "4"))
timeout = int(os.environ.get("SERVING_TIMEOUT", "30"))
graceful_timeout = 20
# Kept-alive connections spare a TCP handshake and a gunicorn accept per request: at 8 clients this
# took the service from 965 to 1,303 req/s and p99 from 20.5 to 16.7 ms (benchmarks/bench_serving.py).
# A connection stays on the worker that accepted it; the workers share the listening socket, so new
# connections spread over them.
keepalive = int(os.environ.get("SERVING_KEEPALIVE", "5"))
preload_app = False  # each worker builds its own app, loads the champion and starts its own poller
logconfig_dict = LOGCONFIG
os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per worker process; workers are the parallelism

# Metrics from all workers are aggregated through files in this directory.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="serving-metrics-")


def on_starting(server):
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
