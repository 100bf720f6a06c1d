import threading

import pytest

from cross_sell.registry import ChampionChanged, IntegrityError, ModelRegistry, RegistryError, sha256_bytes


@pytest.fixture
def registry(s3, bucket, signer, verifier):
    registry = ModelRegistry(s3, bucket, "vi", verifier)
    registry.signer = signer  # only for `_publish` below
    return registry


def _publish(registry, tmp_path, version, payload):
    body = repr(payload).encode()
    return registry.publish({"version": version, "metrics": {}}, {"model.onnx": body}, registry.signer)


def test_first_champion_then_conditional_promotion(registry, tmp_path):
    assert registry.champion() is None
    for version in ("v1", "v2"):
        _publish(registry, tmp_path, version, {"model": version})
    registry.set_champion("v1", None, "promote", run_id="r1")
    first = registry.champion()
    assert first.version == "v1" and first.pointer["previous_version"] is None
    with pytest.raises(ChampionChanged):  # a second "first champion" loses
        registry.set_champion("v2", None, "promote", run_id="r2")
    registry.set_champion("v2", first.etag, "promote", run_id="r2")
    assert registry.champion().version == "v2"
    with pytest.raises(ChampionChanged):  # a writer holding the stale etag loses
        registry.set_champion("v1", first.etag, "promote", run_id="r3")
    assert registry.artifact("v2", "model.onnx") == repr({"model": "v2"}).encode()
    assert registry.manifest("v2")["artifacts"] == {"model.onnx": sha256_bytes(repr({"model": "v2"}).encode())}


def test_a_retried_promotion_is_a_no_op(registry, tmp_path):
    _publish(registry, tmp_path, "v1", {"model": 1})
    pointer = registry.set_champion("v1", None, "promote", run_id="r1")
    assert registry.set_champion("v1", None, "promote", run_id="r1") == pointer  # first try's write survived
    assert [e["version"] for e in registry.history()] == ["v1"]


def test_racing_writers_leave_exactly_one_winner(registry, tmp_path):
    _publish(registry, tmp_path, "base", {"model": "base"})
    registry.set_champion("base", None, "promote", run_id="r0")
    etag = registry.champion().etag
    contenders = [f"c{i}" for i in range(8)]
    for version in contenders:
        _publish(registry, tmp_path, version, {"model": version})
    start = threading.Barrier(len(contenders))
    outcomes = {}

    def contend(version):
        start.wait()
        try:
            registry.set_champion(version, etag, "promote", run_id=version)
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
    registry.set_champion("v1", None, "promote", run_id="r1")
    registry.set_champion("v2", registry.champion().etag, "promote", run_id="r2")
    registry.rollback("v1", reason="v2 misbehaves")
    assert registry.champion().version == "v1"
    history = registry.history()
    assert [(e["version"], e["action"]) for e in history] == [("v1", "promote"), ("v2", "promote"),
                                                             ("v1", "rollback")]
    assert history[-1]["reason"] == "v2 misbehaves" and history[-1]["previous_version"] == "v2"
    with pytest.raises(RegistryError):
        registry.rollback("v9")
