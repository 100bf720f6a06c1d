"""The README's "Run it in the Airflow UI" section, command by command, on a real `airflow standalone`.

`python -m devstack services` (terminal 1), then with its .local/services.env sourced: `python -m
cross_sell load`, `airflow standalone`; the DAG is triggered through the REST API with Airflow's official
client (`apache-airflow-client`; a conf that breaks the Params is refused), and task logs are read through
it. Only ports and paths differ from the README (chosen with devstack's options, under a temporary folder;
tests/test_readme_operating.py runs the README's own commands). Every process started here is stopped by
its pid.
"""

import json
import re
import urllib.error
import urllib.request

import pytest
from airflow_client.client.exceptions import ApiException

import browser
from cross_sell.data import schema
from cross_sell.governance.approval import text
from standalone_support import standalone_airflow
from support import expectation_count, scaled, skip_unless_available

pytestmark = pytest.mark.dagrun
DAG_ID = "cross_sell_training"


README_RUN: dict[str, str] = {}  # the run ids of the README section's training and scoring runs
README_CONF = {"min_roc_auc": 0.8, "min_rows": 500}  # the README's example tightens the floor (policy: 0.75)
# A short response timeout for the approval tests (issue #23). The test that answers does so scaled(5) s
# after the request appears; the one that lets it time out waits for all of it, so it is not stretched
# with the machine: only the time to answer within it is.
APPROVAL_TIMEOUT_SECONDS = max(45, 3 * scaled(5))


class LineageReceiver:
    """A local HTTP endpoint of the OpenLineage provider's `http` transport: keeps every event it is sent."""

    def __init__(self):
        import http.server
        import threading

        events = self.events = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                events.append(json.loads(body))
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def lineage_receiver():
    receiver = LineageReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def readme_section(tmp_path_factory, lineage_receiver):
    extra = {"CROSS_SELL_APPROVAL_TIMEOUT_HOURS": str(APPROVAL_TIMEOUT_SECONDS / 3600),
             # This deployment lets a retrained twin of the champion win, so it asks for approval.
             "CROSS_SELL_PROMOTION_MARGIN": "0",
             # OpenLineage through the provider's own configuration, to the local receiver (issue #23)
             "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "http", "url": lineage_receiver.url,
                                                           "endpoint": "api/v1/lineage"}),
             "AIRFLOW__OPENLINEAGE__NAMESPACE": "cross-sell"}
    with standalone_airflow(tmp_path_factory.mktemp("standalone"), extra_env=extra) as running:
        yield running.user("admin"), running.home, running.front, running.env, running.user("reviewer")


def test_the_readme_ui_section_runs_a_triggered_dag_and_shows_its_logs(readme_section):
    api, tmp_path, front, _, _ = readme_section
    api.wait(lambda: api.dag(DAG_ID), scaled(120), "the DAG to be parsed")
    assert api.dag(DAG_ID).is_paused is False  # no unpause step needed
    with pytest.raises(ApiException) as refused:
        api.trigger(DAG_ID, {"min_roc_auc": 7})
    assert refused.value.status == 400 and "min_roc_auc" in refused.value.body
    run_id = api.trigger(DAG_ID, README_CONF)
    finished = api.wait_for_run(DAG_ID, run_id, scaled(400))
    states = api.states(DAG_ID, run_id)
    assert finished.state.value == "success", states
    assert finished.conf == README_CONF and states["push"] == "success"
    assert "extracted 5000 rows" in api.log(DAG_ID, run_id, "extract", 1)
    validate_log = api.log(DAG_ID, run_id, "validate", 1)
    expected = expectation_count()
    assert f"validation passed: {expected}/{expected} expectations passed" in validate_log
    assert "Skipping registering function" not in validate_log  # GX's noise stays out of the task log
    assert "decision: BLESS" in api.log(DAG_ID, run_id, "evaluate", 1)
    README_RUN["training"] = run_id

    # The loop closes on this machine (issue #21): the new champion is scored for the CRM, and the service
    # that `devstack services --serve` runs answers with it through its front.
    def scored():
        return next((r for r in api.runs("cross_sell_scoring") if r.state.value in ("success", "failed")), None)

    scoring = api.wait(scored, scaled(300), "the scoring run the new champion triggers", every=2.0)
    assert scoring.state.value == "success" and scoring.run_type.value == "asset_triggered", scoring
    README_RUN["scoring"] = scoring.dag_run_id
    champion = api.log(DAG_ID, run_id, "push", 1).split("champion is now ", 1)[1].split()[0]

    def answered():
        request = urllib.request.Request(f"{front}/predict", method="POST",
                                         headers={"Content-Type": "application/json"},
                                         data=json.dumps({"records": [schema.example_record()]}).encode())
        try:
            with urllib.request.urlopen(request, timeout=scaled(10)) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError:
            return None  # 503 until its poller has loaded the first champion
        return body if body["model_version"] == champion else None

    assert api.wait(answered, scaled(120), "the service to serve the new champion")["predictions"][0]["label"] in (0, 1)

    # A first run without a red mark: no failed run of any DAG, no plugin or DAG import error, and the UI's
    # home page (as a person sees it, in headless Chromium) says so.
    assert api.runs("~", state=["failed"]) == []
    assert api.api("PluginApi").import_errors().total_entries == 0
    assert api.api("ImportErrorApi").get_import_errors().total_entries == 0
    skip_unless_available(browser.missing())
    with browser.page([browser.token_cookie(api.url, api.token())]) as page:
        page.goto(f"{api.url}/")
        page.get_by_text("Failed Dags").first.wait_for(timeout=scaled(90) * 1000)
        page.get_by_text("Dag Processor").first.wait_for()
        home = browser.text(page)
        shot = tmp_path / "airflow-home.png"
        page.screenshot(path=shot, full_page=True)
        print(f"home page screenshot: {shot}")
    assert re.search(r"(\d+)\s+Failed Dags", home).group(1) == "0", home[:3000]
    assert "Import Error" not in home, home[:3000]  # the banner the UI shows for plugin or DAG import errors
    assert all(part in home for part in ("MetaDatabase", "Scheduler", "Triggerer", "Dag Processor"))


def _task_details(page, url: str, dag_id: str, run_id: str, task_id: str, shot=None) -> None:
    """The task instance's Details tab, where the UI shows its extra links (as buttons under "Extra Links")."""
    page.goto(f"{url}/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/details")
    page.get_by_text("Extra Links", exact=True).wait_for(timeout=scaled(90) * 1000)
    if shot is not None:
        page.screenshot(path=shot, full_page=True)
        print(f"{dag_id}.{task_id}'s page with its links: {shot}")


def _click_link(page, name: str, shot):
    """Click the extra-link button `name` on the task page open in `page`; the page it opens (a new tab),
    loaded and screenshotted."""
    button = page.get_by_role("link", name=name, exact=True).first
    button.wait_for()
    with page.context.expect_page() as opened:
        button.click()
    target = opened.value
    target.wait_for_load_state()
    target.screenshot(path=shot, full_page=True)
    print(f"{name}, opened from the task's page: {shot}")
    assert target.errors == [], (name, target.errors)
    return target


def test_every_output_is_one_click_from_the_task_page(readme_section):
    """Issue #32: the reports, the model card (as HTML), the scores, the campaign list and the monitoring page
    were only `s3://` keys in task logs. They are extra links of the tasks (presigned URLs, made as each task
    ends): through the official client, then as a person clicks them in the UI (screenshots to look at)."""
    import datetime

    api, tmp_path, _, _, _ = readme_section
    training, scoring = README_RUN["training"], README_RUN["scoring"]
    links = {task: api.links(DAG_ID, training, task) for task in ("validate", "evaluate", "push")}
    links.update({task: api.links("cross_sell_scoring", scoring, task) for task in ("score", "campaign")})
    expected = {("validate", "Validation report"): "text/html", ("evaluate", "Evaluation report"): "text/html",
                ("push", "Model card"): "text/html", ("score", "Scores (Parquet)"): "application/octet-stream",
                ("score", "Lift table (JSON)"): "application/json", ("campaign", "Campaign list (CSV)"): "text/csv"}
    for (task, name), kind in expected.items():
        assert links[task].get(name), (task, name, links[task])
        with urllib.request.urlopen(links[task][name], timeout=scaled(30)) as answer:
            assert answer.headers.get_content_type() == kind, (task, name, answer.headers["Content-Type"])
    # The monitoring DAG for the default day (yesterday: nothing was sampled then): its page says which
    # `day` it looked at and which days have samples.
    run_id = api.trigger("cross_sell_monitoring", {})
    assert api.wait_for_run("cross_sell_monitoring", run_id, scaled(300)).state.value == "success", \
        api.states("cross_sell_monitoring", run_id)
    page_url = api.links("cross_sell_monitoring", run_id, "report")["Monitoring page"]
    with urllib.request.urlopen(page_url, timeout=scaled(30)) as answer:
        monitoring_page = answer.read().decode()
    yesterday = (datetime.datetime.now(datetime.timezone.utc).date() - datetime.timedelta(days=1)).isoformat()
    assert f"no sampled serving rows for {yesterday}" in monitoring_page and "`day` param" in monitoring_page

    skip_unless_available(browser.missing())
    with browser.page([browser.token_cookie(api.url, api.token())]) as page:
        _task_details(page, api.url, DAG_ID, training, "evaluate", tmp_path / "task-evaluate-links.png")
        report = _click_link(page, "Evaluation report", tmp_path / "evaluation-report.png")
        report.get_by_text("Fairness by protected attribute").first.wait_for()
        _task_details(page, api.url, DAG_ID, training, "push", tmp_path / "task-push-links.png")
        card = _click_link(page, "Model card", tmp_path / "model-card.png")
        assert card.evaluate("document.contentType") == "text/html"
        card.get_by_role("heading", name=re.compile("Model card")).first.wait_for()
        card_text = browser.text(card)
        _task_details(page, api.url, "cross_sell_scoring", scoring, "score", tmp_path / "task-score-links.png")
        _task_details(page, api.url, "cross_sell_monitoring", run_id, "report")
        _click_link(page, "Monitoring page", tmp_path / "monitoring-page.png")
        assert page.errors == [], page.errors  # the UI's console, through all of it
    assert "Fairness" in card_text and "#" not in card_text.split("\n", 1)[0], card_text[:500]  # rendered, not markdown


def _registry(env: dict):
    import boto3

    from cross_sell.settings import Settings
    from cross_sell.storage.registry import ModelRegistry
    from cross_sell.storage.signing import ManifestVerifier

    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    settings = Settings()
    return ModelRegistry(s3, settings.s3_bucket, settings.s3_prefix,
                         ManifestVerifier.from_file(env["CROSS_SELL_SIGNING_PUBLIC_KEY"]))


# A blessed run that asks for approval: the twin of the champion (same data, same seed) passes this deployment's
# zero margin (CROSS_SELL_PROMOTION_MARGIN=0 above).
APPROVAL_RUN = {"require_approval": True, "min_rows": 500}


def _awaiting_approval(api, conf: dict) -> str:
    run_id = api.trigger(DAG_ID, conf)
    api.wait_for_state(DAG_ID, run_id, "approve", ("awaiting_input",), scaled(400), settle=scaled(5))
    return run_id


def test_a_push_waits_for_a_named_approver(readme_section):
    """Issue #23: with require_approval, the human-in-the-loop task shows the decision and waits; the REST
    API's answer (as the UI's Required Actions page sends it) by the reviewer pushes, and the approver is in
    the signed manifest and the audit record."""
    api, _, _, env, reviewer = readme_section
    registry = _registry(env)
    before = registry.champion()
    assert before is not None  # the README run above pushed the first champion
    run_id = _awaiting_approval(api, APPROVAL_RUN)
    detail = api.hitl(DAG_ID, run_id, "approve")
    body = detail.body
    assert detail.options == ["Approve", "Reject"] and detail.responded_by_user is None
    assert [user.name for user in detail.assigned_users] == ["reviewer"]
    for shown in ("Decision: BLESS", f"vs champion {text(before.version)}", "| roc_auc |", "| Gender |", "| Age |",
                  "**Drift:**", "[evaluation report](http", "[model card](http"):
        assert shown in body, (shown, body)
    answer = reviewer.respond(DAG_ID, run_id, "approve", "Approve", "figures and fairness checked")
    assert answer.responded_by.name == "reviewer"
    finished = api.wait_for_run(DAG_ID, run_id, scaled(300))
    states = api.states(DAG_ID, run_id)
    assert finished.state.value == "success" and states["push"] == "success", states
    champion = registry.champion()
    assert champion.version != before.version and champion.pointer["run_id"] == run_id
    approval = registry.manifest(champion.version)["approval"]
    assert (approval["approved_by"], approval["comment"]) == ("reviewer", "figures and fairness checked")
    assert champion.pointer["by"] == "reviewer" and champion.pointer["note"]["approval"] == approval
    assert registry.history()[-1] == champion.pointer  # the audit record says the same
    assert "approved by reviewer: 'figures and fairness checked'" in api.log(DAG_ID, run_id, "approve", 1)


def test_a_rejection_or_no_answer_pushes_nothing(readme_section):
    api, tmp_path, _, env, reviewer = readme_section
    registry = _registry(env)
    before = registry.champion()
    run_id = _awaiting_approval(api, APPROVAL_RUN)
    reviewer.respond(DAG_ID, run_id, "approve", "Reject", "wait for the Q4 data")
    finished = api.wait_for_run(DAG_ID, run_id, scaled(300))
    states = api.states(DAG_ID, run_id)
    assert finished.state.value == "success", states
    assert (states["approve"], states["push"]) == ("success", "skipped")
    assert "rejected by reviewer: 'wait for the Q4 data'" in api.log(DAG_ID, run_id, "approve", 1)
    assert registry.champion().version == before.version

    run_id = _awaiting_approval(api, APPROVAL_RUN)  # nobody answers; meanwhile, what the reviewer sees:
    if browser.missing() is None:  # the request's body on the task's Required Action page
        with browser.page([browser.token_cookie(api.url, api.token())]) as page:
            page.goto(f"{api.url}/dags/{DAG_ID}/runs/{run_id}/tasks/approve/required_actions")
            page.get_by_text("equalized-odds").first.wait_for(timeout=scaled(90) * 1000)
            shown = browser.text(page)
            page.screenshot(path=tmp_path / "approval-page.png", full_page=True)
            print(f"approval page screenshot: {tmp_path / 'approval-page.png'}")
            # The form's model-card link opens the card rendered as HTML (issue #32: it served raw markdown).
            card = page.get_by_role("link", name="model card")
            with page.context.expect_page() as opened:
                card.click()
            card_page = opened.value
            card_page.wait_for_load_state()
            card_page.get_by_role("heading", name=re.compile("Model card")).first.wait_for()
            card_page.screenshot(path=tmp_path / "approval-model-card.png", full_page=True)
            print(f"model card from the approval form: {tmp_path / 'approval-model-card.png'}")
            assert card_page.evaluate("document.contentType") == "text/html" and card_page.errors == []
        assert "Approve" in shown and "Reject" in shown and "Gender" in shown, shown[:3000]
    finished = api.wait_for_run(DAG_ID, run_id, APPROVAL_TIMEOUT_SECONDS + scaled(300))
    states = api.states(DAG_ID, run_id)
    assert finished.state.value == "success", states
    assert (states["approve"], states["push"]) == ("success", "skipped")
    detail = api.hitl(DAG_ID, run_id, "approve")
    assert detail.chosen_options == ["Reject"] and detail.responded_by_user is None  # the timeout's default
    assert "no answer within the response timeout" in api.log(DAG_ID, run_id, "approve", 1)
    assert registry.champion().version == before.version


def test_a_rollback_through_airflow_records_the_user_and_rescores(readme_section):
    """Issue #23: the rollback DAG, triggered through the REST API, names the user in the audit record and
    emits the champion Asset: scoring runs again with the restored model."""
    api, _, _, env, _ = readme_section
    registry = _registry(env)
    current = registry.champion()
    previous = current.pointer["previous_version"]
    scoring_before = len(api.runs("cross_sell_scoring"))
    with pytest.raises(ApiException) as refused:
        api.trigger("cross_sell_rollback", {"version": previous})  # no reason
    assert refused.value.status == 400
    run_id = api.trigger("cross_sell_rollback", {"version": previous, "reason": "drill: the approved twin"})
    assert api.wait_for_run("cross_sell_rollback", run_id, scaled(300)).state.value == "success"
    restored = registry.champion()
    assert (restored.version, restored.pointer["by"], restored.pointer["action"]) == (previous, "admin", "rollback")

    def rescored():
        runs = api.runs("cross_sell_scoring", order_by=["-run_after"])
        newest = runs[0] if len(runs) > scoring_before else None
        if newest is None or newest.state.value not in ("success", "failed"):
            return None
        return newest if f"scored 5,000 customers with {previous}" in api.log(
            "cross_sell_scoring", newest.dag_run_id, "score", 1) else None

    scoring = api.wait(rescored, scaled(400), f"a scoring run with the restored {previous}", every=2.0)
    assert scoring.state.value == "success" and scoring.run_type.value == "asset_triggered", scoring


def _validated(event: dict):
    """The event rebuilt with the openlineage-python client's models (what a receiver such as Marquez
    parses): the run event, its run, job and datasets, and the dataset facets this project sets. A field
    of the wrong type or a missing one raises; re-serialised, the dataset facets must be what was sent."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.generated import (
        data_quality_assertions_dataset,
        data_quality_metrics_dataset,
        dataset_version_dataset,
        schema_dataset,
    )
    from openlineage.client.serde import Serde

    def facet(name: str, value: dict):
        clean = {k: v for k, v in value.items() if not k.startswith("_")}
        if name == "schema":
            return schema_dataset.SchemaDatasetFacet(fields=[schema_dataset.SchemaDatasetFacetFields(
                name=f["name"], type=f.get("type")) for f in clean["fields"]])
        if name == "version":
            return dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=clean["datasetVersion"])
        if name == "dataQualityAssertions":
            return data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(assertions=[
                data_quality_assertions_dataset.Assertion(**a) for a in clean["assertions"]])
        if name == "dataQualityMetrics":
            return data_quality_metrics_dataset.DataQualityMetricsDatasetFacet(
                rowCount=clean.get("rowCount"), columnMetrics={})
        return None

    def datasets(kind, items):
        built = []
        for item in items or []:
            facets = {n: f for n, v in (item.get("facets") or {}).items() if (f := facet(n, v)) is not None}
            for name, rebuilt in facets.items():
                sent = {k: v for k, v in item["facets"][name].items() if not k.startswith("_")}
                again = {k: v for k, v in Serde.to_dict(rebuilt).items() if not k.startswith("_")}
                assert again == {k: v for k, v in sent.items() if k in again}, (item["name"], name, sent, again)
            built.append(kind(namespace=item["namespace"], name=item["name"], facets=facets))
        return built

    return RunEvent(eventType=RunState(event["eventType"]), eventTime=event["eventTime"],
                    run=Run(runId=event["run"]["runId"]), job=Job(namespace=event["job"]["namespace"],
                                                                  name=event["job"]["name"]),
                    producer=event["producer"], inputs=datasets(InputDataset, event.get("inputs")),
                    outputs=datasets(OutputDataset, event.get("outputs")))


def test_openlineage_events_describe_the_training_and_scoring_runs(readme_section, lineage_receiver):
    """Issue #23: every task of the README's training and scoring runs reports, through the OpenLineage
    provider, what it read and wrote, named by the OpenLineage naming spec, with schema, version and
    data-quality facets; every event the receiver got parses with the client's models."""
    api, tmp_path, _, env, _ = readme_section
    events = list(lineage_receiver.events)
    (tmp_path / "openlineage-events.json").write_text(json.dumps(events, indent=1))  # to read when this fails
    assert events, "the OpenLineage provider sent nothing"
    for event in events:
        _validated(event)

    def completed(dag_id: str, run_id: str) -> dict[str, dict]:
        found = {}
        for event in events:
            airflow = event["run"]["facets"].get("airflow", {})
            if event["eventType"] == "COMPLETE" and airflow.get("dagRun", {}).get("run_id") == run_id:
                found[event["job"]["name"].split(".", 1)[1] if "." in event["job"]["name"] else ""] = event
        return found

    bucket, prefix, mongo = "s3://cross-sell", "vehicle-insurance", "insurance"
    training = completed(DAG_ID, README_RUN["training"])
    names = {task: ({d["name"] for d in e.get("inputs", [])}, {d["name"] for d in e.get("outputs", [])})
             for task, e in training.items()}
    extract = training["extract"]
    assert names["extract"][0] == {f"{mongo}.customers", f"{mongo}.erased_customers"}  # + the suppression list
    assert all(d["namespace"].startswith("mongodb://127.0.0.1:") for d in extract["inputs"])
    snapshot = next(d for d in extract["outputs"] if d["name"].endswith("/raw/snapshot.parquet"))
    assert snapshot["namespace"] == bucket
    assert snapshot["facets"]["dataQualityMetrics"]["rowCount"] == 5000
    assert {f["name"] for f in snapshot["facets"]["schema"]["fields"]} == set(schema.column_names(schema.TRAINING))
    checked = next(d for d in training["validate"]["inputs"] if d["name"] == snapshot["name"])
    assertions = checked["facets"]["dataQualityAssertions"]["assertions"]
    assert len(assertions) == expectation_count() and all(a["success"] for a in assertions)
    assert {"Gender", "Age"} <= {a.get("column") for a in assertions}
    assert checked["facets"]["version"] == snapshot["facets"]["version"]  # the same bytes (sha256)
    splits = {n for n in names["transform"][1] if "/features/" in n}
    assert len(splits) == 3 and names["transform"][0] == {snapshot["name"]}
    assert splits <= names["train"][0] and any(n.endswith("model/model.onnx") for n in names["train"][1])
    version = api.log(DAG_ID, README_RUN["training"], "push", 1).split("champion is now ", 1)[1].split()[0]
    model = f"{prefix}/models/{version}"
    assert model in names["push"][1] and f"{prefix}/champion.json" in names["push"][1]  # + the champion Asset

    scoring = completed("cross_sell_scoring", README_RUN["scoring"])
    assert {f"{mongo}.customers", model} <= {d["name"] for d in scoring["score"]["inputs"]}
    scores = next(d for d in scoring["score"]["outputs"] if d["name"].endswith("scores.parquet"))
    assert scores["facets"]["dataQualityMetrics"]["rowCount"] == 5000
    assert any(d["name"].endswith("campaign.csv") for d in scoring["campaign"]["outputs"])
    assert f"{mongo}.customer_scores" in {d["name"] for d in scoring["publish"]["outputs"]}
    assert scores["name"] in {d["name"] for d in scoring["publish"]["inputs"]}
