import json
import threading

import pytest

from cross_sell.storage import objects
from cross_sell.storage.registry import (
    ChampionChanged,
    IntegrityError,
    ModelRegistry,
    PointerError,
    RegistryError,
    sha256_bytes,
)


@pytest.fixture
def registry(s3, bucket, signer, verifier):
    registry = ModelRegistry(s3, bucket, "vi", verifier)
    registry.signer = signer  # only for `_publish` below
    return registry


def _publish(registry, tmp_path, version, payload):
    """A version trained on a recorded run (`runs/run-<version>/`), as the pipeline pushes it."""
    from serving_support import record_run

    body = repr(payload).encode()
    return registry.publish({"version": version, "metrics": {}, "run_id": f"run-{version}",
                             "lineage": record_run(registry, f"run-{version}")}, {"model.onnx": body}, registry.signer)


def test_first_champion_then_conditional_promotion(registry, tmp_path):
    assert registry.champion() is None
    for version in ("v1", "v2"):
        _publish(registry, tmp_path, version, {"model": version})
    registry.set_champion("v1", None, "promote", registry.signer, run_id="r1")
    first = registry.champion()
    assert first.version == "v1" and first.pointer["previous_version"] is None
    with pytest.raises(ChampionChanged):  # a second "first champion" loses
        registry.set_champion("v2", None, "promote", registry.signer, run_id="r2")
    registry.set_champion("v2", first.etag, "promote", registry.signer, run_id="r2")
    assert registry.champion().version == "v2"
    with pytest.raises(ChampionChanged):  # a writer holding the stale etag loses
        registry.set_champion("v1", first.etag, "promote", registry.signer, run_id="r3")
    assert registry.artifact("v2", "model.onnx") == repr({"model": "v2"}).encode()
    assert registry.manifest("v2")["artifacts"] == {"model.onnx": sha256_bytes(repr({"model": "v2"}).encode())}
    assert registry.manifest("v2")["artifact_bytes"] == {"model.onnx": len(repr({"model": "v2"}).encode())}


def test_a_retried_promotion_is_a_no_op(registry, tmp_path):
    _publish(registry, tmp_path, "v1", {"model": 1})
    pointer = registry.set_champion("v1", None, "promote", registry.signer, run_id="r1")
    again = registry.set_champion("v1", None, "promote", registry.signer, run_id="r1")  # first try's write survived
    assert again == pointer
    assert [e["version"] for e in registry.history()] == ["v1"]


def test_racing_writers_leave_exactly_one_winner(registry, tmp_path):
    _publish(registry, tmp_path, "base", {"model": "base"})
    registry.set_champion("base", None, "promote", registry.signer, run_id="r0")
    etag = registry.champion().etag
    contenders = [f"c{i}" for i in range(8)]
    for version in contenders:
        _publish(registry, tmp_path, version, {"model": version})
    start = threading.Barrier(len(contenders))
    outcomes = {}

    def contend(version):
        start.wait()
        try:
            registry.set_champion(version, etag, "promote", registry.signer, run_id=version)
            outcomes[version] = "won"
        except ChampionChanged:
            outcomes[version] = "lost"

    threads = [threading.Thread(target=contend, args=(v,)) for v in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [v for v, outcome in outcomes.items() if outcome == "won"]
    assert len(winners) == 1, outcomes
    champion = registry.champion()
    assert champion.version == winners[0]
    assert champion.pointer["manifest_key"] == registry.manifest_key(winners[0])
    assert [e["version"] for e in registry.history()] == ["base", winners[0]]


def test_tampered_model_is_refused(registry, tmp_path, s3, bucket):
    _publish(registry, tmp_path, "v1", {"model": 1})
    s3.put_object(Bucket=bucket, Key=registry.model_key("v1"), Body=b"not the published bytes")
    with pytest.raises(IntegrityError, match="does not match"):
        registry.artifact("v1", "model.onnx")
    with pytest.raises(IntegrityError, match="does not match"):
        registry.download_artifact("v1", "model.onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_rollback_moves_the_pointer_and_is_audited(registry, tmp_path):
    for version in ("v1", "v2"):
        _publish(registry, tmp_path, version, {"model": version})
    registry.set_champion("v1", None, "promote", registry.signer, run_id="r1")
    registry.set_champion("v2", registry.champion().etag, "promote", registry.signer, run_id="r2")
    registry.rollback("v1", registry.signer, reason="v2 misbehaves", by="alice")
    assert registry.champion().version == "v1"
    history = registry.history()
    assert [(e["version"], e["action"]) for e in history] == [("v1", "promote"), ("v2", "promote"),
                                                             ("v1", "rollback")]
    assert history[-1]["reason"] == "v2 misbehaves" and history[-1]["previous_version"] == "v2"
    assert history[-1]["by"] == "alice" and [e["sequence"] for e in history] == [1, 2, 3]
    with pytest.raises(RegistryError):
        registry.rollback("v9", registry.signer)


def test_rollback_refuses_a_never_served_version_or_the_shadow_unless_forced(registry, tmp_path):
    """Issue #23: `champion rollback` accepted a never-promoted shadow that scored below the champion."""
    for version in ("v1", "v2", "challenger"):
        _publish(registry, tmp_path, version, {"model": version})
    registry.set_champion("v1", None, "promote", registry.signer, run_id="r1")
    registry.set_champion("v2", registry.champion().etag, "promote", registry.signer, run_id="r2")
    registry.set_shadow("challenger", registry.signer, reason="0.0038 below the champion")
    with pytest.raises(RegistryError, match="never served as champion"):
        registry.rollback("challenger", registry.signer, by="alice")
    registry.set_shadow("v1", registry.signer, reason="v1 in shadow")
    with pytest.raises(RegistryError, match="is the current shadow"):
        registry.rollback("v1", registry.signer, by="alice")
    assert registry.champion().version == "v2" and len(registry.history()) == 2
    record = registry.rollback("challenger", registry.signer, by="alice", reason="decided", force=True)
    assert record["note"] == {"forced": True} and registry.champion().version == "challenger"
    # A retried rollback task whose first try wrote the pointer finds its own change, not an error.
    again = registry.rollback("v2", registry.signer, by="bob", run_id="rb")
    assert registry.rollback("v2", registry.signer, by="bob", run_id="rb") == again
    assert [r["version"] for r in registry.history()] == ["v1", "v2", "challenger", "v2"]


@pytest.mark.parametrize("planted", [b"[1]", b"null", b"7", b'{"version": "v1"}', b"not json",
                                     b'{"record": {"kind": "champion", "version": "../x", "sequence": 1}, '
                                     b'"signature": ""}'])
def test_a_pointer_that_is_not_the_projects_signed_writing_is_refused(registry, tmp_path, s3, bucket, planted):
    _publish(registry, tmp_path, "v1", {"model": 1})
    s3.put_object(Bucket=bucket, Key=registry.pointer_key, Body=planted)
    with pytest.raises(PointerError) as refused:
        registry.champion()
    assert refused.value.etag  # the pointer state, for a poller to back off on


def test_a_pointer_signed_by_another_key_or_of_another_kind_is_refused(registry, tmp_path, s3, bucket):
    from cross_sell.storage import signing

    _publish(registry, tmp_path, "v1", {"model": 1})
    registry.set_shadow("v1", registry.signer, reason="test")
    shadow = s3.get_object(Bucket=bucket, Key=registry.shadow_key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=registry.pointer_key, Body=shadow)  # a signed shadow record as champion
    with pytest.raises(PointerError, match="kind 'shadow'"):
        registry.champion()
    private, _ = signing.generate_key_pair(tmp_path / "attacker")
    s3.delete_object(Bucket=bucket, Key=registry.pointer_key)
    registry.set_champion("v1", None, "promote", signing.ManifestSigner.from_file(private), run_id="evil")
    with pytest.raises(PointerError, match="signature check failed"):
        registry.champion()


def test_oversized_pointer_and_manifest_are_refused_before_they_are_read(registry, tmp_path, s3, bucket):
    _publish(registry, tmp_path, "v1", {"model": 1})
    s3.put_object(Bucket=bucket, Key=registry.pointer_key, Body=b" " * (200 * 1024))
    with pytest.raises(PointerError, match="not read"):
        registry.champion()
    s3.put_object(Bucket=bucket, Key=registry.manifest_key("v1"), Body=b" " * (2 * 1024 * 1024))
    with pytest.raises(IntegrityError, match="not read"):
        registry.manifest("v1")


def test_a_replayed_pointer_is_told_from_the_newest_change(registry, tmp_path, s3, bucket):
    """Whoever can write the bucket can copy an older signed pointer back (a downgrade): the audit log's
    next record gives it away."""
    for version in ("v1", "v2"):
        _publish(registry, tmp_path, version, {"model": version})
    registry.set_champion("v1", None, "promote", registry.signer, run_id="r1")
    old = s3.get_object(Bucket=bucket, Key=registry.pointer_key)["Body"].read()
    registry.set_champion("v2", registry.champion().etag, "promote", registry.signer, run_id="r2")
    assert registry.audit_problems(registry.champion()) == []
    s3.put_object(Bucket=bucket, Key=registry.pointer_key, Body=old)
    replayed = registry.champion()  # validly signed, so it reads...
    assert replayed.version == "v1"
    problems = registry.audit_problems(replayed)  # ...but a newer change is on record
    assert [p.kind for p in problems] == ["downgrade"] and "change 2 to v2" in problems[0].message
    # A planted record where the next change would be is not mistaken for one, but it is reported.
    s3.put_object(Bucket=bucket, Key=registry.pointer_key, Body=s3.get_object(
        Bucket=bucket, Key=registry.audit_key(2))["Body"].read())
    s3.put_object(Bucket=bucket, Key=registry.audit_key(3), Body=json.dumps({"record": {"sequence": 3}}).encode())
    assert [p.kind for p in registry.audit_problems(registry.champion())] == ["unsigned_record"]
    assert [e["version"] for e in registry.history()] == ["v1", "v2"]  # the planted one is no history


def test_audit_records_are_written_once(registry, tmp_path, s3, bucket):
    from botocore.exceptions import ClientError

    _publish(registry, tmp_path, "v1", {"model": 1})
    registry.set_champion("v1", None, "promote", registry.signer, run_id="r1")
    key = registry.audit_key(1)
    with pytest.raises(ClientError, match="PreconditionFailed"):  # the project's own writes never overwrite
        s3.put_object(Bucket=bucket, Key=key, Body=b"{}", IfNoneMatch="*")
    registry._put_audit(key, b"a second writer of change 1")  # a retry of the same change: no error, no change
    assert objects.read(s3, bucket, key)[0] != b"a second writer of change 1"


def test_audit_records_under_object_lock_cannot_be_deleted(s3, signer, verifier, tmp_path):
    """With CROSS_SELL_AUDIT_LOCK_DAYS (compose: minio-init makes the bucket with Object Lock), each record
    is a COMPLIANCE-locked version: moto, like S3 and MinIO, refuses to delete it."""
    from botocore.exceptions import ClientError

    bucket = "locked-audit"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    registry = ModelRegistry(s3, bucket, "vi", verifier, audit_lock_days=30)
    registry.publish({"version": "v1", "metrics": {}}, {"model.onnx": b"onnx"}, signer)
    registry.set_champion("v1", None, "promote", signer, run_id="r1")
    head = s3.head_object(Bucket=bucket, Key=registry.audit_key(1))
    assert head["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=bucket, Key=registry.audit_key(1), VersionId=head["VersionId"])


def test_an_audit_record_hidden_behind_a_delete_marker_is_found(registry, tmp_path, s3, bucket):
    """Object Lock keeps a record's version but cannot stop a delete marker over it; with the newest record
    hidden, a replayed older pointer passes the service's two reads. The training side's daily check lists
    the versions and finds the marker (and any record written twice)."""
    for version in ("v1", "v2"):
        _publish(registry, tmp_path, version, {"model": version})
    registry.set_champion("v1", None, "promote", registry.signer, run_id="r1")
    old = s3.get_object(Bucket=bucket, Key=registry.pointer_key)["Body"].read()
    registry.set_champion("v2", registry.champion().etag, "promote", registry.signer, run_id="r2")
    assert registry.hidden_audit_records() == []
    s3.delete_object(Bucket=bucket, Key=registry.audit_key(2))  # no version id: a delete marker
    s3.put_object(Bucket=bucket, Key=registry.pointer_key, Body=old)
    assert registry.audit_problems(registry.champion()) == []  # the replay passes the two reads...
    [found] = registry.hidden_audit_records()  # ...but not the versions listing
    assert "000000000002.json is hidden by a delete marker" in found
