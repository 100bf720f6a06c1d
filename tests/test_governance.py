"""Customer data an insurer may lawfully keep (issue #22): retention, and what enforces it.

Erasure through Airflow is in tests/test_dag_runs.py (it needs the full stack's runs), consent in
tests/test_scoring.py, the housekeeping user's rights in tests/test_s3_policies.py, encryption at rest in
tests/test_stages.py.
"""

import json
import time
from datetime import datetime, timezone

import pytest

from cross_sell.privacy import retention
from cross_sell.storage.registry import ModelRegistry
from devstack import local_services
from serving_support import PREFIX

SECOND = 1 / 86400  # retention periods are in days


def _put(s3, bucket, key, body=b"x"):
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/{key}", Body=body)


@pytest.fixture
def aged(s3, bucket, signer, verifier):
    """Runs, scoring runs, samples and monitoring days, some written 3 s before `now`, some after."""
    registry = ModelRegistry(s3, bucket, PREFIX, verifier)
    for run in ("run-a", "run-b", "run-d"):
        for name in ("raw/snapshot.parquet", "features/train.parquet", "model/model.onnx"):
            _put(s3, bucket, f"runs/{run}/{name}")
    _put(s3, bucket, "runs/run-a/raw/snapshot.parquet", b"an older version too")  # a noncurrent version
    for run in ("score-1", "score-2"):
        for name in ("scores.parquet", "campaign.csv", "quarantine.jsonl"):
            _put(s3, bucket, f"scores/{run}/{name}")
        time.sleep(1.1)  # S3 times are to the second: score-2 is the later one
    _put(s3, bucket, "serving-samples/date=2026-01-01/1.jsonl")
    _put(s3, bucket, "monitoring/daily/2026-01-01.json")
    for version, run in (("v1", "run-b"), ("v2", "run-d")):
        registry.publish({"version": version, "run_id": run, "metrics": {}}, {"model.onnx": b"onnx"}, signer)
    registry.set_champion("v1", None, "promote", signer, run_id="run-b")
    time.sleep(3)
    now = datetime.now(timezone.utc)
    _put(s3, bucket, "runs/run-c/raw/snapshot.parquet")  # new: kept by age
    _put(s3, bucket, "serving-samples/date=2026-12-01/1.jsonl")
    return registry, now


def test_retention_plans_by_class_age_and_the_models_that_need_their_data(aged, s3, bucket):
    registry, now = aged
    policy = retention.Policy(runs_days=SECOND, scores_days=SECOND, samples_days=SECOND, reports_days=SECOND,
                              keep_versions=1)
    planned = retention.plan(s3, bucket, PREFIX, registry, policy, now=now)
    units = {(d.data_class, d.unit) for d in planned.deletions}
    assert units == {("runs", "run-a"), ("scores", "score-1"), ("serving_samples", "date=2026-01-01"),
                     ("reports", "2026-01-01.json")}
    assert planned.kept == {"runs/run-b": "trained the champion v1", "runs/run-d": "trained a recent version, v2",
                            "scores/score-2": "the latest scoring run (monitoring joins outcomes with it)"}
    run_a = next(d for d in planned.deletions if d.unit == "run-a")
    assert len(run_a.versions) == 4  # three files, one of them with an older version: every version goes
    # Nothing is old enough under the default policy.
    assert retention.plan(s3, bucket, PREFIX, registry, retention.Policy(), now=now).deletions == []


def test_retention_apply_deletes_every_version_and_keeps_a_record(aged, s3, bucket):
    registry, now = aged
    policy = retention.Policy(runs_days=SECOND, scores_days=SECOND, samples_days=SECOND, reports_days=SECOND,
                              keep_versions=0)  # only the champion's data stays
    record = retention.apply(s3, bucket, PREFIX, retention.plan(s3, bucket, PREFIX, registry, policy, now=now),
                             by="test")
    left = {v["Key"] for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=PREFIX)
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])}
    assert not any(k.startswith((f"{PREFIX}/runs/run-a/", f"{PREFIX}/runs/run-d/", f"{PREFIX}/scores/score-1/"))
                   for k in left)
    assert {f"{PREFIX}/runs/run-b/raw/snapshot.parquet", f"{PREFIX}/runs/run-c/raw/snapshot.parquet",
            f"{PREFIX}/scores/score-2/scores.parquet", f"{PREFIX}/models/v1/model.onnx"} <= left
    assert record["delete"]["runs"]["units"] == ["run-a", "run-d"] and record["deleted_object_versions"] == 12
    saved = json.loads(s3.get_object(Bucket=bucket, Key=record["record_key"])["Body"].read())
    assert saved["kept_because"]["runs/run-b"] == "trained the champion v1"
    assert registry.manifest("v1")  # the registry is untouched


def test_lifecycle_rules_are_the_policy_and_minio_init_installs_them(s3_server):
    """The lifecycle configuration (what S3 enforces by age alone) is generated from the same policy;
    compose's minio-init installs docker/minio/lifecycle.json, which must be exactly that with the defaults.
    moto stores and returns it (it does not run lifecycle expiry)."""
    from support import ROOT

    rules = retention.lifecycle_rules(retention.Policy(), "vehicle-insurance")
    template = (ROOT / "docker" / "minio" / "lifecycle.json").read_text()
    for name, days in (("SCORES", 90), ("SAMPLES", 30), ("REPORTS", 400)):
        template = template.replace(f'"@{name}_DAYS@"', str(days))
    assert json.loads(template.replace("@PREFIX@", "vehicle-insurance")) == rules
    client = local_services.s3_client_for(s3_server)
    client.create_bucket(Bucket="lifecycle-rules")
    client.put_bucket_lifecycle_configuration(Bucket="lifecycle-rules", LifecycleConfiguration=rules)
    stored = client.get_bucket_lifecycle_configuration(Bucket="lifecycle-rules")["Rules"]
    assert {r["ID"] for r in stored} == {r["ID"] for r in rules["Rules"]}
    by_id = {r["ID"]: r for r in stored}
    assert by_id["cross-sell-serving-samples"]["Expiration"]["Days"] == 30
    assert by_id["cross-sell-runs-older-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1
    assert "Expiration" not in by_id["cross-sell-runs-older-versions"]  # current runs: the housekeeping DAG's


@pytest.fixture
def cli_env(monkeypatch, s3_env, bucket):
    from support import SIGNING_KEY

    monkeypatch.setenv("CROSS_SELL_S3_BUCKET", bucket)
    monkeypatch.setenv("CROSS_SELL_S3_PREFIX", PREFIX)
    monkeypatch.setenv("CROSS_SELL_SIGNING_KEY", str(SIGNING_KEY))
    monkeypatch.setenv("CROSS_SELL_RETENTION_KEEP_VERSIONS", "1")
    return bucket


def _served(registry, signer, versions, frames=None):
    """Versions trained on recorded runs (`runs/run-<version>/`), each champion in turn."""
    from serving_support import publish_from_run

    for version in versions:
        publish_from_run(registry, version, f"run-{version}", signer, frame=(frames or {}).get(version))
        current = registry.champion()
        registry.set_champion(version, current.etag if current else None, "promote", signer, run_id=f"r-{version}")


def _cli(capsys, *argv):
    from cross_sell.__main__ import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_retention_and_rollback_agree_on_what_stays_restorable(cli_env, s3, signer, verifier, monkeypatch, capsys):
    """Issue #30, break 7: at +120 days housekeeping deleted the runs (snapshot, splits) of a version that
    rollback still accepted without `force`, and `reproduce` of it then failed. One rule now decides what stays
    restorable: retention keeps the runs of every version it keeps, and rollback refuses what it no longer
    keeps, naming why."""
    registry = ModelRegistry(s3, cli_env, PREFIX, verifier)
    _served(registry, signer, ("v1", "v2", "v3"))
    monkeypatch.setenv("CROSS_SELL_RETENTION_RUNS_DAYS", "0")  # every run is now past its time: "+120 days"
    code, _, err = _cli(capsys, "champion", "rollback", "v2", "--by", "alice", "--reason", "drill")
    assert code == 2 and "has a training run (runs/run-v2) older than 0 days that no kept model needs" in err
    code, out, _ = _cli(capsys, "retention", "plan")
    planned = json.loads(out)
    assert planned["restorable"] == {} and planned["delete"]["runs"]["units"] == ["run-v1", "run-v2"]
    assert planned["kept_because"] == {"runs/run-v3": "trained the champion v3; a recent version, v3"}
    monkeypatch.delenv("CROSS_SELL_RETENTION_RUNS_DAYS")  # the default 90 days: every run is young
    code, out, _ = _cli(capsys, "retention", "plan")
    planned = json.loads(out)
    assert code == 0 and set(planned["restorable"]) == {"v1", "v2"} and "runs" not in planned["delete"]
    monkeypatch.setenv("CROSS_SELL_RETENTION_RUNS_DAYS", "0")
    assert _cli(capsys, "retention", "apply")[0] == 0
    code, _, err = _cli(capsys, "champion", "rollback", "v1", "--by", "alice", "--reason", "drill")
    assert code == 2 and "v1 has lost its training run runs/run-v1, so it is not restorable" in err
    code, _, err = _cli(capsys, "reproduce", "v1")  # what an accepted rollback would have led to
    assert code == 2 and "raw/snapshot.parquet" in err
    assert registry.champion().version == "v3"
    code, out, _ = _cli(capsys, "champion", "rollback", "v1", "--by", "alice", "--reason", "decided", "--force")
    assert code == 0 and json.loads(out)["note"] == {"forced": True}


def test_a_version_trained_on_customers_erased_since_is_not_restorable(cli_env, s3, signer, verifier, mongo_db,
                                                                       monkeypatch, capsys, tmp_path):
    """The restorable rule's last clause: an erasure receipt naming a version (its snapshot held an erased
    customer, now rewritten) takes it out of what a rollback restores without `force`."""
    from cross_sell.data import synthetic
    from cross_sell.privacy.suppression import make_key

    monkeypatch.setenv("CROSS_SELL_MONGO_DATABASE", mongo_db.name)
    monkeypatch.setenv("MONGO_URI", f"mongodb://{mongo_db.client.address[0]}:{mongo_db.client.address[1]}")
    monkeypatch.setenv("CROSS_SELL_ERASURE_KEY_FILE", str(make_key(tmp_path / "erasure.key")))
    registry = ModelRegistry(s3, cli_env, PREFIX, verifier)
    _served(registry, signer, ("v1", "v2", "v3"), frames={"v1": synthetic.generate(30, seed=1, first_id=1),
                                                          "v2": synthetic.generate(30, seed=2, first_id=100),
                                                          "v3": synthetic.generate(30, seed=3, first_id=200)})
    (tmp_path / "ids.txt").write_text("5\n")
    code, out, err = _cli(capsys, "erase", "--ids-file", str(tmp_path / "ids.txt"), "--reason", "ticket 9",
                          "--by", "dpo")
    assert code == 0, err
    assert json.loads(out)["models_trained_on_their_data"] == ["v1"]
    code, _, err = _cli(capsys, "champion", "rollback", "v1", "--by", "alice", "--reason", "drill")
    assert code == 2 and "v1 was trained on customers erased since (erasure receipt 1)" in err
    code, out, _ = _cli(capsys, "retention", "plan")
    assert set(json.loads(out)["restorable"]) == {"v2"}
    assert _cli(capsys, "champion", "rollback", "v2", "--by", "alice", "--reason", "drill")[0] == 0
