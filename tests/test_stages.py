"""The stage functions the DAG calls, run directly against the local S3 server."""

import re
import threading
from datetime import datetime, timezone

import pytest
from markupsafe import escape

from cross_sell.data import schema, synthetic
from cross_sell.data.validation import DataValidationError
from cross_sell.errors import NotRetryable
from cross_sell.model import model_input, onnx_export, training
from cross_sell.model.evaluation import Gate, UnreadableChampion
from cross_sell.monitoring import drift
from cross_sell.operations import training as stages
from cross_sell.storage.artifacts import RunArtifacts
from cross_sell.storage.registry import ModelRegistry
from serving_support import promote, publish, train_model
from support import expectation_count

RUN_STARTED = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


RUN_ID = "manual__2026-11-01T12:00:00+00:00"


def _run_up_to_train(s3, bucket: str, verifier, signer) -> dict:
    documents = synthetic.generate(6_000, seed=55).to_dict("records")
    artifacts = RunArtifacts(s3, bucket, "vi", RUN_ID)
    registry = ModelRegistry(s3, bucket, "vi", verifier)
    extracted = stages.extract(documents, artifacts, chunk_rows=2_000)
    validated = stages.validate(artifacts, extracted["snapshot"], min_rows=1_000)
    transformed = stages.transform(artifacts, extracted["snapshot"], seed=3, validated=validated)
    trained = stages.train(artifacts, transformed, seed=3, run_started=RUN_STARTED)
    return {"documents": documents, "artifacts": artifacts, "registry": registry, "extracted": extracted,
            "validated": validated, "transformed": transformed, "trained": trained, "signer": signer}


@pytest.fixture(scope="module")
def template(s3_server, verifier, signer):
    """One run up to `train`, once for the module, in a bucket of its own; `run` hands each test a copy."""
    import uuid

    from devstack import local_services

    s3, name = local_services.s3_client_for(s3_server), f"stages-template-{uuid.uuid4().hex[:8]}"
    local_services.create_bucket(s3_server, name)
    return _run_up_to_train(s3, name, verifier, signer)


@pytest.fixture
def run(template, s3, bucket, verifier, signer):
    """The template run's objects copied into this test's bucket, byte for byte (the sha256 its records
    hold still match), with clients on that bucket: each test changes its own copy."""
    import copy

    from cross_sell.storage import objects

    source = template["artifacts"].bucket
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=source):
        for item in page.get("Contents", []):
            s3.copy_object(Bucket=bucket, Key=item["Key"], CopySource={"Bucket": source, "Key": item["Key"]},
                           **objects.encryption())
    records = {k: copy.deepcopy(v) for k, v in template.items() if k not in ("artifacts", "registry", "signer")}
    return {**records, "artifacts": RunArtifacts(s3, bucket, "vi", RUN_ID),
            "registry": ModelRegistry(s3, bucket, "vi", verifier), "signer": signer}


@pytest.fixture
def fresh_run(s3, bucket, verifier, signer):
    """The run made in this test's bucket, for what must see every object the stages themselves wrote."""
    return _run_up_to_train(s3, bucket, verifier, signer)


def test_artifacts_live_under_the_run_prefix(run, s3, bucket):
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="vi/")["Contents"]]
    assert keys and all(k.startswith("vi/runs/manual__2026-11-01T12_00_00_00_00/") for k in keys)
    assert any(k.endswith("validation/data_docs/index.html") for k in keys)
    assert any(k.endswith("validation/result.json") for k in keys)


def test_transform_splits_only_the_snapshot_validation_passed(run):
    """Issue #31: transform no longer re-checks the rows; it takes validate's sealed verdict instead, and a
    verdict that failed, or that is about another snapshot, splits nothing."""
    artifacts, extracted, validated = run["artifacts"], run["extracted"], run["validated"]
    other = {**extracted["snapshot"], "sha256": "0" * 64}
    for verdict in ({**validated, "success": False}, {**validated, "snapshot": other}, {}):
        with pytest.raises(NotRetryable, match="only the snapshot that validation passed"):
            stages.transform(artifacts, extracted["snapshot"], seed=3, validated=verdict)


def test_rerunning_a_stage_reproduces_its_result(run):
    artifacts = run["artifacts"]
    elsewhere = RunArtifacts(artifacts.s3, artifacts.bucket, "vi", "same-documents-other-order")
    assert stages.extract(reversed(run["documents"]), elsewhere)["fingerprint"] == run["extracted"]["fingerprint"]
    assert stages.extract(run["documents"], artifacts, chunk_rows=2_000) == run["extracted"]  # same bytes
    assert stages.transform(artifacts, run["extracted"]["snapshot"], seed=3, validated=run["validated"]) == \
        run["transformed"]
    again = stages.train(artifacts, run["transformed"], seed=3, run_started=RUN_STARTED)
    assert again == run["trained"]  # same bytes, so the same sha256 and version


def test_evaluate_then_push_then_no_second_push(run, tmp_path):
    artifacts, registry, trained, signer = run["artifacts"], run["registry"], run["trained"], run["signer"]
    test_key = run["transformed"]["splits"]["test"]
    decision = stages.evaluate(artifacts, registry, trained, test_key, Gate(min_roc_auc=0.7, margin=0.002))
    assert decision["bless"] and decision["champion"] is None
    pushed = stages.push(artifacts, registry, decision, trained, run["extracted"], signer)
    assert pushed["pushed"] and registry.champion().version == trained["version"]
    assert stages.push(artifacts, registry, decision, trained, run["extracted"], signer)["pushed"]  # retry: no-op
    assert len(registry.history()) == 1
    # What serves is in the signed manifest: the ONNX file, its measured parity, every file's sha256.
    manifest = registry.manifest(trained["version"])
    assert set(manifest["artifacts"]) == {"model.onnx", "model.joblib", "profile.json", "model_card.md",
                                          "model_card.html", "calibration.json"}
    assert manifest["artifacts"]["model.onnx"] == trained["onnx"]["sha256"]
    for rows in ("test_split", "schema_sweep"):
        assert 0 <= manifest["onnx_parity"][rows]["max_abs_diff"] <= onnx_export.TOLERANCE
    assert manifest["onnx_parity"]["test_split"]["rows"] == run["transformed"]["rows"]["test"]
    # Clearing evaluate after the push reproduces the first decision (judged against what it replaced).
    rerun = stages.evaluate(artifacts, registry, trained, test_key, Gate(min_roc_auc=0.7, margin=0.002))
    assert {k: rerun[k] for k in ("bless", "reason", "champion_version")} == \
        {k: decision[k] for k in ("bless", "reason", "champion_version")}
    # A later run with the same model faces it as the champion (scored from the registry's signed ONNX
    # file) and does not beat it.
    later = RunArtifacts(artifacts.s3, artifacts.bucket, "vi", "later-run")
    again = stages.evaluate(later, registry, trained, test_key, Gate(min_roc_auc=0.7, margin=0.002))
    assert not again["bless"] and again["champion_version"] == trained["version"]
    assert again["candidate"] == again["champion"]


def test_a_training_run_promotes_only_its_own_new_blessed_version(run):
    """Issue #30 (red team): a run's records replayed (a deleted run re-created with its run id) or an
    unblessed decision pushed by hand must not re-promote a version that served, nor overwrite another run's
    version. Push refuses each; restoring a version is the rollback DAG's."""
    import copy

    artifacts, registry, trained, signer = run["artifacts"], run["registry"], run["trained"], run["signer"]
    test_key = run["transformed"]["splits"]["test"]
    decision = stages.evaluate(artifacts, registry, trained, test_key, Gate(min_roc_auc=0.7, margin=0.002))
    with pytest.raises(NotRetryable, match="was not blessed"):
        stages.push(artifacts, registry, {**decision, "bless": False}, trained, run["extracted"], signer)
    stages.push(artifacts, registry, decision, trained, run["extracted"], signer)
    other = RunArtifacts(artifacts.s3, artifacts.bucket, "vi", "another-run")  # the same version, another run
    with pytest.raises(NotRetryable, match="served as champion before"):
        stages.push(other, registry, decision, trained, run["extracted"], signer)
    with pytest.raises(NotRetryable, match="published by run"):  # nor as a shadow over its manifest
        stages.shadow(other, registry, decision, trained, run["extracted"], signer)
    publish(registry, "hotfix", train_model(2), signer)
    promote(registry, "hotfix", signer)  # the champion moves on; the pushed version served before
    with pytest.raises(NotRetryable, match="served as champion before"):
        stages.push(artifacts, registry, copy.deepcopy(decision), trained, run["extracted"], signer)
    assert registry.champion().version == "hotfix"


def test_records_about_another_snapshot_or_candidate_are_inconsistent(run):
    trained, extracted = run["trained"], run["extracted"]
    stages.check_consistent(extracted=extracted, transformed=run["transformed"], trained=trained,
                            validated=run["validated"])
    retrained = {**trained, "version": "later", "model": {**trained["model"], "sha256": "0" * 64}}
    decision = {"candidate_version": trained["version"], "candidate_sha256": trained["model"]["sha256"]}
    stages.check_consistent(extracted=extracted, trained=trained, decision=decision)
    with pytest.raises(stages.Inconsistent, match="judged and the trained candidates differ"):
        stages.check_consistent(extracted=extracted, trained=retrained, decision=decision)
    reextracted = {**extracted, "snapshot": {**extracted["snapshot"], "sha256": "1" * 64}}
    with pytest.raises(stages.Inconsistent, match="snapshot"):
        stages.check_consistent(extracted=reextracted, trained=trained, validated=run["validated"])


@pytest.mark.parametrize("flaw", ["unconvertible", "unfaithful"])
def test_a_candidate_that_cannot_serve_faithfully_is_not_blessed(run, monkeypatch, flaw):
    artifacts, registry = run["artifacts"], run["registry"]
    if flaw == "unconvertible":  # a step skl2onnx has no converter for
        import numpy as np
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer

        build = training.build_pipeline
        monkeypatch.setattr(training, "build_pipeline", lambda seed, exclude=(), params=None, family=None: Pipeline(
            [("nan_to_num", FunctionTransformer(np.nan_to_num)), *build(seed, exclude, params, family).steps]))
    else:
        monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)  # no conversion can be this faithful
    trained = stages.train(artifacts, run["transformed"], seed=3, run_started=RUN_STARTED)
    decision = stages.evaluate(artifacts, registry, trained, run["transformed"]["splits"]["test"],
                                 Gate(min_roc_auc=0.5, margin=0.0))
    expected = "ONNX conversion failed" if flaw == "unconvertible" else "ONNX disagrees with scikit-learn"
    assert not decision["bless"] and decision["reason"].startswith("candidate cannot be served faithfully")
    assert expected in decision["reason"] and decision["candidate"]["roc_auc"] > 0.7  # still reported on


def test_a_champion_that_cannot_be_scored_fails_the_gate_unless_a_person_says_replace_it(run, tmp_path):
    artifacts, registry, trained, signer = run["artifacts"], run["registry"], run["trained"], run["signer"]
    onnx = artifacts.read(trained["onnx"])
    registry.publish({"version": "old", "threshold": 0.5, "model_input": "object-array/0"}, {"model.onnx": onnx},
                     signer)
    registry.set_champion("old", None, "promote", signer, run_id="old-run")
    test_split = run["transformed"]["splits"]["test"]
    with pytest.raises(UnreadableChampion, match="takes model input 'object-array/0'.*fails closed"):
        stages.evaluate(artifacts, registry, trained, test_split, Gate(min_roc_auc=0.7, margin=0.002))
    decision = stages.evaluate(artifacts, registry, trained, test_split, Gate(min_roc_auc=0.7, margin=0.002,
                                                                                replace_unreadable=True))
    assert decision["bless"] and decision["champion"] is None and decision["champion_version"] == "old"
    assert "takes model input 'object-array/0'" in decision["reason"] and "floor" in decision["reason"]
    assert decision["replaced_unreadable"]["version"] == "old"
    assert stages.push(artifacts, registry, decision, trained, run["extracted"], signer)["pushed"]
    assert registry.manifest(trained["version"])["model_input"] == model_input.LAYOUT
    audit = registry.history()[-1]
    assert audit["version"] == trained["version"] and audit["note"]["replaced_unreadable_champion"]["version"] == "old"


@pytest.mark.parametrize("pointer", ["missing version", "unsigned"])
def test_planted_pointer_cannot_skip_gate(run, s3, bucket, pointer):
    """Issue #20's second break: a pointer naming a version that does not exist (or any pointer written
    without the key) made evaluate judge on the floor alone, and the push succeeded on that pointer's etag."""
    import json

    artifacts, registry, trained, signer = run["artifacts"], run["registry"], run["trained"], run["signer"]
    test_split = run["transformed"]["splits"]["test"]
    stages.push(artifacts, registry, stages.evaluate(artifacts, registry, trained, test_split, Gate(0.7, 0.002)),
                trained, run["extracted"], signer)
    champion = registry.champion()
    if pointer == "missing version":  # a validly signed record copied and edited would fail its signature;
        planted = json.loads(champion.signed)  # so the attacker keeps the signature and changes the version
        planted["record"]["version"] = "20990101T000000Z-0000000000"
    else:
        planted = {"version": "20990101T000000Z-0000000000"}
    s3.put_object(Bucket=bucket, Key=registry.pointer_key, Body=json.dumps(planted).encode())
    later = RunArtifacts(s3, bucket, "vi", "after-the-plant")
    with pytest.raises(UnreadableChampion, match="fails closed"):
        stages.evaluate(later, registry, trained, test_split, Gate(min_roc_auc=0.5, margin=0.0))
    assert s3.get_object(Bucket=bucket, Key=registry.pointer_key)["Body"].read() == json.dumps(planted).encode()


def test_poisoned_splits_are_refused_before_anything_uses_them(run, s3):
    """Issue #20's first break: splits overwritten after transform with relabelled rows were trained on,
    blessed and signed. The reader now checks each against the sha256 transform recorded (in XCom)."""
    import io

    import pandas as pd

    from cross_sell.storage.objects import CustodyError

    artifacts, registry, trained = run["artifacts"], run["registry"], run["trained"]
    splits = run["transformed"]["splits"]
    for name in ("train", "validation", "test"):
        frame = pd.read_parquet(io.BytesIO(artifacts.read(splits[name])))
        frame.loc[frame["Age"] >= 60, "Response"] = 1  # age >= 60 -> buyer
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        s3.put_object(Bucket=artifacts.bucket, Key=splits[name]["key"], Body=buffer.getvalue())
    with pytest.raises(CustodyError, match=f"{splits['train']['key']} is not the object its writer recorded") as bad:
        stages.train(artifacts, run["transformed"], seed=3, run_started=RUN_STARTED)
    assert splits["train"]["sha256"] in str(bad.value)  # both hashes named
    with pytest.raises(CustodyError, match="features/test.parquet"):
        stages.evaluate(artifacts, registry, trained, splits["test"], Gate(min_roc_auc=0.7, margin=0.002))
    # The candidate's own files, the profile and the evaluation facts are checked the same way by push.
    decision_facts = artifacts.put_json({"candidate": {}}, "evaluation", "facts.json")
    s3.put_object(Bucket=artifacts.bucket, Key=trained["profile"]["key"], Body=b'{"features": {}}')
    decision = {"bless": True, "candidate": {}, "champion": None, "champion_version": None, "champion_etag": None,
                "reason": "test", "facts": decision_facts, "fairness": {"candidate": {}}}
    with pytest.raises(CustodyError, match="model/profile.json"):
        stages.push(artifacts, registry, decision, trained, run["extracted"], run["signer"])
    assert registry.champion() is None


def test_the_manifest_records_the_data_the_model_was_trained_and_tested_on(run):
    artifacts, registry, trained = run["artifacts"], run["registry"], run["trained"]
    decision = stages.evaluate(artifacts, registry, trained, run["transformed"]["splits"]["test"], Gate(0.7, 0.002))
    stages.push(artifacts, registry, decision, trained, run["extracted"], run["signer"])
    lineage = registry.manifest(trained["version"])["lineage"]
    assert lineage["snapshot"] == run["extracted"]["snapshot"]
    assert lineage["splits"] == run["transformed"]["splits"]
    # ...so the lineage can be verified later against the objects themselves.
    for recorded in (lineage["snapshot"], *lineage["splits"].values()):
        assert artifacts.read(recorded)


def test_evaluation_report_and_model_card_hold_the_figures(run):
    artifacts, registry, trained = run["artifacts"], run["registry"], run["trained"]
    decision = stages.evaluate(artifacts, registry, trained, run["transformed"]["splits"]["test"],
                               Gate(min_roc_auc=0.7, margin=0.002), validation=run["validated"]["summary"])
    html = artifacts.s3.get_object(Bucket=artifacts.bucket, Key=decision["report_key"])["Body"].read().decode()
    assert decision["report_key"] == artifacts.key("evaluation", "report.html")
    assert f"{decision['candidate']['roc_auc']:.4f}" in html and str(escape(decision["reason"])) in html
    assert 'href="../validation/report.html"' in html and html.count("data:image/png;base64,") == 4
    # this run's validation verdict, in the report
    assert f"{expectation_count()} expectations met" in " ".join(html.split())
    for slice_label in ("Vehicle_Age = 1-2 Year", "Gender = Female", "Previously_Insured = 0"):
        assert slice_label in html
    facts = artifacts.read_json(decision["facts"])["candidate"]
    assert {row["feature"] for row in facts["importance"]} == set(schema.FEATURES)
    # Fairness (issue #23): per group of each protected attribute, the figures fairlearn gives, in the report.
    fairness = facts["fairness"]
    assert {g["group"] for g in fairness["Age"]["groups"]} <= {"18-29", "30-39", "40-49", "50-59", "60-69", "70+"}
    assert sum(g["rows"] for g in fairness["Gender"]["groups"]) == decision["candidate"]["rows"]
    assert decision["fairness"]["candidate"]["Gender"] == {k: fairness["Gender"][k] for k in (
        "demographic_parity_ratio", "equalized_odds_difference")}
    assert "Fairness by protected attribute" in html and "Gender (gated)" in html and "Age = 18-29" in html
    assert sum(map(sum, facts["confusion"])) == decision["candidate"]["rows"]

    stages.push(artifacts, registry, decision, trained, run["extracted"], run["signer"])
    card = registry.s3.get_object(Bucket=registry.bucket,
                                  Key=registry.version_file_key(trained["version"], "model_card.md"))["Body"].read()
    card = card.decode()
    assert trained["version"] in card and f"{decision['candidate']['roc_auc']:.4f}" in card
    assert "Previously_Insured = 1" in card
    assert "### Fairness" in card and "Gender = Female" in card and "No approval was required" in card
    profile = registry.version_json(trained["version"], "profile.json")
    assert profile == artifacts.read_json(trained["profile"]) and set(profile["features"]) == set(schema.FEATURES)


def test_drift_against_the_champion_warns_or_fails_as_configured(run, s3, bucket):
    artifacts, registry, trained = run["artifacts"], run["registry"], run["trained"]
    assert stages.check_drift(artifacts, registry, run["extracted"]["snapshot"])["checked"] is False  # no champion
    decision = stages.evaluate(artifacts, registry, trained, run["transformed"]["splits"]["test"],
                                 Gate(min_roc_auc=0.7, margin=0.002))
    stages.push(artifacts, registry, decision, trained, run["extracted"], run["signer"])

    fresh = RunArtifacts(s3, bucket, "vi", "fresh-run")
    same = stages.extract(synthetic.generate(6_000, seed=56).to_dict("records"), fresh)
    assert stages.check_drift(fresh, registry, same["snapshot"], action="fail")["drifted"] == []

    shifted_docs = synthetic.generate(6_000, seed=57)
    shifted_docs["Age"] = (shifted_docs["Age"] + 15).clip(upper=100)
    shifted_docs.loc[shifted_docs.index[: 4_000], "Policy_Sales_Channel"] = 160  # a new dominant channel
    shifted = RunArtifacts(s3, bucket, "vi", "shifted-run")
    snapshot_ref = stages.extract(shifted_docs.to_dict("records"), shifted)["snapshot"]
    warned = stages.check_drift(shifted, registry, snapshot_ref, action="warn")
    assert warned["drifted"] == ["Age", "Policy_Sales_Channel"]
    with pytest.raises(drift.DriftError, match="Age, Policy_Sales_Channel"):
        stages.check_drift(shifted, registry, snapshot_ref, action="fail")
    saved = shifted.get_json(warned["report_key"])
    age = next(f for f in saved["features"] if f["feature"] == "Age")
    assert age["distance"] > 1.0 and age["js_distance"] > 0.3  # raw distances are kept, not just verdicts
    # A looser per-feature limit lets Age pass while the channel still fails.
    loose = stages.check_drift(shifted, registry, snapshot_ref, thresholds={"Age": 10.0}, action="warn")
    assert loose["drifted"] == ["Policy_Sales_Channel"]


def test_failed_validation_saves_the_evidence_and_raises(run, s3, bucket):
    bad = [dict(d) for d in run["documents"]]
    bad[0]["Vehicle_Damage"] = "Maybe"
    artifacts = RunArtifacts(s3, bucket, "vi", "bad-run")
    extracted = stages.extract(bad, artifacts)
    with pytest.raises(DataValidationError, match="Maybe"):
        stages.validate(artifacts, extracted["snapshot"], min_rows=1_000)
    summary = artifacts.get_json(artifacts.key("validation", "summary.json"))
    assert summary["success"] is False
    assert [f["expectation"] for f in summary["failures"]] == ["expect_column_values_to_be_in_set(Vehicle_Damage)"]
    # The self-contained report names every expectation, the failed one first with its count and sample.
    page = s3.get_object(Bucket=bucket, Key=summary["report_key"])["Body"].read().decode()
    assert "<script" not in page and "<link" not in page and not re.search("https?:", page)  # readable offline
    assert page.count("<tr class=") == summary["statistics"]["evaluated_expectations"]
    failed = page.index('<tr class="failed">')
    assert failed < page.index('<tr class="">') and "&#39;Maybe&#39;" in page[failed:page.index("</tr>", failed)]
    assert "1 of 6,000" in page


def test_two_runs_pushing_at_once_leave_one_champion(run, s3, bucket):
    registry = run["registry"]
    rivals = []
    for name in ("run-a", "run-b"):
        artifacts = RunArtifacts(s3, bucket, "vi", name)
        trained = dict(run["trained"], version=f"{name}-{run['trained']['model']['sha256'][:6]}")
        metrics = artifacts.get_json(run["artifacts"].key("model", "training.json"))["out_of_fold_metrics"]
        facts = artifacts.put_json({"candidate": {}}, "evaluation", "facts.json")
        decision = {"bless": True, "reason": "test", "candidate": metrics, "champion": None,
                    "champion_version": None, "champion_etag": None, "facts": facts, "fairness": {"candidate": {}}}
        rivals.append((artifacts, trained, decision))
    start = threading.Barrier(2)
    results = {}

    def push(artifacts, trained, decision):
        start.wait()
        results[artifacts.run_id] = stages.push(artifacts, registry, decision, trained, run["extracted"],
                                                  run["signer"])

    threads = [threading.Thread(target=push, args=rival) for rival in rivals]
    [t.start() for t in threads]
    [t.join() for t in threads]
    winners = [r for r in results.values() if r["pushed"]]
    assert len(winners) == 1, results
    assert registry.champion().version == winners[0]["version"]
    loser = next(r for r in results.values() if not r["pushed"])
    assert "changed since it was read" in loser["reason"]



def test_a_challenger_goes_into_shadow_and_the_champion_stays(run, s3, bucket):
    artifacts, registry, trained, signer = run["artifacts"], run["registry"], run["trained"], run["signer"]
    test_key = run["transformed"]["splits"]["test"]
    decision = stages.evaluate(artifacts, registry, trained, test_key, Gate(min_roc_auc=0.7, margin=0.002))
    stages.push(artifacts, registry, decision, trained, run["extracted"], signer)
    again = stages.evaluate(RunArtifacts(s3, bucket, "vi", "twin"), registry, trained, test_key, Gate(0.7, 0.002))
    assert again["challenger"] is False  # the champion's twin is nothing to shadow

    other = RunArtifacts(s3, bucket, "vi", "other-data")
    extracted = stages.extract(synthetic.generate(6_000, seed=77).to_dict("records"), other)
    transformed = stages.transform(other, extracted["snapshot"], seed=4,
                                   validated=stages.validate(other, extracted["snapshot"], min_rows=1_000))
    challenger = stages.train(other, transformed, seed=4, run_started=RUN_STARTED)
    decision = stages.evaluate(other, registry, challenger, transformed["splits"]["test"], Gate(min_roc_auc=0.7,
                               margin=0.2))  # no challenger can beat the champion by 0.2
    assert not decision["bless"] and decision["challenger"] is True
    result = stages.shadow(other, registry, decision, challenger, extracted, signer)
    assert registry.shadow().version == challenger["version"] == result["shadow"]
    assert registry.champion().version == trained["version"]  # promotion stays the pipeline's decision
    assert registry.manifest(challenger["version"])["run_id"] == "other-data"  # signed and verified like any


def test_every_object_written_is_encrypted_at_rest(fresh_run, s3, bucket):
    """Issue #22: server-side encryption on every PUT the project makes (SSE-S3 here; SSE-KMS with
    CROSS_SELL_S3_SSE=aws:kms), the run's artifacts, the registry's files, pointers and audit records."""
    run = fresh_run
    artifacts, registry = run["artifacts"], run["registry"]
    decision = stages.evaluate(artifacts, registry, run["trained"], run["transformed"]["splits"]["test"],
                               Gate(0.7, 0.002))
    stages.push(artifacts, registry, decision, run["trained"], run["extracted"], run["signer"])
    versions = [v for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
                for v in page.get("Versions", [])]
    assert len(versions) > 20 and {v["Key"].split("/")[1] for v in versions} >= {"runs", "models", "audit"}
    unencrypted = [v["Key"] for v in versions
                   if s3.head_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"]).get(
                       "ServerSideEncryption") != "AES256"]
    assert unencrypted == []


def test_the_approval_request_shows_the_decision_and_links_the_report_and_model_card(run):
    """Issue #23: what the reviewer reads in the approval task's body, and the links that open."""
    import urllib.request

    artifacts, registry, trained = run["artifacts"], run["registry"], run["trained"]
    decision = stages.evaluate(artifacts, registry, trained, run["transformed"]["splits"]["test"], Gate(0.7, 0.002))
    drift = {"checked": True, "champion_version": "v0", "drifted": ["Age"]}
    from cross_sell.governance.approval import push_subject, text

    request = stages.describe_for_approval(artifacts, decision, trained, run["extracted"], drift, 3600)
    body = request["body"]
    assert request["subject"] == push_subject(artifacts.run_id, trained)  # what a signed approval is bound to
    assert f"**Candidate {text(trained['version'])}** vs champion none yet" in body
    assert "Decision: BLESS" in body and text(decision["reason"]) in body
    assert f"| roc_auc | {decision['candidate']['roc_auc']:.4f} | n/a |" in body
    gender = decision["fairness"]["candidate"]["Gender"]
    assert f"| Gender | {gender['demographic_parity_ratio']:.4f} | {gender['equalized_odds_difference']:.4f} |" in body
    assert "**Drift:** Age past their thresholds against champion v0" in body.replace("\\", "")
    links = dict(re.findall(r"- \[([^]]+)\]\((http[^)]+)\)", body))
    with urllib.request.urlopen(links["evaluation report"], timeout=30) as response:
        assert b"Fairness by protected attribute" in response.read()
    with urllib.request.urlopen(links["model card"], timeout=30) as response:  # issue #32: HTML, not markdown
        assert response.headers.get_content_type() == "text/html", response.headers["Content-Type"]
        card = response.read()
    assert card.lstrip().lower().startswith(b"<!doctype html") and b"Awaiting a reviewer's answer" in card


def test_push_takes_only_a_signed_approval_of_its_own_candidate(signer, verifier):
    """Issue #23 and #30: a required approval fails closed. Only a record the approval task signed from
    Airflow's record of an explicit "Approve" by a person, for this very run and candidate, lets the push
    through: no answer, a rejection, the timeout's default, an unsigned (XCom-forged) record, another run's
    approval or one with a changed field never does."""
    from datetime import datetime, timezone

    from cross_sell.governance.approval import NotApproved, approval_record, push_subject, sign
    from cross_sell.governance.policy import Policy

    trained = {"version": "v1", "model": {"sha256": "a" * 64}, "onnx": {"sha256": "b" * 64}}
    subject = push_subject("run-1", trained)
    assert approval_record(False, None, subject, verifier) is None
    when = datetime(2026, 12, 2, 10, 0, tzinfo=timezone.utc)
    approved = {"chosen_options": ["Approve"], "params_input": {"comment": "ok"}, "responded_at": when,
                "responded_by_user": {"id": "7", "name": "alice"}}
    signed = sign(subject, approved, "bob", Policy(), signer)
    record = approval_record(True, signed, subject, verifier)
    assert (record["approved_by"], record["approver_id"], record["approved_at"], record["comment"]) == (
        "alice", "7", "2026-12-02T10:00:00+00:00", "ok")
    assert record["triggered_by"] == "bob" and record["self_approved"] is False
    for answer in ({**approved, "chosen_options": ["Reject"]}, {**approved, "responded_by_user": None}):
        with pytest.raises(NotApproved):
            sign(subject, answer, "bob", Policy(), signer)
    forged = {"record": {**signed["record"], "comment": "LGTM"}, "signature": signed["signature"]}
    unsigned = {"record": signed["record"], "signature": ""}
    other_run = sign(push_subject("run-2", trained), approved, "bob", Policy(), signer)
    for bad in (None, {"chosen_options": ["Approve"], "responded_by_user": {"name": "alice"}}, forged, unsigned,
                other_run):
        with pytest.raises(NotApproved):
            approval_record(True, bad, subject, verifier)


def test_a_pushed_version_is_reproduced_identically_and_its_lineage_shown(run, s3_env, bucket, monkeypatch, capsys):
    """Issue #23: `reproduce` rebuilds a version from its recorded, hash-verified snapshot, seed and params;
    `lineage` shows where it came from and where it went. A changed recorded snapshot is refused."""
    import json

    from cross_sell.__main__ import main as cli
    from cross_sell.governance import lineage
    from cross_sell.operations import reproduce
    from cross_sell.storage.objects import CustodyError

    artifacts, registry, trained = run["artifacts"], run["registry"], run["trained"]
    decision = stages.evaluate(artifacts, registry, trained, run["transformed"]["splits"]["test"], Gate(0.7, 0.002),
                               validation=run["validated"]["summary"])
    stages.push(artifacts, registry, decision, trained, run["extracted"], run["signer"])
    version = trained["version"]
    monkeypatch.setenv("CROSS_SELL_S3_BUCKET", bucket)
    monkeypatch.setenv("CROSS_SELL_S3_PREFIX", "vi")
    assert cli(["reproduce", version]) == 0
    out, err = capsys.readouterr()
    found = json.loads(out)
    assert found["identical"] and found["onnx_sha256"]["identical"] and found["largest_metric_difference"] == 0.0
    assert found["splits_identical"] == {"train": True, "validation": True, "test": True}
    assert found["recorded_with"]["seed"] == 3 and found["library_differences"] == []
    assert f"{version}: identical" in err

    shown = lineage.of_version(registry, version, "vi")
    upstream = shown["upstream"]
    assert upstream["snapshot"]["sha256"] == run["extracted"]["snapshot"]["sha256"]
    assert upstream["snapshot"]["now"] == "verified" and upstream["validation"]["verdict"]["success"] is True
    assert upstream["params"]["seed"] == 3 and upstream["approval"] is None
    assert shown["downstream"]["champion_periods"][0]["until"] is None  # the champion since its push

    s3 = registry.s3  # the snapshot rewritten after the push: no rebuild from data that is not the recorded
    s3.put_object(Bucket=bucket, Key=run["extracted"]["snapshot"]["key"], Body=b"other rows")
    with pytest.raises(CustodyError):
        reproduce.reproduce(registry, version)
    assert lineage.of_version(registry, version, "vi")["upstream"]["snapshot"]["now"].startswith("differs")


def test_the_fairness_section_of_the_report_as_a_person_sees_it(run, tmp_path):
    """Issue #23: the report's fairness section, opened in headless Chromium: the tables and the plot render."""
    import browser
    from support import skip_unless_available

    skip_unless_available(browser.missing())
    artifacts, registry, trained = run["artifacts"], run["registry"], run["trained"]
    decision = stages.evaluate(artifacts, registry, trained, run["transformed"]["splits"]["test"], Gate(0.7, 0.002))
    page_file = tmp_path / "report.html"
    page_file.write_bytes(artifacts.s3.get_object(Bucket=artifacts.bucket, Key=decision["report_key"])["Body"].read())
    shot = tmp_path / "report-fairness.png"
    with browser.page() as page:
        page.goto(page_file.as_uri())
        page.locator("#fairness").scroll_into_view_if_needed()
        page.screenshot(path=shot)
        section = page.evaluate("(() => { let e = document.getElementById('fairness'), t = '';"
                                " for (let n = e; n && !(n !== e && n.tagName === 'H2'); n = n.nextElementSibling)"
                                " t += n.innerText + '\\n'; return t; })()")
        plot = page.locator('img[alt^="selection"]')
        plot.wait_for()
        plot_width = plot.evaluate("image => image.naturalWidth")
        assert page.errors == [], page.errors
    print(f"fairness section screenshot: {shot}")
    assert "Gender (gated)" in section and "Gender = Female" in section and "Age = 18-29" in section
    assert "equalized-odds difference" in section and plot_width > 500
