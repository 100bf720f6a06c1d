"""Full `dag.test()` runs of the real DAG against local MongoDB-wire and S3 servers.

The scenarios share one database, bucket and Airflow metadata DB (a module's stack: a training run costs a
minute), and each sets up what it needs: a scenario that needs a champion or a scoring run asks for the
`champion` or `scored` fixture, which makes one only if no earlier scenario has. So each runs alone
(`-k`), and in file order they also tell a story (first run pushes, second does not, corrupted data fails).
"""

import json

import pytest

import cross_sell
from cross_sell.data import loader, synthetic
from cross_sell.model import model_input
from support import SIGNING_KEY, dag_run_stack, parse_dags

pytestmark = pytest.mark.dagrun
ROWS = 8_000


@pytest.fixture(scope="module")
def stack(mongo_server, s3_server):
    with dag_run_stack(mongo_server, s3_server, ROWS, seed=101) as stack:
        yield stack


@pytest.fixture(scope="module")
def parsed_dag(stack):
    return parse_dags().dags["cross_sell_training"]


@pytest.fixture
def dag(parsed_dag):
    """A copy per test: `dag.test(run_conf=...)` keeps the conf in the DAG's params, for the next run too."""
    import copy

    return copy.deepcopy(parsed_dag)


@pytest.fixture
def champion(stack, parsed_dag):
    """The champion: the one an earlier scenario pushed, or one a training run pushes now."""
    import copy

    registry = stack["registry"]
    if registry.champion() is None:
        run = copy.deepcopy(parsed_dag).test()
        assert str(run.state) == "success", _states(run)
    return registry.champion()


@pytest.fixture
def scored(stack, champion):
    """The customers scored by the champion (`customer_scores` and a scoring run's Asset event)."""
    scores = stack["collection"].database[stack["settings"].scores_collection]
    if scores.estimated_document_count() == 0:
        run = parse_dags().dags["cross_sell_scoring"].test()
        assert str(run.state) == "success", _states(run)
    return champion


def _states(dag_run) -> dict:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def _artifact(stack, run_id, *parts):
    from cross_sell.storage.artifacts import RunArtifacts

    registry = stack["registry"]
    artifacts = RunArtifacts(registry.s3, registry.bucket, stack["settings"].s3_prefix, run_id)
    return artifacts.get_json(artifacts.key(*parts))


def test_before_the_first_champion_scoring_and_monitoring_skip_and_alert_nobody(stack, alert_sink):
    """Issue #21: on a fresh start, scoring and monitoring failed ("no champion yet") and alerted. No
    champion yet is not a failure: their tasks are skipped with the reason, the runs succeed."""
    bag = parse_dags()
    for dag_id in ("cross_sell_scoring", "cross_sell_monitoring"):
        run = bag.dags[dag_id].test()
        states = _states(run)
        assert str(run.state) == "success" and set(states.values()) == {"skipped"}, (dag_id, states)
    assert alert_sink == []


def test_first_run_pushes_a_champion(stack, dag):
    assert stack["registry"].champion() is None
    run = dag.test(run_conf={"min_roc_auc": 0.75})
    assert str(run.state) == "success", _states(run)
    states = _states(run)
    assert states.pop("shadow") == "skipped"  # no champion yet: nothing to be a challenger to
    # require_approval is off by default (on in compose): no approval task, the push runs on the decision
    assert (states.pop("describe_for_approval"), states.pop("approve")) == ("skipped", "skipped")
    assert set(states.values()) == {"success"}
    champion = stack["registry"].champion()
    assert champion is not None and champion.pointer["run_id"] == run.run_id
    manifest = stack["registry"].manifest(champion.version)
    assert manifest["approval"] is None and champion.pointer["by"] == f"run {run.run_id}"
    # Fairness (issue #23), measured on the test split and kept in the signed manifest.
    assert set(manifest["fairness"]) == {"Gender", "Age"}
    assert 0 <= manifest["fairness"]["Gender"]["equalized_odds_difference"] <= manifest["max_equalized_odds_difference"]
    assert (manifest["seed"], manifest["excluded_features"]) == (42, [])
    extracted = _artifact(stack, run.run_id, "raw", "snapshot.json")
    assert manifest["rows"] == extracted["rows"] == ROWS
    assert manifest["data_fingerprint"] == extracted["fingerprint"]
    assert manifest["metrics"]["roc_auc"] >= 0.75
    assert set(manifest["library_versions"]) >= {"scikit-learn", "pandas", "python"}
    assert manifest["code_version"].startswith(cross_sell.__version__)
    served, _ = stack["registry"].served_model(champion.version)  # signed, verified, and it answers
    assert 0.0 <= served.probability(model_input.example())[0] <= 1.0
    from cross_sell.operations.reproduce import reproduce  # issue #23: the DAG's champion, rebuilt from its manifest

    rebuilt = reproduce(stack["registry"], champion.version)
    assert rebuilt["identical"] and rebuilt["onnx_sha256"]["identical"], rebuilt


def test_identical_second_run_keeps_the_champion(stack, dag, champion):
    before = stack["registry"].champion()
    run = dag.test()
    states = _states(run)
    assert str(run.state) == "success", states
    assert states["should_push"] == "success" and states["push"] == "skipped"
    assert states["shadow"] == "skipped"  # the champion's twin is no challenger
    decision = _artifact(stack, run.run_id, "evaluation", "decision.json")
    assert decision["bless"] is False and decision["champion_version"] == before.version
    # Same data, same seed: the candidate is the champion's twin, scored on the same test split.
    assert decision["candidate"]["roc_auc"] == pytest.approx(decision["champion"]["roc_auc"])
    after = stack["registry"].champion()
    assert (after.version, after.etag) == (before.version, before.etag)


def test_rollback_dag_restores_a_served_version_and_refuses_one_that_never_served(stack, signer, monkeypatch,
                                                                                  champion):
    """Issue #23: rollback through Airflow. Only a version that served before (not a never-promoted one, not
    the current shadow) unless `force`; the audit record names the run and its user; the champion Asset is
    its outlet, so scoring follows. Issue #30: only the policy's rollback operators may."""
    import copy

    from serving_support import publish, train_model

    registry = stack["registry"]
    original = registry.champion()
    rollback = parse_dags().dags["cross_sell_rollback"]
    refused = copy.deepcopy(rollback).test(run_conf={"version": original.version, "reason": "not an operator"})
    assert str(refused.state) == "failed" and _states(refused)["check_operator"] == "failed"
    monkeypatch.setenv("CROSS_SELL_ROLLBACK_OPERATORS", "ops,dag_test")  # dag.test's triggering user
    rollback = parse_dags().dags["cross_sell_rollback"]
    from cross_sell_airflow.assets import asset_name

    assert [o.name for o in rollback.get_task("rollback").outlets] == [asset_name("cross_sell_champion")]
    for version, seed in (("hotfix-1", 2), ("never-served", 3)):
        publish(registry, version, train_model(seed), signer)
    registry.set_champion("hotfix-1", original.etag, "promote", signer, run_id="hotfix", reason="drill")
    registry.set_shadow("never-served", signer, reason="a challenger")

    for version in ("never-served", "no-such-version"):
        refused = copy.deepcopy(rollback).test(run_conf={"version": version, "reason": "drill"})
        assert str(refused.state) == "failed" and registry.champion().version == "hotfix-1", version

    run = copy.deepcopy(rollback).test(run_conf={"version": original.version, "reason": "hotfix-1 misbehaves"})
    assert str(run.state) == "success", _states(run)
    restored = registry.champion()
    assert restored.version == original.version
    record = registry.history()[-1]
    assert record == restored.pointer
    assert (record["action"], record["run_id"], record["by"], record["previous_version"], record["reason"]) == (
        "rollback", run.run_id, "dag_test", "hotfix-1", "hotfix-1 misbehaves")  # dag.test's triggering user
    registry.clear_shadow(signer)


def test_splits_poisoned_between_tasks_fail_the_run_and_nothing_is_pushed(stack, dag, champion, monkeypatch,
                                                                         alert_sink):
    """Issue #20's first break, through Airflow: the splits relabelled in the bucket after `transform`
    (age >= 60 -> buyer) were trained on, blessed and signed. Now `train` refuses them, naming the key and
    both hashes, at once (no retry), and someone is told."""
    import io

    import pandas as pd

    from cross_sell.operations import training as stages

    before = stack["registry"].champion()
    real_train = stages.train

    def poison_then_train(artifacts, transformed, *args, **kwargs):
        for split in transformed["splits"].values():  # what a bucket writer does between two tasks
            frame = pd.read_parquet(io.BytesIO(artifacts.s3.get_object(Bucket=artifacts.bucket,
                                                                       Key=split["key"])["Body"].read()))
            frame.loc[frame["Age"] >= 60, "Response"] = 1
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            artifacts.s3.put_object(Bucket=artifacts.bucket, Key=split["key"], Body=buffer.getvalue())
        return real_train(artifacts, transformed, *args, **kwargs)

    monkeypatch.setattr(stages, "train", poison_then_train)
    monkeypatch.setenv("CROSS_SELL_PROMOTION_MARGIN", "0")  # this deployment's policy lets a twin win
    run = dag.test(run_conf={"promotion_margin": 0.0})
    states = _states(run)
    assert str(run.state) == "failed" and states["train"] == "failed", states
    assert {states[t] for t in ("evaluate", "should_push", "push")} == {"upstream_failed"}
    after = stack["registry"].champion()
    assert (after.version, after.etag) == (before.version, before.etag)
    [sent] = [a for a in alert_sink if a["task_id"] == "train"]
    assert "CustodyError" in sent["reason"] and "features/train.parquet is not the object" in sent["reason"]
    assert sent["try_number"] == 1  # failed at once: retrying cannot make the file the recorded one


def test_corrupted_data_fails_at_validation_and_keeps_the_champion(stack, dag, champion, capfd, alert_sink):
    """The run stops at `validate`; its log and alert name what failed, quote the unexpected values of a column
    that is not personal (Vehicle_Age) and never a value of the key or of a personal column (issue #30)."""
    before = stack["registry"].champion()
    collection = stack["collection"]
    changes = {10: {"Age": "forty"}, 11: {"Gender": "Gender-of-customer-11"}, 12: {"Annual_Premium": None},
               13: {"id": -987654}, 14: {"Vehicle_Age": "Robot"}}
    for doc_id, change in changes.items():
        collection.update_one({"_id": doc_id}, {"$set": change})
    try:
        run = dag.test()
    finally:
        original = synthetic.generate(ROWS, seed=101).set_index("id")
        for doc_id, change in changes.items():
            restored = {field: doc_id if field == "id" else original.loc[doc_id, field] for field in change}
            collection.update_one({"_id": doc_id}, {"$set": {k: v.item() if hasattr(v, "item") else v
                                                             for k, v in restored.items()}})
    states = _states(run)
    assert str(run.state) == "failed"
    assert states["extract"] == "success" and states["validate"] == "failed"
    assert {states[t] for t in ("transform", "train", "evaluate", "should_push", "push")} == {"upstream_failed"}
    summary = _artifact(stack, run.run_id, "validation", "summary.json")
    failed = " ".join(f["expectation"] + " " + f["detail"] for f in summary["failures"])
    assert "'Robot' (1)" in failed and "not_be_null(Annual_Premium)" in failed
    assert "in_set(Gender)" in failed and "between(id)" in failed and "be_null(_invalid_values)" in failed
    task_log = capfd.readouterr().out  # dag.test() streams task logs to stdout
    assert "failed validation" in task_log and "'Robot'" in task_log
    # Someone is told: the alert webhook got the failed task, its run, the reason and a link to its log.
    [sent] = alert_sink
    for text in (json.dumps(summary), task_log, sent["reason"]):
        assert "forty" not in text and "customer-11" not in text and "987654" not in text
    after = stack["registry"].champion()
    assert (after.version, after.etag) == (before.version, before.etag)
    assert (sent["kind"], sent["dag_id"], sent["run_id"], sent["task_id"]) == \
        ("task_failed", "cross_sell_training", run.run_id, "validate")
    assert "failed validation" in sent["reason"] and "Robot" in sent["reason"]
    assert "/dags/cross_sell_training/runs/" in sent["log_url"] and "/tasks/validate" in sent["log_url"]


def test_a_drift_warning_reaches_the_alert_target_and_the_run_goes_on(stack, dag, alert_sink):
    collection = stack["collection"]
    original = list(collection.find({"_id": {"$lte": 4_000}}, {"_id": True, "Age": True}))
    from pymongo import UpdateOne

    collection.bulk_write([UpdateOne({"_id": d["_id"]}, {"$set": {"Age": min(d["Age"] + 25, 100)}}) for d in original])
    try:
        run = dag.test(run_conf={"drift_action": "warn"})
    finally:
        collection.bulk_write([UpdateOne({"_id": d["_id"]}, {"$set": {"Age": d["Age"]}}) for d in original])
    states = _states(run)
    assert states["check_drift"] == "success" and states["train"] == "success"
    drift = [a for a in alert_sink if a["kind"] == "drift_warning"]
    assert len(drift) == 1 and drift[0]["task_id"] == "check_drift" and "drift in Age" in drift[0]["reason"]
    assert drift[0]["text"].startswith("[cross-sell] drift warning: cross_sell_training/check_drift")


def test_a_trigger_with_invalid_params_is_refused(dag, stack):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="min_roc_auc"):
        dag.test(run_conf={"min_roc_auc": 5})


@pytest.mark.parametrize("conf", [{"require_approval": False}, {"max_equalized_odds_difference": 1.0},
                                  {"min_roc_auc": 0.5}, {"replace_unreadable_champion": True}],
                         ids=lambda conf: next(iter(conf)))
def test_a_conf_that_loosens_the_policy_fails_the_first_task_naming_the_setting(stack, dag, monkeypatch, alert_sink,
                                                                                conf):
    """Issue #30 break 1: with CROSS_SELL_REQUIRE_APPROVAL=true, `{"require_approval": false}` pushed without
    approval; a fairness cap of 1.0 and a lower floor were accepted too. Now the first task fails at once,
    naming the setting and its value, and nothing else runs."""
    monkeypatch.setenv("CROSS_SELL_REQUIRE_APPROVAL", "true")
    before = stack["registry"].champion()
    run = dag.test(run_conf=conf)
    states = _states(run)
    assert str(run.state) == "failed" and states["extract"] == "failed", states
    assert {states[t] for t in ("train", "evaluate", "push")} == {"upstream_failed"}
    [sent] = alert_sink
    assert sent["try_number"] == 1 and "loosen the deployment policy" in sent["reason"]
    assert f"{next(iter(conf))}=" in sent["reason"] and "CROSS_SELL_" in sent["reason"]
    after = stack["registry"].champion()  # none before the first push: still none
    assert getattr(after, "etag", None) == getattr(before, "etag", None)


def test_a_misspelt_param_fails_the_first_task_at_once_naming_it(stack, dag, champion):
    """Issue #21: `{"min_rocauc": 0.8}` was accepted, ignored, and the run promoted on the default 0.75."""
    before = stack["registry"].champion()
    run = dag.test(run_conf={"min_rocauc": 0.8})
    states = _states(run)
    assert str(run.state) == "failed" and states["extract"] == "failed", states
    assert {states[t] for t in ("train", "evaluate", "push")} == {"upstream_failed"}
    assert stack["registry"].champion().etag == before.etag
    scoring = parse_dags().dags["cross_sell_scoring"]
    assert str(scoring.test(run_conf={"campaign_top": 5}).state) == "failed"


def test_an_unknown_feature_in_the_thresholds_fails_at_once(stack, dag, capfd):
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    dag = copy.deepcopy(dag)  # a run's nested conf can stick to the DAG's params: keep it off the others' DAG
    run = dag.test(run_conf={"drift_thresholds": {"Agee": 0.1}})
    states = _states(run)
    assert states["extract"] == "failed" and states["train"] == "upstream_failed", states  # the first task
    assert "unknown feature(s) ['Agee']; valid: Gender, Age" in capfd.readouterr().out
    with pytest.raises(ParamValidationError, match="drift_thresholds"):  # a limit that is no number: refused
        dag.test(run_conf={"drift_thresholds": {"Age": "high"}})


def test_scoring_dag_scores_every_customer_with_the_champion(stack, champion):
    from cross_sell.storage.artifacts import RunArtifacts

    scoring = parse_dags().dags["cross_sell_scoring"]
    champion = stack["registry"].champion()
    run = scoring.test(run_conf={"campaign_top_n": 50})
    assert str(run.state) == "success", _states(run)
    scores = stack["collection"].database[stack["settings"].scores_collection]
    assert scores.estimated_document_count() == ROWS
    assert scores.find_one({"_id": 1})["model_version"] == champion.version
    artifacts = RunArtifacts(stack["registry"].s3, stack["registry"].bucket, stack["settings"].s3_prefix, run.run_id,
                             area="scores")
    summary = artifacts.get_json(artifacts.key("summary.json"))
    assert summary["rows"] == ROWS and summary["quarantined"] == 0 and len(summary["deciles"]) == 10
    assert "the champion's test-split calibration" in summary["calibration"]
    campaign = artifacts.s3.get_object(Bucket=artifacts.bucket, Key=artifacts.key("campaign.csv"))["Body"].read()
    assert len(campaign.decode().splitlines()) == 51  # header + the top 50


def test_monitoring_dag_measures_the_day_and_alerts_on_a_performance_drop(stack, scored, alert_sink):
    monitoring = parse_dags().dags["cross_sell_monitoring"]
    from datetime import datetime, timezone

    # Outcomes observed today (after the scoring run above), contradicting the scores: realized ROC-AUC
    # far below the floor.
    today = datetime.now(timezone.utc).date().isoformat()
    truth = synthetic.generate(ROWS, seed=101)
    outcomes = stack["collection"].database[stack["settings"].outcomes_collection]
    outcomes.insert_many([{"_id": int(r.id), "id": int(r.id), "Response": 1 - int(r.Response),
                           "observed_at": f"{today}T23:59:00+00:00"} for r in truth.itertuples()])
    run = monitoring.test(run_conf={"day": today})
    assert str(run.state) == "success", _states(run)
    registry = stack["registry"]
    daily = json.loads(registry.s3.get_object(Bucket=registry.bucket,
                                              Key=f"{stack['settings'].s3_prefix}/monitoring/daily/{today}.json")
                       ["Body"].read())
    assert daily["realized"]["outcomes"] == ROWS and daily["realized"]["roc_auc"] < 0.3
    assert any(a["kind"] == "monitoring" and "realized ROC-AUC" in a["reason"] for a in alert_sink)
    page = registry.s3.get_object(Bucket=registry.bucket,
                                  Key=f"{stack['settings'].s3_prefix}/monitoring/report.html")["Body"].read()
    assert b"data:image/png;base64," in page and today.encode() in page


def test_a_pointer_set_back_outside_the_project_is_alerted_by_monitoring(stack, champion, alert_sink):
    """Whoever can write the bucket can put an older signed pointer back (a downgrade): the monitoring DAG
    finds the newer change in the audit log and alerts."""
    from cross_sell.storage.signing import ManifestSigner

    registry = stack["registry"]
    champion = registry.champion()
    signer = ManifestSigner.from_file(SIGNING_KEY)
    registry.set_champion(champion.version, champion.etag, "promote", signer, run_id="drill", reason="drill")
    newest = registry.s3.get_object(Bucket=registry.bucket, Key=registry.pointer_key)["Body"].read()
    registry.s3.put_object(Bucket=registry.bucket, Key=registry.pointer_key, Body=champion.signed)
    try:
        monitoring = parse_dags().dags["cross_sell_monitoring"]
        run = monitoring.test()
    finally:
        registry.s3.put_object(Bucket=registry.bucket, Key=registry.pointer_key, Body=newest)
    assert str(run.state) == "success", _states(run)
    sent = [a for a in alert_sink if a["kind"] == "monitoring" and "downgrade" in a["reason"]]
    assert len(sent) == 1 and f"change {champion.pointer['sequence'] + 1}" in sent[0]["reason"]


def _artifact_of(stack, run_id, name):
    """A scoring run's JSON file."""
    from cross_sell.storage.artifacts import RunArtifacts

    registry = stack["registry"]
    artifacts = RunArtifacts(registry.s3, registry.bucket, stack["settings"].s3_prefix, run_id, area="scores")
    return artifacts.get_json(artifacts.key(name))


def _ids_in(s3, bucket: str, key: str, version_id: str) -> set[int]:
    """Customer ids an object version holds, read independently of the erasure code: Parquet `id` columns,
    CSV `id` columns, JSON lines' `id` fields, and `"id": N` anywhere in a JSON document."""
    import csv
    import io
    import re

    import pyarrow.parquet as pq

    body = s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"].read()
    if key.endswith(".parquet"):
        table = pq.read_table(io.BytesIO(body))
        return set(table.column("id").to_pylist()) if "id" in table.column_names else set()
    text = body.decode("utf-8", "replace")
    if key.endswith(".csv"):
        rows = list(csv.DictReader(io.StringIO(text)))
        return {int(r["id"]) for r in rows if r.get("id", "").isdigit()}
    return {int(m) for m in re.findall(r'"id":\s*(\d+)', text)}


def test_erasure_removes_customers_everywhere_and_they_do_not_come_back(stack, dag, scored, tmp_path, monkeypatch):
    """Issue #22: three customers erased through the cross_sell_erasure DAG: gone from every collection and
    every object version in the bucket, a signed receipt holding no id, and a new load, training run and
    scoring run do not bring them back; the champion still verifies."""
    from cross_sell.privacy.suppression import Suppression, make_key, read_key
    from cross_sell.storage.registry import record_bytes

    registry, settings, collection = stack["registry"], stack["settings"], stack["collection"]
    key_file = make_key(tmp_path / "erasure.key")
    monkeypatch.setenv("CROSS_SELL_ERASURE_KEY_FILE", str(key_file))
    gone = [21, 22, 23]
    database = collection.database
    database[settings.outcomes_collection].insert_many(
        [{"_id": i, "id": i, "Response": 1, "observed_at": "2026-11-30T00:00:00+00:00"} for i in gone],
        ordered=False) if not database[settings.outcomes_collection].find_one({"_id": 21}) else None
    holding = [v for page in registry.s3.get_paginator("list_object_versions").paginate(Bucket=registry.bucket)
               for v in page.get("Versions", [])]
    assert any(set(gone) & _ids_in(registry.s3, registry.bucket, v["Key"], v["VersionId"])
               for v in holding if v["Key"].endswith(".parquet"))  # the runs so far hold them
    request = f"{settings.s3_prefix}/erasure/requests/ticket-4711.txt"
    registry.s3.put_object(Bucket=registry.bucket, Key=request, Body="\n".join(map(str, gone)).encode())
    bag = parse_dags()
    run = bag.dags["cross_sell_erasure"].test(run_conf={"request": request, "reason": "data subject request 4711"})
    assert str(run.state) == "success", _states(run)

    for name in (settings.mongo_collection, settings.scores_collection, settings.outcomes_collection):
        assert database[name].count_documents({"_id": {"$in": gone}}) == 0, name
    versions = [v for page in registry.s3.get_paginator("list_object_versions").paginate(Bucket=registry.bucket)
                for v in page.get("Versions", [])]
    holders = {(v["Key"], v["VersionId"]) for v in versions
               if set(gone) & _ids_in(registry.s3, registry.bucket, v["Key"], v["VersionId"])}
    assert holders == set(), sorted(holders)[:5]
    assert not [v for v in versions if v["Key"] == request]  # the request (the ids) is gone too
    [receipt_key] = [v["Key"] for v in versions if "/erasure/receipts/" in v["Key"]]
    document = json.loads(registry.s3.get_object(Bucket=registry.bucket, Key=receipt_key)["Body"].read())
    receipt = document["record"]
    import base64

    registry.verifier.verify(record_bytes(receipt), base64.b64decode(document["signature"]), "receipt")
    assert receipt["customers"] == 3 and len(receipt["customer_hashes"]) == 3 and receipt["by"]
    assert receipt["reason"] == "data subject request 4711"
    assert receipt["mongodb"][settings.mongo_collection] == {"found": 3, "deleted": 3, "left": 0}
    assert receipt["complete"] is True and receipt["left"]["total"] == 0  # a re-scan's count (issue #30)
    assert {o["action"] for o in receipt["objects"]} <= {"rewritten", "deleted"} and receipt["objects"]
    assert all(o["old_sha256"] != o["new_sha256"] for o in receipt["objects"] if o["action"] == "rewritten")
    champion = registry.champion()
    assert champion.version in receipt["models_trained_on_their_data"]
    assert not any(f'"id": {i}' in json.dumps(receipt) or f": {i}," in json.dumps(receipt) for i in gone)

    # They do not come back: a new load of the same data, a new training run, a new scoring run.
    erased = Suppression.from_collection(database[settings.erased_collection], read_key(key_file))
    reloaded = loader.upsert(collection, synthetic.generate(ROWS, seed=101), progress=False, suppression=erased)
    assert reloaded.suppressed == 3 and collection.count_documents({"_id": {"$in": gone}}) == 0
    collection.insert_one({**collection.find_one({"_id": 24}, {"_id": False}), "_id": 21, "id": 21})  # planted
    monkeypatch.setenv("CROSS_SELL_PROMOTION_MARGIN", "0")  # this deployment's policy lets a twin win
    training = dag.test(run_conf={"promotion_margin": 0.0, "drift_thresholds": {}})
    assert str(training.state) == "success", _states(training)
    snapshot = _artifact(stack, training.run_id, "raw", "snapshot.json")
    assert snapshot["suppressed"] == 1
    assert not set(gone) & _ids_in(registry.s3, registry.bucket, snapshot["snapshot"]["key"],
                                   registry.s3.head_object(Bucket=registry.bucket,
                                                           Key=snapshot["snapshot"]["key"])["VersionId"])
    scoring = bag.dags["cross_sell_scoring"].test()  # the planted customer is still there (issue #30)
    assert str(scoring.state) == "success", _states(scoring)
    assert database[settings.scores_collection].count_documents({"_id": {"$in": gone}}) == 0
    assert _artifact_of(stack, scoring.run_id, "summary.json")["excluded"] == {"erased (suppression list)": 1}
    collection.delete_one({"_id": 21})
    served, _ = registry.served_model(registry.champion().version)  # the champion still verifies and serves
    assert 0 <= served.probability(model_input.example())[0] <= 1
