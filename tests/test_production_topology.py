"""The production topology, run for real: Airflow on PostgreSQL with the CeleryExecutor and Redis.

Started from this test as separate processes (devstack/airflow_stack.py): a fresh PostgreSQL database
and a Redis database number of its own, `airflow db migrate`, then api-server, scheduler, dag-processor,
triggerer and two Celery workers with their own hostnames, plus the local MongoDB-wire and S3 servers.
The Airflow settings are docker-compose.yaml's `x-airflow-common` environment with only hosts, ports
and secrets replaced. Everything is driven and checked through the REST API with Airflow's official client
(`apache-airflow-client`), as a user's script would.

The scheduler's `task_instance_heartbeat_timeout` (300 s by default) decides when a task whose worker
died is failed and retried; it is 20 s here so the test does not wait five minutes.
Skipped locally without PostgreSQL or Redis; under CI=true that is a failure.
"""

import secrets
import time

import pytest
from airflow_client.client.exceptions import ApiException

from cross_sell.data import loader, synthetic
from cross_sell.storage import signing
from cross_sell.storage.artifacts import RunArtifacts
from cross_sell.storage.registry import ModelRegistry
from devstack import airflow_stack, local_services
from support import scaled, skip_unless_available

pytestmark = pytest.mark.dagrun
DAG_ID = "cross_sell_training"
ROWS = 30_000
HEARTBEAT_TIMEOUT = 20


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    skip_unless_available(airflow_stack.unreachable())
    from pymongo import MongoClient

    home = tmp_path_factory.mktemp("topology")
    mongo, s3 = local_services.start_mongo(), local_services.start_s3(bucket="cross-sell")  # compose's bucket
    statsd = local_services.start_statsd_exporter()
    client = MongoClient(mongo.url)
    loader.upsert(client["insurance"]["customers"], synthetic.generate(ROWS, seed=11), progress=False)
    client.close()
    private_key, public_key = signing.generate_key_pair(home / "keys")
    database, redis_db = f"cross_sell_topology_{secrets.token_hex(4)}", 8 + secrets.randbelow(8)
    topology = None
    try:
        topology = airflow_stack.start(
            home / "airflow", database=database, redis_db=redis_db, mongo_url=mongo.url, s3_env=s3.env,
            signing_key=private_key, public_key=public_key, workers=2, api_port=local_services.free_port(),
            statsd_port=int(statsd.env["STATSD_PORT"]),
            admin_password=secrets.token_urlsafe(12),
            overrides={
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                "CROSS_SELL_SCHEDULE": "none",  # triggered runs only (compose: @weekly)
                "CROSS_SELL_RETRY_DELAY_SECONDS": "1",
            },
            ready_timeout=scaled(300))
        topology.api.wait(lambda: topology.api.dag(DAG_ID), scaled(180), "the DAG to be parsed", 2.0)
        topology.api.unpause(DAG_ID)  # compose creates DAGs paused, as production should
        registry = ModelRegistry(local_services.s3_client_for(s3), "cross-sell", "vehicle-insurance",
                                 signing.ManifestVerifier.from_file(public_key))
        yield {"topology": topology, "api": topology.api, "registry": registry, "s3": s3, "statsd": statsd}
    finally:
        airflow_stack.teardown(topology, database, redis_db, s3, mongo, statsd)


def _on_workers(api, run_id: str, workers: set[str]) -> dict:
    """Every task that ran did so on one of the Celery workers (the hostname each task instance records)."""
    tis = api.task_instances(DAG_ID, run_id)
    ran = {task: ti for task, ti in tis.items() if ti.state.value != "skipped"}
    assert all(ti.state.value == "success" for ti in ran.values()), api.states(DAG_ID, run_id)
    assert {ti.hostname for ti in ran.values()} <= workers, {t: ti.hostname for t, ti in ran.items()}
    return tis


def test_the_settings_that_run_are_the_compose_files(stack):
    compose = airflow_stack.compose_environment("airflow-worker")
    env = stack["topology"].env
    verbatim = {k: v for k, v in compose.items() if k not in airflow_stack.REPLACED}
    assert verbatim["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert all(env[k] == v for k, v in verbatim.items() if v is not None), \
        {k: (env.get(k), v) for k, v in verbatim.items() if env.get(k) != v}
    assert set(airflow_stack.REPLACED) <= set(compose)  # only hosts, ports and secrets differ


def test_every_listener_of_the_topology_is_on_loopback(stack):
    """Issue #20: under `make stack`, Airflow's log servers and the scheduler's health check listened on
    every interface."""
    listening = stack["topology"].listening()
    assert listening["api-server"] and listening["scheduler"], listening  # found at all
    outside = {name: {a for a in addresses if not a.startswith(("127.0.0.1:", "::1:"))}
               for name, addresses in listening.items()}
    assert not any(outside.values()), outside


def test_a_worker_killed_during_train_costs_a_retry_not_the_run(stack):
    api, topology, registry = stack["api"], stack["topology"], stack["registry"]
    run_id = api.trigger(DAG_ID)  # under compose's policy: a run's conf may only tighten it

    def train_running():
        train = api.task_instances(DAG_ID, run_id).get("train")
        return train if train is not None and train.state and train.state.value == "running" and train.hostname \
            else None

    train = api.wait(train_running, scaled(300), "train to be running", every=0.3)
    victim = train.hostname
    killed_at = time.time()
    topology.kill(victim)  # SIGKILL to the worker and its task processes: a lost container
    # Compose asks a person to approve each push: answered through the REST API, as the UI's Required
    # Actions page does, once the retried train and the evaluation have run on the surviving worker.
    api.wait_for_state(DAG_ID, run_id, "approve", ("awaiting_input",), scaled(600), settle=scaled(5))
    topology.approver.respond(DAG_ID, run_id, "approve", "Approve", "topology test")
    finished = api.wait_for_run(DAG_ID, run_id, scaled(300))
    assert finished.state.value == "success"
    tis = _on_workers(api, run_id, set(topology.worker_hostnames))
    tries = {t.try_number: t for t in api.tries(DAG_ID, run_id, "train")}
    assert set(tries) == {1, 2} and tries[1].state.value == "failed" and tries[1].hostname == victim
    assert tries[2].hostname != victim and tis["train"].try_number == 2
    # Both attempts' logs through the API: the first stops where the worker died, the second completes.
    first, second = api.log(DAG_ID, run_id, "train", 1), api.log(DAG_ID, run_id, "train", 2)
    assert first and "trained " not in first, first[-2000:]
    assert "trained " in second and "ONNX parity" in second, second[-2000:]
    # Pushed exactly once, by this run.
    history = registry.history()
    assert [entry["run_id"] for entry in history] == [run_id]
    # Recorded as pushed by the person who approved it (not the one who triggered): Airflow's own record.
    assert history[0]["by"] == topology.approver.username and tis["approve"].state.value == "success"
    print(f"killed {victim} {killed_at - train.start_date.timestamp():.0f} s into train; retried on "
          f"{tries[2].hostname}")
    topology.start_worker(victim.replace("worker-", "worker-restarted-"))  # back to two workers


def test_two_runs_back_to_back_are_serialised_and_the_second_pushes_nothing(stack):
    api, topology, registry = stack["api"], stack["topology"], stack["registry"]
    before = len(registry.history())
    first, second = api.trigger(DAG_ID), api.trigger(DAG_ID)
    assert api.run(DAG_ID, second).state.value == "queued"  # max_active_runs=1: it waits
    runs = [api.wait_for_run(DAG_ID, run_id, scaled(600)) for run_id in (first, second)]
    assert [run.state.value for run in runs] == ["success", "success"]
    assert runs[1].start_date >= runs[0].end_date, (runs[0].end_date, runs[1].start_date)
    for run_id in (first, second):
        assert _on_workers(api, run_id, set(topology.worker_hostnames))["push"].state.value == "skipped"
        decision = RunArtifacts(registry.s3, "cross-sell", "vehicle-insurance", run_id)
        decision = decision.get_json(decision.key("evaluation", "decision.json"))
        # The same data and seed give the same model as the champion: not blessed, not pushed again.
        assert decision["bless"] is False and decision["candidate"] == decision["champion"]
    assert len(registry.history()) == before


def test_the_api_refuses_a_conf_that_breaks_the_params(stack):
    with pytest.raises(ApiException) as refused:
        stack["api"].trigger(DAG_ID, {"min_roc_auc": 7})
    assert refused.value.status == 400 and "min_roc_auc" in refused.value.body


def test_airflows_own_metrics_reach_prometheus_and_the_dashboard(stack, tmp_path):
    """Issue #21: Airflow's StatsD metrics, through the exporter (its stand-in here, reading compose's
    mapping file), scraped by Debian's prometheus with compose's scrape config; every panel of the Airflow
    dashboard is valid PromQL, and the scheduler, task and run panels have data."""
    import json

    from support import ROOT

    statsd = stack["statsd"]
    config = (ROOT / "docker" / "prometheus" / "prometheus.yml").read_text()
    config = config.replace("statsd-exporter:9102", f"127.0.0.1:{statsd.port}")
    prometheus = local_services.start_prometheus(config, tmp_path / "prometheus")
    try:
        def scraped():
            found = local_services.prometheus_query(prometheus, 'up{job="airflow"} == 1')["data"]["result"]
            return found or None

        stack["api"].wait(scraped, scaled(90), "prometheus to scrape the exporter", every=1.0)
        dashboard = json.loads((ROOT / "docker" / "grafana" / "dashboards" / "airflow.json").read_text())
        answers = {target["expr"]: local_services.prometheus_query(prometheus, target["expr"])
                   for panel in dashboard["panels"] for target in panel["targets"]}
        assert all(answer["status"] == "success" for answer in answers.values()), answers
        for metric in ("airflow_scheduler_heartbeat", 'airflow_ti_finish{dag_id="cross_sell_training",state="success"}',
                       "airflow_executor_open_slots", "airflow_task_duration_count",
                       'airflow_dagrun_duration_success_count{dag_id="cross_sell_training"}'):
            assert local_services.prometheus_query(prometheus, metric)["data"]["result"], metric
    finally:
        prometheus.stop()
