"""The service under real gunicorn (2 workers) while the champion changes in the local S3 registry."""

import http.client
import json
import threading
import time

import pytest

from cross_sell.data import schema
from cross_sell.storage.registry import ModelRegistry
from devstack import local_services
from serving_support import PREFIX, promote, publish, train_model
from support import scaled

pytestmark = pytest.mark.servers  # processes of their own (see conftest.SERVER_FIXTURES)

POLL_SECONDS = 1.0
BODY = json.dumps({"records": [schema.example_record()]})


@pytest.fixture
def service(tmp_path, s3_server, s3, bucket, signer, verifier):
    registry = ModelRegistry(s3, bucket, PREFIX, verifier)
    for version, seed in (("v1", 1), ("v2", 2), ("v3", 3)):
        publish(registry, version, train_model(seed), signer)
    promote(registry, "v1")
    env = {**s3_server.env, "CROSS_SELL_S3_BUCKET": bucket, "CROSS_SELL_S3_PREFIX": PREFIX,
           "SERVING_POLL_SECONDS": str(POLL_SECONDS)}
    log_path = tmp_path / "gunicorn.log"
    server = local_services.start_serving(env, workers=2, log_path=str(log_path))
    # /ready answered from one worker; the other may still be loading. Both serve v1 before a test changes
    # the champion, or a worker that boots late loads whatever the pointer says by then (a 503 if tampered).
    # Requests cannot tell: a worker still booting accepts none, so 40 answers in a row can all come from
    # the other one (seen in CI). Each worker logs its first load with its pid.
    deadline = time.monotonic() + scaled(60)
    while len(_first_loads(log_path, "v1")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_first_loads(log_path, "v1")) == 2, log_path.read_text()[-3000:]
    assert _until_converged(server, "v1", []), "the workers did not serve v1"
    yield server, registry
    server.stop()


def _first_loads(log_path, version: str) -> set[int]:
    """The pids of the workers that have logged loading `version` as their first champion."""
    pids = set()
    for line in log_path.read_text().splitlines() if log_path.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:  # not a JSON line, or one still being written
            continue
        if str(entry.get("message", "")).startswith(f"serving champion {version} (was None)"):
            pids.add(entry["pid"])
    return pids


def _predict(connection) -> tuple[int, str | None]:
    connection.request("POST", "/predict", BODY, {"Content-Type": "application/json"})
    response = connection.getresponse()
    body = response.read()
    return response.status, json.loads(body).get("model_version") if response.status == 200 else None


def _until_converged(server, version: str, log: list, timeout: float = scaled(30)) -> bool:
    """Send requests until 40 in a row came from `version` (both workers answer in turn); whether they did."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=scaled(10))
    in_a_row, deadline = 0, time.monotonic() + timeout
    while in_a_row < 40 and time.monotonic() < deadline:
        status, served = _predict(connection)
        log.append((time.monotonic(), status, served))
        in_a_row = in_a_row + 1 if served == version else 0
        if in_a_row == 0:
            time.sleep(0.005)
    return in_a_row >= 40


def test_hot_swap_under_load_drops_no_request(service):
    server, registry = service
    log: list = []
    clients = [threading.Thread(target=_until_converged, args=(server, "v2", log)) for _ in range(4)]
    for client in clients:
        client.start()
    time.sleep(1.0)
    swapped_at = time.monotonic()
    promote(registry, "v2")
    for client in clients:
        client.join()

    statuses = {status for _, status, _ in log}
    assert statuses == {200}, f"failed requests: {[entry for entry in log if entry[1] != 200][:5]}"
    last_old = max(t for t, _, version in log if version == "v1")
    first_new = min(t for t, _, version in log if version == "v2")
    model = json.loads(_get(server, "/model"))
    assert model["version"] == "v2"
    budget = POLL_SECONDS + model["load_seconds"] + 1.0  # + one in-flight request and scheduling slack
    print(f"requests {len(log)}, first v2 after {first_new - swapped_at:.2f} s, last v1 after "
          f"{last_old - swapped_at:.2f} s, budget {budget:.2f} s")
    assert first_new - swapped_at <= budget
    assert last_old - swapped_at <= budget, (last_old - swapped_at, budget)
    assert len(log) > 100


def test_tampered_champion_is_refused_and_the_old_one_keeps_serving(service, s3):
    server, registry = service
    s3.put_object(Bucket=registry.bucket, Key=registry.model_key("v3"), Body=b"not the model that was published")
    promote(registry, "v3")
    time.sleep(POLL_SECONDS * 3)
    log: list = []
    _until_converged(server, "v1", log, timeout=scaled(10))
    assert {(status, version) for _, status, version in log} == {(200, "v1")}
    model = json.loads(_get(server, "/model"))
    assert model["version"] == "v1" and "does not match the signed manifest" in model["last_reload_error"]
    metrics = _get(server, "/metrics")
    assert 'serving_model_reloads_total{result="failure"}' in metrics


def _get(server, path: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=scaled(10))
    connection.request("GET", path)
    return connection.getresponse().read().decode()
