"""Real Airflow end to end: `airflow standalone` (scheduler, API server, LocalExecutor) on a fresh SQLite DB.

The DAG is triggered through the REST API with a conf, while the S3 server is not up yet: extract's
first try fails, the S3 server comes up, the retry succeeds and the run finishes. Task logs are read
through the API. Every process started here is stopped by its pid.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from cross_sell import loader, local_services, synthetic

pytestmark = pytest.mark.dagrun
DAG_ID = "cross_sell_training"
BUCKET, PREFIX, DATABASE = "standalone", "vi", "standalone"


class Api:
    def __init__(self, url: str, token: str):
        self.url, self.token = url, token

    def call(self, method: str, path: str, body=None):
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def _wait(predicate, timeout: float, what: str, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def standalone(tmp_path, mongo_server):
    from pymongo import MongoClient

    client = MongoClient(mongo_server.url)
    client.drop_database(DATABASE)
    loader.upsert(client[DATABASE]["customers"], synthetic.generate(5_000, seed=8))
    client.close()
    s3_port, api_port = local_services.free_port(), local_services.free_port()
    home = tmp_path / "airflow"
    env = {
        **os.environ,
        **local_services.airflow_config(home),
        "AIRFLOW__CORE__PARALLELISM": "2",
        # standalone starts its components as `airflow ...` commands: this interpreter's bin comes first.
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(local_services.free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(local_services.free_port()),
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{api_port}/execution/",
        "CROSS_SELL_SCHEDULE": "none",
        "CROSS_SELL_RETRY_DELAY_SECONDS": "5",
        "CROSS_SELL_S3_BUCKET": BUCKET, "CROSS_SELL_S3_PREFIX": PREFIX, "CROSS_SELL_MONGO_DATABASE": DATABASE,
        "AIRFLOW_CONN_MONGO_DEFAULT": json.dumps({"conn_type": "mongo", "host": "127.0.0.1",
                                                  "port": mongo_server.port, "schema": DATABASE}),
        # Points at a port where no S3 server listens yet: the transient fault.
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({
            "conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"endpoint_url": f"http://127.0.0.1:{s3_port}", "region_name": "us-east-1",
                      "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}}),
    }
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    log = open(tmp_path / "standalone.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "airflow", "standalone"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    s3_server = None

    def start_s3():
        nonlocal s3_server
        s3_server = local_services.start_s3(s3_port, bucket=BUCKET)

    try:
        url = f"http://127.0.0.1:{api_port}"
        passwords = home / "simple_auth_manager_passwords.json.generated"

        def token():
            if process.poll() is not None:
                raise AssertionError(f"airflow standalone exited; see {tmp_path / 'standalone.log'}")
            try:
                password = json.loads(passwords.read_text())["admin"]
                request = urllib.request.Request(f"{url}/auth/token", method="POST", headers={
                    "Content-Type": "application/json"}, data=json.dumps(
                    {"username": "admin", "password": password}).encode())
                with urllib.request.urlopen(request, timeout=5) as response:
                    return json.loads(response.read())["access_token"]
            except (OSError, ValueError, KeyError):
                return None

        api = Api(url, _wait(token, 120, "the API server"))
        yield api, start_s3
    finally:
        # airflow standalone runs its components in its own session: stop them all through its group.
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
        if s3_server is not None:
            s3_server.stop()


def test_triggered_run_survives_a_transient_s3_fault(standalone):
    api, start_s3 = standalone

    def dag_parsed():
        try:
            return api.call("GET", f"/api/v2/dags/{DAG_ID}")
        except urllib.error.HTTPError:
            return None

    _wait(dag_parsed, 90, "the DAG to be parsed")
    api.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
    with pytest.raises(urllib.error.HTTPError) as refused:
        api.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": {"min_roc_auc": 7}})
    assert refused.value.code == 400 and "min_roc_auc" in refused.value.read().decode()
    run = api.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns",
                   {"logical_date": None, "conf": {"min_roc_auc": 0.7, "min_rows": 500}})
    run_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run['dag_run_id'], safe='')}"

    def extract_state():
        task = api.call("GET", f"{run_path}/taskInstances/extract")
        return task if task["state"] == "up_for_retry" else None

    failed_try = _wait(extract_state, 180, "extract to fail on the unreachable S3 server")
    assert failed_try["try_number"] == 1
    start_s3()  # the fault clears before the retry (5 s later)

    finished = _wait(lambda: (r := api.call("GET", run_path))["state"] in ("success", "failed") and r,
                     300, "the run to finish", every=2)
    tasks = {t["task_id"]: t for t in api.call("GET", f"{run_path}/taskInstances")["task_instances"]}
    assert finished["state"] == "success", {k: t["state"] for k, t in tasks.items()}
    assert finished["conf"]["min_roc_auc"] == 0.7
    assert tasks["extract"]["try_number"] == 2 and tasks["push"]["state"] == "success"

    def log_text(task_id: str, attempt: int) -> str:
        body = api.call("GET", f"{run_path}/taskInstances/{task_id}/logs/{attempt}?full_content=true")
        return json.dumps(body["content"])

    first, second = log_text("extract", 1), log_text("extract", 2)
    assert "EndpointConnectionError" in first or "Could not connect" in first, first[-2000:]
    assert "extracted 5000 rows" in second
    assert "decision: BLESS" in log_text("evaluate", 1)
