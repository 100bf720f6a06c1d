"""Fixtures shared by the tests. `support` sets the environment up first (Airflow reads it at import)."""

from __future__ import annotations

from support import _AIRFLOW_HOME, ALERT_TEXT, SAMPLE_CSV, SIGNING_KEY, SIGNING_PUBLIC_KEY  # isort: skip

import pytest

from cross_sell.storage import signing
from devstack import local_services

# `make test-fast` (-m "not dagrun and not servers") keeps the tests whose only server is the session's S3
# stand-in (one moto process, up in about a second) and leaves out, as `servers`: a test that talks to the
# MongoDB wire server (slow by nature here), and a test of these modules that uses S3 and also starts
# processes of its own (gunicorn, nginx, prometheus, chromium) or trains whole pipelines on it.
SLOW_SERVER_FIXTURES = {"mongo_server"}
HEAVY_WITH_S3 = {"test_serving_front", "test_serving_gunicorn", "test_dashboards", "test_pages_xss",
                 "test_model_families", "test_serving_fuzz", "test_stages", "test_governance", "test_dag_integrity"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if SLOW_SERVER_FIXTURES & fixtures or ("s3_server" in fixtures and item.module.__name__ in HEAVY_WITH_S3):
            item.add_marker(pytest.mark.servers)


def pytest_sessionfinish(session, exitstatus):
    import shutil

    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def mongo_server():
    service = local_services.start_mongo()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def s3_server():
    service = local_services.start_s3()
    yield service
    service.stop()


@pytest.fixture
def mongo_db(mongo_server, request):
    """A fresh database per test on the shared server."""
    from pymongo import MongoClient

    client = MongoClient(mongo_server.url, serverSelectionTimeoutMS=5000)
    name = "t_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")[:50]
    client.drop_database(name)
    yield client[name]
    client.drop_database(name)
    client.close()


@pytest.fixture
def bucket(s3_server, request):
    """A fresh, versioned bucket per test."""
    import hashlib
    import re

    # Readable, and unique per test and parameter set (a long name cut short would be shared).
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]
    name = (re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:45].strip("-") or "bucket") + "-" + digest
    local_services.create_bucket(s3_server, name)
    return name


@pytest.fixture
def s3_env(monkeypatch, s3_server):
    """AWS_* variables pointing boto3 (as the CLI and the service create it) at the local S3 server."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    return s3_server.env


@pytest.fixture
def s3(s3_server):
    return local_services.s3_client_for(s3_server)


@pytest.fixture(scope="session")
def signer():
    return signing.ManifestSigner.from_file(SIGNING_KEY)


@pytest.fixture(scope="session")
def verifier():
    return signing.ManifestVerifier.from_file(SIGNING_PUBLIC_KEY)


@pytest.fixture(scope="session")
def sample_csv():
    if not SAMPLE_CSV.exists():
        pytest.skip(f"real sample not present at {SAMPLE_CSV}")
    return SAMPLE_CSV


@pytest.fixture
def alert_sink(monkeypatch):
    """A local webhook receiving the alerts as Apprise's json:// sends them: the `cross_sell_alerts`
    connection (type apprise) points at it. Each alert is read back into its fields from the text a person
    reads (kind, dag_id, task_id, run_id, try_number, reason, log_url), with Apprise's title and type."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            sent = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fields = ALERT_TEXT.match(sent["message"]).groupdict()
            fields["kind"] = fields["kind"].replace(" ", "_")
            fields["try_number"] = None if fields["try_number"] == "None" else int(fields["try_number"])
            received.append({**fields, "title": sent["title"], "type": sent["type"], "text": sent["message"]})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AIRFLOW_CONN_CROSS_SELL_ALERTS", json.dumps({
        "conn_type": "apprise", "extra": {"config": {"path": f"json://127.0.0.1:{server.server_address[1]}/"}}}))
    yield received
    server.shutdown()
    server.server_close()
