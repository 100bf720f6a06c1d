"""The service as shipped: Debian's nginx with the compose server block in front of gunicorn sync workers.

Slow clients (slowloris) hold nothing but cheap nginx connections; a normal client's requests all
succeed meanwhile. The same slow clients sent straight to gunicorn do stop it, which is why the front
is there. Oversized bodies, chunked or not, get 413 with a reason.
"""

import http.client
import json
import socket
import threading
import time

import pytest

from cross_sell.data import schema
from cross_sell.storage.registry import ModelRegistry
from devstack import local_services
from serving_support import PREFIX, promote, publish, train_model
from support import scaled

pytestmark = pytest.mark.servers  # processes of their own (see conftest.SERVER_FIXTURES)

BODY = json.dumps({"records": [schema.example_record()]})
MAX_BODY = 64 * 1024


@pytest.fixture
def service(tmp_path, s3_server, s3, bucket, signer, verifier):
    registry = ModelRegistry(s3, bucket, PREFIX, verifier)
    publish(registry, "v1", train_model(1), signer)
    promote(registry, "v1")
    env = {**s3_server.env, "CROSS_SELL_S3_BUCKET": bucket, "CROSS_SELL_S3_PREFIX": PREFIX,
           "SERVING_MAX_BODY_BYTES": str(MAX_BODY), "SERVING_TIMEOUT": "30"}
    server = local_services.start_serving(env, workers=2, log_path=str(tmp_path / "gunicorn.log"))
    front = local_services.start_front(server.env["SERVING_SOCKET"], workdir=str(tmp_path),
                                       max_body_size=f"{MAX_BODY // 1024}k")
    yield server, front
    front.stop()
    server.stop()


class SlowClients:
    """`count` connections that send a request header one byte per second and never finish it;
    a connection the server closes is opened again at once (as a slowloris attack does)."""

    def __init__(self, port: int, count: int):
        self.port, self.count = port, count
        self.header = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 10_000
        self.stop = threading.Event()
        self.reopened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        return [sock, 0]

    def _run(self):
        conns = [self._open() for _ in range(self.count)]
        while not self.stop.wait(1.0):
            for conn in conns:
                try:
                    conn[0].send(self.header[conn[1]:conn[1] + 1])
                    conn[1] += 1
                except OSError:  # closed by the server (e.g. nginx's 408): come back
                    conn[0].close()
                    conn[:] = self._open()
                    self.reopened += 1
        for conn in conns:
            conn[0].close()

    def __enter__(self):
        self.thread.start()
        time.sleep(2.0)  # every connection open and trickling
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)


def _normal_requests(port: int, seconds: float, timeout: float) -> list:
    """A normal client: one-row predictions for `seconds`; each outcome is a status code or an error."""
    outcomes, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            connection.request("POST", "/predict", BODY, {"Content-Type": "application/json"})
            outcomes.append(connection.getresponse().status)
        except OSError as error:
            outcomes.append(type(error).__name__)
        finally:
            connection.close()
        time.sleep(0.2)
    return outcomes


def test_fifty_slow_clients_do_not_stop_the_service_behind_the_front(service):
    server, front = service
    with SlowClients(front.port, 50) as attack:
        outcomes = _normal_requests(front.port, seconds=30, timeout=scaled(10))
    assert outcomes and set(outcomes) == {200}, outcomes
    assert len(outcomes) >= 30
    assert attack.reopened >= 50  # nginx timed every slow connection out (and the attacker came back)


def test_without_the_front_two_slow_clients_stop_gunicorn(service):
    """What the front is for: gunicorn's sync workers are held by two trickling sockets."""
    server, _ = service
    with SlowClients(server.port, 2):
        outcomes = _normal_requests(server.port, seconds=4, timeout=2)
    assert 200 not in outcomes, outcomes


def _chunked(port: int, size: int) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(30))
    body = json.dumps({"records": [schema.example_record()], "pad": "x" * size}).encode()
    chunks = (body[i:i + 8192] for i in range(0, len(body), 8192))
    connection.request("POST", "/predict", chunks, {"Content-Type": "application/json"}, encode_chunked=True)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


@pytest.mark.parametrize("through", ["front", "gunicorn"])
def test_a_chunked_body_over_the_limit_is_413_with_a_reason(service, through):
    server, front = service
    port = front.port if through == "front" else server.port
    status, body = _chunked(port, MAX_BODY * 2)
    assert status == 413 and ("too large" in body["error"] or "over" in body["error"]), (status, body)
    status, body = _chunked(port, 1_000)  # a small chunked body is read whole (extra top-level keys are ignored)
    assert status == 200, (status, body)
