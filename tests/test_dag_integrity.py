import copy
import json
import subprocess
import sys
from datetime import timedelta

import pytest

from support import DAG_IDS, ROOT, parse_dags

DAG_ID = "cross_sell_training"
ORDER = ["extract", "validate", "transform", "train", "evaluate", "should_push", "route_push", "push"]


@pytest.fixture(scope="session")
def dag_bag():
    """The DAG folder parsed once for the read-only checks of this module (runs parse their own)."""
    return parse_dags()


@pytest.fixture
def dag(dag_bag):
    return dag_bag.dags[DAG_ID]


def test_the_dag_folder_holds_exactly_the_project_dags(dag_bag):
    assert sorted(dag_bag.dags) == sorted(DAG_IDS)


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_dag_alerts_times_out_runs_alone_and_says_what_it_does(dag_bag, dag_id):
    """What `defaults.dag_defaults` gives every DAG: no catch-up, one active run, every task bounded in time
    and alerting on failure; and a doc page in the UI."""
    dag = dag_bag.dags[dag_id]
    assert dag.catchup is False and dag.max_active_runs == 1 and "cross-sell" in dag.tags
    assert dag.doc_md and dag.doc_md.strip().startswith("###"), dag_id
    for task in dag.tasks:
        assert task.execution_timeout is not None and task.on_failure_callback, (dag_id, task.task_id)


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_dags_params_are_its_typed_params_record(dag_bag, dag_id):
    """The tasks read `run.params` through the DAG's record in `cross_sell.params` (a misspelt name is a
    type error there): the DAG's Params and the record name the same keys."""
    from cross_sell.params import FOR_DAG

    assert set(dag_bag.dags[dag_id].params) == set(FOR_DAG[dag_id].__annotations__), dag_id


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_dags_params_are_declared_once_in_params_py(dag_bag, dag_id):
    """Issue #31: a param's default was written in up to four places. Each DAG's params are now built from
    `cross_sell.params.declared` alone: the same names, defaults, bounds and descriptions, in the DAG as parsed."""
    from cross_sell.params import NO_DEFAULT, declared
    from cross_sell.settings import Settings

    params = dag_bag.dags[dag_id].params
    specs = declared(dag_id, Settings.from_env())
    assert set(params) == set(specs)
    for name, spec in specs.items():
        param = params.get_param(name)
        assert param.description == spec.description, name
        assert {k: v for k, v in param.schema.items() if k != "description"} == spec.schema, name
        if spec.default is NO_DEFAULT or spec.default is None:  # Airflow holds either as "no value"
            assert not param.has_value, name
        else:
            assert param.value == spec.default, name
    for source in (ROOT / "dags").glob("*.py"):  # no DAG file declares a param of its own
        assert "Param(" not in source.read_text(), source.name


def test_tasks_and_their_order(dag):
    assert sorted(dag.task_ids) == sorted(ORDER + ["check_drift", "should_shadow", "shadow",
                                                   "describe_for_approval", "approve"])
    assert dag.get_task("shadow").upstream_task_ids >= {"should_shadow", "evaluate"}
    for upstream, downstream in zip(ORDER, ORDER[1:], strict=False):
        assert downstream in dag.get_task(upstream).downstream_task_ids, (upstream, downstream)
    assert dag.get_task("push").upstream_task_ids >= {"route_push", "evaluate", "approve"}
    # Issue #23: with require_approval, the human-in-the-loop approval stands between the decision and the push;
    # the push runs after either path of the branch, and a timeout answers Reject (no push).
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    approve = dag.get_task("approve")
    assert isinstance(approve, ApprovalOperator) and approve.defaults == ["Reject"]
    assert approve.response_timeout.total_seconds() == 72 * 3600 and "comment" in approve.params
    assert dag.get_task("describe_for_approval").upstream_task_ids >= {"route_push", "evaluate", "check_drift"}
    assert dag.get_task("push").trigger_rule == "none_failed_min_one_success"
    assert dag.params["require_approval"] is False
    assert dag.get_task("check_drift").upstream_task_ids == {"extract"}
    assert "check_drift" in dag.get_task("transform").upstream_task_ids  # drifted data stops a "fail" run


def test_drift_params_are_validated(dag):
    params = dag.params.dump()
    assert params["drift_action"] == "warn" and params["drift_thresholds"] == {}
    assert dag.get_task("check_drift").retries >= 2 and dag.get_task("check_drift").retry_exponential_backoff


def test_every_task_has_a_timeout_and_io_tasks_back_off(dag):
    for task in dag.tasks:
        assert task.execution_timeout is not None and task.execution_timeout <= timedelta(hours=1), task.task_id
    for task_id in ("extract", "transform", "train", "evaluate", "push"):
        task = dag.get_task(task_id)
        assert task.retries >= 2 and task.retry_exponential_backoff, task_id
    assert dag.get_task("validate").retries == 0


def test_assets_give_lineage(dag):
    from cross_sell_airflow.assets import asset_name

    assert [a.name for a in dag.get_task("extract").outlets] == [asset_name("cross_sell_raw_snapshot")]
    assert [a.name for a in dag.get_task("push").outlets] == [asset_name("cross_sell_champion")]
    assert dag.get_task("push").outlets[0].uri.endswith("/champion.json")


def test_schedule_and_params(dag):
    assert dag.timetable.expression == "0 0 * * 0"  # @weekly
    assert not dag.catchup
    params = dag.params.dump()
    assert {"min_roc_auc", "promotion_margin", "min_rows", "seed"} <= set(params)


@pytest.mark.parametrize("conf, fragment", [
    ({"min_roc_auc": 2}, "min_roc_auc"),
    ({"promotion_margin": -0.1}, "promotion_margin"),
    ({"min_rows": "lots"}, "min_rows"),
    ({"drift_action": "ignore"}, "drift_action"),
])
def test_invalid_trigger_params_are_refused(dag, conf, fragment):
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError, match=fragment):
        params.update(conf)
        params.validate()


def test_no_dag_file_imports_anything_heavy():
    """What keeps the scheduler's parse cheap (its time is machine-dependent, so a benchmark's business, not
    a test's): nothing heavy is imported at module level by any DAG file. One process loads them in turn and
    names the first file after which a heavy module is loaded."""
    files = sorted(str(path) for path in (ROOT / "dags").glob("cross_sell_*.py"))
    probe = (
        "import sys, json, importlib.util\n"
        "heavy = ('great_expectations', 'sklearn', 'pyarrow', 'pymongo', 'joblib', 'onnxruntime', 'pandas')\n"
        "found = {}\n"
        f"for path in {files!r}:\n"
        "    spec = importlib.util.spec_from_file_location('d', path)\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "    found[path] = [m for m in heavy if m in sys.modules]\n"
        "print(json.dumps(found))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ,
                              "PYTHONPATH": f"{ROOT / 'include'}{__import__('os').pathsep}{ROOT / 'plugins'}"})
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(found) == len(DAG_IDS) and all(heavy == [] for heavy in found.values()), found


def test_stage_run_fails_at_once_on_what_retrying_cannot_fix(monkeypatch):
    """One helper maps every NotRetryable to AirflowFailException and NothingToDo to a skip; other errors
    are left to the retries."""
    import airflow.sdk
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from cross_sell.data.validation import DataValidationError
    from cross_sell.errors import NothingToDo, NotRetryable
    from cross_sell.params import TrainingParams
    from cross_sell_airflow.stage import stage_run

    class Run:
        run_after = None

    class TaskInstance:
        task_id = "extract"
        dag_id = "cross_sell_training"

    monkeypatch.setattr(airflow.sdk, "get_current_context",
                        lambda: {"run_id": "r", "dag_run": Run(), "params": {"seed": 1}, "ti": TaskInstance()})
    with stage_run(TrainingParams) as run:
        assert run.done((run.run_id, run.params["seed"])) == ("r", 1)
    for failure in (DataValidationError("3 expectations failed"), NotRetryable("bad param")):
        with pytest.raises(AirflowFailException, match=str(failure)), stage_run(TrainingParams):
            raise failure
    with pytest.raises(AirflowSkipException, match="no champion yet"), stage_run(TrainingParams):
        raise NothingToDo("no champion yet")
    with pytest.raises(ConnectionError), stage_run(TrainingParams):  # transient: the task's retries handle it
        raise ConnectionError("S3 unreachable")


@pytest.fixture
def scoring_dag(dag_bag):
    return dag_bag.dags["cross_sell_scoring"]


def test_scoring_runs_on_a_new_champion_or_daily(scoring_dag, dag):
    from airflow.sdk import AssetOrTimeSchedule

    from cross_sell_airflow.assets import asset_name

    timetable = scoring_dag.timetable
    assert isinstance(timetable, AssetOrTimeSchedule)
    assert timetable.asset_condition.name == asset_name("cross_sell_champion")
    assert timetable.timetable.expression == "0 5 * * *"
    champion = [outlet for outlet in dag.get_task("push").outlets]
    assert [a.name for a in champion] == [asset_name("cross_sell_champion")]  # training emits what scoring awaits
    assert sorted(scoring_dag.task_ids) == ["campaign", "publish", "score"]
    assert [a.name for a in scoring_dag.get_task("publish").outlets] == [asset_name("cross_sell_scores")]
    assert scoring_dag.max_active_runs == 1 and scoring_dag.catchup is False
    params = scoring_dag.params.dump()
    assert params["model"] == "champion" and params["campaign_top_share"] == 0.1 and params["campaign_top_n"] is None


def test_monitoring_runs_daily_and_alerts_on_failure(dag_bag):
    monitoring = dag_bag.dags["cross_sell_monitoring"]
    assert monitoring.timetable.expression == "0 6 * * *" and monitoring.catchup is False
    assert sorted(monitoring.task_ids) == ["monitor", "report"]
    assert monitoring.get_task("monitor").on_failure_callback
    params = monitoring.params.dump()
    assert params["day"] is None and params["min_realized_roc_auc"] == 0.75 and params["min_realized_precision"] == 0.2


def test_a_parsing_airflow_reports_no_plugin_or_dag_import_error(tmp_path):
    """Issue #21: Airflow imports every file under plugins/ on its own, so a relative import there logged
    "Failed to import plugin" in every process and task log and the UI showed a Plugin Import Error. Load
    plugins and DAGs the way Airflow does, in a clean process."""
    import os

    probe = (
        "import json\n"
        "from airflow import plugins_manager\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "errors = {k: str(v) for k, v in dict(plugins_manager.get_import_errors()).items()}\n"
        f"errors.update(DagBag({str(ROOT / 'dags')!r}).import_errors)\n"
        "print(json.dumps(errors))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins")])})
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {}


@pytest.mark.parametrize("dag_id", ["cross_sell_training", "cross_sell_scoring", "cross_sell_monitoring",
                                    "cross_sell_housekeeping"])
def test_a_new_or_unpaused_dag_waits_for_its_next_slot(dag_bag, dag_id):
    """Issue #21: a fresh `airflow standalone` ran scoring and monitoring for the last slot at once, before
    any champion existed. With no run yet, each DAG's first scheduled run is its next slot, not a past one."""
    from datetime import datetime, timezone

    from airflow.timetables.base import TimeRestriction

    timetable = dag_bag.dags[dag_id].timetable
    timetable = getattr(timetable, "timetable", timetable)  # scoring: the time half of asset-or-time
    from airflow.serialization.encoders import coerce_to_core_timetable

    first = coerce_to_core_timetable(timetable).next_dagrun_info(
        last_automated_data_interval=None, restriction=TimeRestriction(earliest=None, latest=None, catchup=False))
    assert first.run_after > datetime.now(timezone.utc), (dag_id, first)


def test_the_data_governance_dags(dag_bag):
    """Issue #22: erasure only when triggered, with a request file and a reason, never retried on its own;
    housekeeping daily; both alert on failure."""
    erasure, housekeeping = dag_bag.dags["cross_sell_erasure"], dag_bag.dags["cross_sell_housekeeping"]
    assert erasure.schedule is None and erasure.get_task("erase").retries == 0
    assert set(erasure.params) == {"request", "reason", "dry_run"} and erasure.params["dry_run"] is False
    assert housekeeping.timetable.expression == "0 4 * * *" and housekeeping.get_task("retain").retries >= 2
    for dag in (erasure, housekeeping):
        assert dag.get_task(dag.task_ids[0]).on_failure_callback and "data-governance" in dag.tags


def test_approvers_become_the_approval_tasks_assigned_users_but_never_the_trigger():
    """Issue #23 and #30: the policy's approvers (CROSS_SELL_APPROVERS) are asked, never the user who triggered
    the run (maker-checker) unless the policy allows it; the timeout answers Reject."""
    from cross_sell.governance.policy import Policy, PolicyError
    from cross_sell.settings import Settings
    from cross_sell_airflow.approval import push_approval, rollback_approval

    assert Policy().assignees("alice") == []  # none named: any user may answer (the signing step refuses alice)
    policy = Policy(approvers=("7", "alice"))
    assert policy.assignees("alice") == ["7"] and policy.assignees(None) == ["7", "alice"]
    assert Policy(approvers=("alice",), allow_self_approval=True).assignees("alice") == ["alice"]
    with pytest.raises(PolicyError, match="no approver left"):
        Policy(approvers=("alice",)).assignees("alice")
    task = push_approval(Settings(approval_timeout_hours=1.5))
    assert task.task_id == "approve" and task.defaults == ["Reject"]
    assert task.response_timeout.total_seconds() == 5400
    assert rollback_approval(Settings()).task_id == "approve_forced_rollback"


# Issue #32: every output one click away from the UI (cross_sell_airflow.links).
OUTPUT_LINKS = {
    ("cross_sell_training", "validate"): ["Validation report"],
    ("cross_sell_training", "evaluate"): ["Evaluation report"],
    ("cross_sell_training", "describe_for_approval"): ["Model card"],
    ("cross_sell_training", "push"): ["Model card"],
    ("cross_sell_training", "shadow"): ["Model card"],
    ("cross_sell_scoring", "score"): ["Lift table (JSON)", "Quarantined rows", "Scores (Parquet)"],
    ("cross_sell_scoring", "campaign"): ["Campaign list (CSV)"],
    ("cross_sell_monitoring", "monitor"): ["Day's figures (JSON)"],
    ("cross_sell_monitoring", "report"): ["Monitoring page"],
    ("cross_sell_rollback", "rollback"): ["Model card"],
    ("cross_sell_erasure", "erase"): ["Erasure receipt"],
}


def test_every_output_is_an_extra_link_of_the_task_that_writes_it(dag_bag):
    """As the API server sees them: the serialized DAGs' extra links (name -> XCom key)."""
    from airflow.serialization.serialized_objects import DagSerialization

    found = {}
    for dag_id in DAG_IDS:
        serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag_bag.dags[dag_id]))
        found.update({(dag_id, task.task_id): sorted(task.extra_links) for task in serialized.tasks
                      if task.extra_links})
    assert found == OUTPUT_LINKS


def test_a_link_is_a_short_lived_url_to_the_file_shown_as_what_it_is(s3_server, bucket, monkeypatch):
    import urllib.request
    from types import SimpleNamespace

    from cross_sell.storage.artifacts import RunArtifacts
    from cross_sell_airflow import links
    from devstack import local_services

    monkeypatch.setenv("CROSS_SELL_S3_BUCKET", bucket)
    monkeypatch.setenv("CROSS_SELL_LINK_HOURS", "2")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": s3_server.url, "region_name": "us-east-1"}}))
    s3 = local_services.s3_client_for(s3_server)
    run = RunArtifacts(s3, bucket, "vehicle-insurance", "manual__2026-12-04T10:00:00+00:00")
    run.put_bytes(b"<!doctype html><h1>Model card</h1>", "text/html", "evaluation", "model_card.html")

    def ti(record=None, params=None, task_id="describe_for_approval"):
        return SimpleNamespace(run_id=run.run_id, task_id=task_id, xcom_pull=lambda task_ids: record,
                               get_template_context=lambda: {"params": params or {}})

    import time
    import urllib.parse

    url = links.RUN_MODEL_CARD.get_link(None, ti_key=ti())
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    lifetime = int(query["X-Amz-Expires"]) if "X-Amz-Expires" in query else int(query["Expires"]) - time.time()
    assert 7000 < lifetime <= 7200 and ("Signature" in query or "X-Amz-Signature" in query), url  # 2 h, signed
    with urllib.request.urlopen(url, timeout=30) as page:
        assert page.headers.get_content_type() == "text/html" and page.read().startswith(b"<!doctype html>")
    assert links.EVALUATION_REPORT.get_link(None, ti_key=ti()) == ""  # not written (yet): no target
    assert links.PUSHED_MODEL_CARD.get_link(None, ti_key=ti({"pushed": False, "version": "v1"})) == ""
    s3.put_object(Bucket=bucket, Key="vehicle-insurance/models/v1/model_card.html", Body=b"<p>v1</p>")
    assert "models/v1/model_card.html" in links.PUSHED_MODEL_CARD.get_link(None, ti_key=ti({"pushed": True,
                                                                                           "version": "v1"}))
    assert "models/v1/model_card.html" in links.RESTORED_MODEL_CARD.get_link(None, ti_key=ti(params={"version": "v1"}))
    scores = RunArtifacts(s3, bucket, "vehicle-insurance", run.run_id, area="scores")
    scores.put_bytes(b"rank,id\n1,17\n", "text/csv", "campaign.csv")
    with urllib.request.urlopen(links.CAMPAIGN.get_link(None, ti_key=ti()), timeout=30) as listed:
        assert 'filename="campaign.csv"' in listed.headers["Content-Disposition"] and listed.read().startswith(b"rank")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", "not json")  # a broken connection: no link, the task goes on
    assert links.RUN_MODEL_CARD.get_link(None, ti_key=ti()) == ""
    assert {link.xcom_key for link in (links.SCORES, links.LIFT_TABLE, links.QUARANTINE)} == {
        "_link_scores_parquet", "_link_lift_table_json", "_link_quarantined_rows"}  # one XCom per link
