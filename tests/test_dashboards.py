"""The Grafana dashboard queries metrics the service exports, and Prometheus scrapes the service with the
compose file's scrape config (Debian's prometheus; only the target's address differs)."""

import json
import re
import shutil
import time
import urllib.request

import pytest

from cross_sell.data import schema, synthetic
from cross_sell.storage.registry import ModelRegistry
from devstack import local_services
from serving_support import PREFIX, promote, publish, train_model
from support import ROOT, scaled

pytestmark = pytest.mark.servers  # processes of their own (see conftest.SERVER_FIXTURES)

DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "cross-sell-serving.json"
SCRAPE_CONFIG = ROOT / "docker" / "prometheus" / "prometheus.yml"


def _expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.fixture(scope="module")
def service(tmp_path_factory, s3_server, signer, verifier):
    bucket = "dashboards"
    local_services.create_bucket(s3_server, bucket)
    registry = ModelRegistry(local_services.s3_client_for(s3_server), bucket, PREFIX, verifier)
    publish(registry, "v1", train_model(1), signer)
    promote(registry, "v1")
    env = {**s3_server.env, "CROSS_SELL_S3_BUCKET": bucket, "CROSS_SELL_S3_PREFIX": PREFIX}
    server = local_services.start_serving(env, workers=2, log_path=str(tmp_path_factory.mktemp("dash") / "g.log"))
    records = synthetic.generate(40, seed=3)[list(schema.FEATURES)].to_dict("records")
    records = [{k: getattr(v, "item", lambda v=v: v)() for k, v in r.items()} for r in records]
    for body in ([records[0]], records, [{"Age": "x"}]):  # one row, a batch, and a 422
        request = urllib.request.Request(f"{server.url}/predict", data=json.dumps({"records": body}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=scaled(30)).read()
        except urllib.error.HTTPError:
            pass
    yield server
    server.stop()


def _exported_once_counted(service) -> str:
    """/metrics once every worker has added its counts (each does every `metrics.FLUSH_SECONDS`)."""
    from serving import metrics

    deadline = time.monotonic() + scaled(10)
    while True:
        exported = urllib.request.urlopen(f"{service.url}/metrics", timeout=scaled(30)).read().decode()
        if 'serving_predicted_probability_count{model_version="v1"} 41.0' in exported or time.monotonic() > deadline:
            return exported
        time.sleep(metrics.FLUSH_SECONDS / 2)


def test_every_metric_the_dashboard_queries_is_exported(service):
    exported = _exported_once_counted(service)
    names = {line.split("{")[0].split(" ")[0] for line in exported.splitlines() if line and not line.startswith("#")}
    queried = {name for expr in _expressions() for name in re.findall(r"\b(serving_[a-z_]+)\b", expr)}
    assert len(queried) >= 7, queried
    assert queried <= names, queried - names
    by_label = [float(line.rsplit(" ", 1)[1]) for line in exported.splitlines()
                if line.startswith("serving_predictions_total{") and 'model_version="v1"' in line]
    assert sum(by_label) == 41  # 1 + 40 rows predicted; the 422 predicted nothing
    assert 'serving_predicted_probability_count{model_version="v1"} 41.0' in exported


def test_prometheus_scrapes_the_service_with_the_compose_scrape_config(service, tmp_path):
    if shutil.which("prometheus") is None:
        from support import skip_unless_available

        skip_unless_available("Debian's prometheus is not installed (.ci/run installs it)")
    prometheus = local_services.start_prometheus(
        SCRAPE_CONFIG.read_text().replace("serving:8000", f"127.0.0.1:{service.port}"), tmp_path)
    try:
        def query(expr: str) -> dict:
            return local_services.prometheus_query(prometheus, expr)

        deadline, up = time.monotonic() + scaled(60), []
        while time.monotonic() < deadline and not up:
            try:
                up = [r for r in query('up{job="cross-sell-serving"}')["data"]["result"] if r["value"][1] == "1"]
            except OSError:
                pass
            time.sleep(1)
        assert up, (tmp_path / "prometheus.log").read_text()[-2000:]
        assert query("serving_requests_total")["data"]["result"]
        for expr in _expressions():  # every panel's query is valid PromQL on the scraped data
            assert query(expr)["status"] == "success", expr
    finally:
        prometheus.stop()
