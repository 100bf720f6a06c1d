"""Local stand-ins for MongoDB and S3, started as child processes on free loopback ports.

Used by the demo, the tests and the benchmarks; each server is stopped by its own pid.
`nx-27017` speaks the MongoDB wire protocol over SQLite; moto speaks S3 (see `serve_s3`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository
# Every wait for a server scales with this: a slow or loaded machine must give slow starts, not errors
# (the test suite sets 3 under CI=true).
TIMEOUT_FACTOR = float(os.environ.get("CROSS_SELL_TIMEOUT_FACTOR", "1"))


def scaled(seconds: float) -> float:
    return seconds * TIMEOUT_FACTOR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_taken(port: int) -> bool:
    """Whether a server could not listen on `port` now (something listens on it, on any address)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no obstacle
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def _tail(path: str | os.PathLike, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_until(ready, process: subprocess.Popen, name: str, what: str, timeout: float, poll: float) -> bool:
    """Poll `ready()` (an OSError counts as not yet) until it holds, the process exits (an error) or the
    scaled timeout passes (False: the caller cleans up and says what did not happen)."""
    deadline = time.monotonic() + scaled(timeout)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode} before {what}")
        try:
            if ready():
                return True
        except OSError:
            pass
        time.sleep(poll)
    return False


def _wait_for_port(port: int, process: subprocess.Popen, name: str, timeout: float = 30.0,
                   logs: tuple[str | os.PathLike, ...] = ()) -> None:
    """Until something accepts connections on `port`; if the process exits first (or never listens), the
    error carries the end of each of its `logs` (the server's own reason)."""
    def listening() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True

    def reason() -> str:
        told = [f"--- {path}\n{text}" for path in logs if (text := _tail(path))]
        return (":\n" + "\n".join(told)) if told else ""

    try:
        if _wait_until(listening, process, name, f"listening on {port}", timeout, poll=0.1):
            return
    except RuntimeError as exited:
        raise RuntimeError(f"{exited}{reason()}") from None
    process.kill()
    raise RuntimeError(f"{name} did not listen on port {port} within {scaled(timeout):.0f} s{reason()}")


@dataclass
class Service:
    name: str
    port: int
    process: subprocess.Popen
    url: str
    env: dict = field(default_factory=dict)
    scratch: list = field(default_factory=list)  # directories to remove once stopped

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=scaled(10))
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        for directory in self.scratch:
            shutil.rmtree(directory, ignore_errors=True)


def _bin(name: str) -> str:
    local = os.path.join(os.path.dirname(sys.executable), name)
    return local if os.path.exists(local) else (shutil.which(name) or name)


def start_mongo(port: int | None = None, db_path: str = "memory", log_dir: str | None = None) -> Service:
    port = port or free_port()
    log_file = os.path.join(log_dir or "/tmp", f"nx-27017-{port}.log")
    process = subprocess.Popen(
        [_bin("nx-27017"), "--db", db_path, "--host", "127.0.0.1", "-p", str(port), "--log-file", log_file,
         "--pid-file", os.path.join(log_dir or "/tmp", f"nx-27017-{port}.pid")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _wait_for_port(port, process, "nx-27017")
    return Service("mongo", port, process, f"mongodb://127.0.0.1:{port}")


def serve_s3(host: str, port: int) -> None:
    """moto's S3 server, with conditional PUTs made atomic.

    moto checks If-Match / If-None-Match and then writes, as two steps with no lock between them;
    real S3 and MinIO do both atomically. Serialising conditional PUTs gives local runs and tests
    the guarantee the champion pointer relies on.
    """
    import threading

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    conditional_put = threading.Lock()

    def application(environ, start_response):
        if environ["REQUEST_METHOD"] == "PUT" and ({"HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH"} & environ.keys()):
            with conditional_put:
                return list(app(environ, start_response))
        return app(environ, start_response)

    run_simple(host, port, application, threaded=True)


def start_s3(port: int | None = None, bucket: str | None = None, state_file: str | None = None) -> Service:
    """moto's S3 server on a loopback port. It keeps everything in memory; with `state_file`, every request
    is also appended to that file (moto's recorder) and a file left by an earlier run is replayed first,
    so the objects come back after a restart."""
    import urllib.request

    port = port or free_port()
    recording = {}
    if state_file:
        os.makedirs(os.path.dirname(os.path.abspath(state_file)), exist_ok=True)
        recording = {"MOTO_ENABLE_RECORDING": "1", "MOTO_RECORDER_FILEPATH": os.path.abspath(state_file)}
    replay = bool(state_file and os.path.exists(state_file) and os.path.getsize(state_file))
    process = subprocess.Popen([sys.executable, "-m", "devstack.local_services", "s3", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, **recording, "PYTHONPATH": os.pathsep.join(
                                   filter(None, [ROOT, os.environ.get("PYTHONPATH")]))})
    _wait_for_port(port, process, "local S3 server")
    url = f"http://127.0.0.1:{port}"
    if replay:  # the requests of the earlier runs, against this server (its port may differ)
        request = urllib.request.Request(f"{url}/moto-api/recorder/replay-recording", method="POST", data=b"")
        urllib.request.urlopen(request, timeout=scaled(600)).close()
    env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}
    service = Service("s3", port, process, url, env)
    if bucket and not replay:
        create_bucket(service, bucket)
    return service


MLFLOW_SERVER = os.path.join(ROOT, ".local", "mlflow-server", "bin", "mlflow")


def mlflow_server_missing() -> str | None:
    """Why `start_mlflow` cannot run here (its virtualenv is made by `make mlflow-server`), or None."""
    return None if os.path.exists(MLFLOW_SERVER) else f"no MLflow server at {MLFLOW_SERVER} (make mlflow-server)"


def start_mlflow(backend_store_uri: str, artifacts: str | os.PathLike, port: int | None = None,
                 log_path: str | os.PathLike | None = None) -> Service:
    """`mlflow server` as a plain process on loopback: runs and metrics in `backend_store_uri` (PostgreSQL
    here, as in compose), artifacts served by the server itself from `artifacts` (clients need no storage
    credentials: compose points it at MinIO with a user of its own)."""
    port = port or free_port()
    log = open(log_path or os.devnull, "ab")
    try:
        process = subprocess.Popen(
            [MLFLOW_SERVER, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", backend_store_uri, "--serve-artifacts",
             "--artifacts-destination", Path(artifacts).resolve().as_uri()],
            stdout=log, stderr=log, env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")})
    finally:
        log.close()
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        import urllib.request

        with urllib.request.urlopen(url + "/health", timeout=2) as answer:
            return answer.status == 200

    if not _wait_until(healthy, process, "mlflow server", "answering /health", 120, poll=0.5):
        process.kill()
        raise RuntimeError(f"mlflow server did not answer /health within {scaled(120):.0f} s")
    return Service("mlflow", port, process, url, {"MLFLOW_TRACKING_URI": url})


def start_statsd_exporter(udp_port: int | None = None, http_port: int | None = None) -> Service:
    """The StatsD-to-Prometheus stand-in (devstack/statsd_exporter.py) with compose's mapping file; its
    `env["STATSD_PORT"]` is where Airflow sends, its url + /metrics what Prometheus scrapes."""
    udp_port, http_port = udp_port or free_port(), http_port or free_port()
    process = subprocess.Popen([sys.executable, "-m", "devstack.statsd_exporter", "--udp", str(udp_port),
                                "--http", str(http_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                   filter(None, [ROOT, os.environ.get("PYTHONPATH")]))})
    _wait_for_port(http_port, process, "statsd exporter")
    return Service("statsd-exporter", http_port, process, f"http://127.0.0.1:{http_port}",
                   {"STATSD_PORT": str(udp_port)})


def start_prometheus(config_text: str, workdir: str | os.PathLike) -> Service:
    """Debian's prometheus with this scrape config (compose's file, targets rewritten by the caller), its
    data in `workdir`; its `query(expr)` answers PromQL through the HTTP API."""
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not os.path.exists(binary):
        raise RuntimeError("prometheus is not installed (Debian: apt-get install prometheus)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(config_text)
    port = free_port()
    log = open(workdir / "prometheus.log", "wb")
    try:
        process = subprocess.Popen([binary, f"--config.file={workdir / 'prometheus.yml'}",
                                    f"--storage.tsdb.path={workdir / 'data'}",
                                    f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=log)
    finally:
        log.close()
    _wait_for_port(port, process, "prometheus", 60)
    return Service("prometheus", port, process, f"http://127.0.0.1:{port}")


def prometheus_query(service: Service, expr: str) -> dict:
    import json
    import urllib.parse
    import urllib.request

    url = f"{service.url}/api/v1/query?query={urllib.parse.quote(expr)}"
    return json.loads(urllib.request.urlopen(url, timeout=scaled(10)).read())


def s3_client_for(service: Service):
    import boto3

    return boto3.client("s3", endpoint_url=service.url, aws_access_key_id="testing",
                        aws_secret_access_key="testing", region_name="us-east-1")


def create_bucket(service: Service, bucket: str) -> None:
    """A versioned bucket with Object Lock enabled, as compose's minio-init makes it (the champion audit
    records are locked when CROSS_SELL_AUDIT_LOCK_DAYS > 0)."""
    client = s3_client_for(service)
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def start_serving(env: dict, port: int | None = None, workers: int = 2, log_path: str | None = None,
                  timeout: float = 60.0, app: str = "serving.app:create_app()",
                  extra_path: tuple[str, ...] = (), ready_path: str = "/ready", root: str | None = None) -> Service:
    """A WSGI app (by default the prediction service) under gunicorn with serving/gunicorn.conf.py,
    returned once its `ready_path` answers 200 (/ready: a champion is loaded; /health: it runs, and will
    load the first champion when it is pushed). It listens on a loopback port and, for the nginx front, on
    a unix socket (`env["SERVING_SOCKET"]` of the returned Service). `root`: another checkout to run
    (benchmarks compare a former commit's service with this one)."""
    import tempfile
    import urllib.request

    root = str(root or ROOT)
    port = port or free_port()
    sockets = tempfile.mkdtemp(prefix="serving-socket-")
    os.chmod(sockets, 0o711)  # reachable by nginx's workers (`nobody` under a root master)
    socket_path = os.path.join(sockets, "gunicorn.sock")
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            [_bin("gunicorn"), "-c", os.path.join(root, "serving", "gunicorn.conf.py"), app],
            cwd=root, stdout=log, stderr=log,
            env={**os.environ, **env, "SERVING_BIND": f"127.0.0.1:{port},unix:{socket_path}",
                 "SERVING_WORKERS": str(workers),
                 "PYTHONPATH": os.pathsep.join([root, os.path.join(root, "include"), *extra_path])},
        )
    finally:
        if log is not subprocess.DEVNULL:
            log.close()  # the child holds its own copy
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}{ready_path}", timeout=scaled(2)) as response:
            return response.status == 200

    if _wait_until(ready, process, "gunicorn", f"{url}{ready_path} answered 200", timeout, poll=0.2):
        return Service("serving", port, process, url, {"SERVING_SOCKET": f"unix:{socket_path}"}, scratch=[sockets])
    Service("serving", port, process, url, scratch=[sockets]).stop()
    raise RuntimeError(f"the service was not ready on {url} within {scaled(timeout):.0f} s")


def render_template(text: str, values: dict[str, str]) -> str:
    """`${NAME}` replaced for the names given and nothing else, as the nginx image's envsubst step does."""
    for name, value in values.items():
        text = text.replace("${" + name + "}", str(value))
    return text


def start_front(upstream: str, port: int | None = None, workdir: str | None = None, max_body_size: str = "16m",
                timeout: float = 30.0, worker_processes: str = "1") -> Service:
    """Debian's nginx in front of the service, from the same server block the compose `nginx` service
    renders (docker/nginx/serving.conf.template); stopped by its master's pid. `upstream` is
    `host:port` or `unix:/path` (`start_serving(...).env["SERVING_SOCKET"]`).

    One worker process by default: on a 2-core machine shared with two gunicorn workers a second one
    only competes for the cores (8 clients: 1,140-1,243 req/s vs 1,028-1,158 with `auto`); the
    nginx image's `auto` is right on a host of its own."""
    import tempfile

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        raise RuntimeError("nginx is not installed (Debian: apt-get install nginx-light)")
    root = ROOT
    port = port or free_port()
    # Absolute: nginx reads a relative `include` against its prefix (-p), not the current directory.
    home = os.path.abspath(workdir or tempfile.mkdtemp(prefix="front-"))
    os.makedirs(home, exist_ok=True)
    template = open(os.path.join(root, "docker", "nginx", "serving.conf.template")).read()
    with open(os.path.join(home, "serving.conf"), "w") as handle:
        handle.write(render_template(template, {"SERVING_UPSTREAM": upstream, "NGINX_LISTEN": f"127.0.0.1:{port}",
                                                "NGINX_MAX_BODY_SIZE": max_body_size}))
    # Request bodies over 4 MB are buffered to files by nginx's workers, which run as `nobody` when the
    # master is root: their directory must be reachable by them, which a private temp dir is not.
    buffers = tempfile.mkdtemp(prefix="nginx-buffers-")
    os.chmod(buffers, 0o711)
    temp_paths = "".join(f"    {kind}_temp_path {buffers}/{kind};\n"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    with open(os.path.join(home, "nginx.conf"), "w") as handle:  # the nginx image's main file, in short
        handle.write(f"daemon off;\nworker_processes {worker_processes};\npid {home}/nginx.pid;\n"
                     f"error_log {home}/error.log warn;\nevents {{ worker_connections 4096; }}\n"
                     f"http {{\n    access_log off;\n{temp_paths}    include {home}/serving.conf;\n}}\n")
    stderr_path = os.path.join(home, "nginx.stderr")  # what nginx says before its error log is open
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen([nginx, "-p", home, "-c", os.path.join(home, "nginx.conf"),
                                    "-e", os.path.join(home, "error.log")],
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    _wait_for_port(port, process, "nginx", timeout, logs=(stderr_path, os.path.join(home, "error.log")))
    return Service("front", port, process, f"http://127.0.0.1:{port}", scratch=[buffers])


def airflow_config(home: str | os.PathLike, ui: bool = False) -> dict:
    """Environment for a local Airflow on this repository: SQLite metadata DB in `home`, our DAGs and
    plugins, no examples. A file DB, not sqlite:// in memory: the execution API must see its tables.

    `ui`: for `airflow standalone` on a workstation: the API on loopback only (bound to 0.0.0.0 it also
    warns that SimpleAuthManager looks like production), the DAG unpaused and triggered runs only, so a
    trigger runs at once; four task slots for two cores."""
    root = ROOT
    config = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{os.path.join(home, 'airflow.db')}",
        "AIRFLOW__CORE__DAGS_FOLDER": os.path.join(root, "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": os.path.join(root, "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    if ui:
        config.update({"AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                       "AIRFLOW__CORE__PARALLELISM": "4", "CROSS_SELL_SCHEDULE": "none"})
    return config


def airflow_ports(api_port: int, worker_log_port: int, trigger_log_port: int) -> dict:
    """Where a local Airflow listens, and what its processes must be told of it: the API server's port
    together with the execution API URL every task reports to (a port without it makes each task fail
    with httpx.ConnectError while the UI's log shows only "Pre Execute"), the base URL links are made
    from (the failure alert's log link), and the ports of the worker's and triggerer's log servers."""
    return {
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_log_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log_port),
    }


def airflow_connections(mongo: Service, s3: Service, database: str) -> dict:
    """AIRFLOW_CONN_* variables pointing Airflow's default connection ids at the local servers."""
    import json

    return {
        "AIRFLOW_CONN_MONGO_DEFAULT": json.dumps(
            {"conn_type": "mongo", "host": "127.0.0.1", "port": mongo.port, "schema": database}),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
            {"conn_type": "aws", "login": "testing", "password": "testing",
             "extra": {"endpoint_url": s3.url, "region_name": "us-east-1"}}),
    }


def signing_env(private_key: str | os.PathLike, public_key: str | os.PathLike,
                conn_id: str = "cross_sell_signing") -> dict:
    """The training side's signing connection (a key file), the readers' public key, and the workers' custody
    key (`custody.key` beside the private key, made if missing), as variables."""
    import json

    from cross_sell.governance import custody

    custody_key = Path(private_key).with_name("custody.key")
    if not custody_key.exists():
        custody.make_key(custody_key)
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps({"conn_type": "generic",
                                                          "extra": {"key_file": str(private_key)}}),
            "CROSS_SELL_SIGNING_PUBLIC_KEY": str(public_key),
            custody.KEY_ENV: str(Path(custody_key).resolve())}


if __name__ == "__main__":  # python -m devstack.local_services s3 PORT
    if sys.argv[1:2] != ["s3"] or len(sys.argv) != 3:
        raise SystemExit("usage: python -m devstack.local_services s3 PORT")
    serve_s3("127.0.0.1", int(sys.argv[2]))
