"""The command line against the local servers: load, evaluate, champion show/history/rollback."""

import json

import pytest

from cross_sell import features, synthetic, training
from cross_sell.__main__ import main as cli
from cross_sell.registry import ModelRegistry


@pytest.fixture
def env(monkeypatch, s3_env, bucket):
    monkeypatch.setenv("CROSS_SELL_S3_BUCKET", bucket)
    monkeypatch.setenv("CROSS_SELL_S3_PREFIX", "vi")
    return bucket


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    parts = features.split(synthetic.generate(6_000, seed=71), seed=1)
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    sha = training.save(training.train(parts["train"], parts["validation"], seed=1), str(path))
    return path, sha


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_load_synthetic_then_reload_is_idempotent(mongo_db, capsys):
    uri = f"mongodb://{mongo_db.client.address[0]}:{mongo_db.client.address[1]}"
    args = ["load", "--synthetic", "3000", "--seed", "4", "--mongo-uri", uri, "--database", mongo_db.name, "--quiet"]
    assert cli(args) == 0
    assert _json(capsys)["inserted"] == 3000
    assert cli(args) == 0
    assert _json(capsys)["inserted"] == 0
    assert mongo_db.customers.estimated_document_count() == 3000


def test_evaluate_a_model_file_and_the_champion_on_a_csv(env, s3, tmp_path, model_file, capsys):
    path, sha = model_file
    csv = tmp_path / "holdout.csv"
    synthetic.generate(4_000, seed=72).to_csv(csv, index=False)
    assert cli(["evaluate", "--csv", str(csv), "--model", str(path)]) == 0
    from_file = _json(capsys)["metrics"]
    assert 0.75 < from_file["roc_auc"] < 0.95 and from_file["rows"] == 4_000

    registry = ModelRegistry(s3, env, "vi")
    registry.publish(path, {"version": "v1", "sha256": sha, "model_input": features.MODEL_INPUT})
    registry.set_champion("v1", None, "promote", run_id="r")
    assert cli(["evaluate", "--csv", str(csv)]) == 0
    from_champion = _json(capsys)
    assert from_champion["model"] == "v1" and from_champion["metrics"] == from_file
    registry.publish(path, {"version": "old", "sha256": sha})  # saved by a release with another model input
    assert cli(["evaluate", "--csv", str(csv), "--model", "old"]) == 2
    assert "takes model input None" in capsys.readouterr().err


def test_champion_show_history_and_rollback(env, s3, model_file, capsys):
    path, sha = model_file
    registry = ModelRegistry(s3, env, "vi")
    assert cli(["champion", "show"]) == 0
    assert _json(capsys)["champion"] is None
    for version in ("v1", "v2"):
        registry.publish(path, {"version": version, "sha256": sha})
    registry.set_champion("v1", None, "promote", run_id="r1")
    registry.set_champion("v2", registry.champion().etag, "promote", run_id="r2")
    assert cli(["champion", "rollback", "v1", "--reason", "drill"]) == 0
    assert _json(capsys)["version"] == "v1"
    assert cli(["champion", "history"]) == 0
    assert [(e["version"], e["action"]) for e in _json(capsys)] == [("v1", "promote"), ("v2", "promote"),
                                                                   ("v1", "rollback")]
    assert cli(["champion", "rollback", "v7"]) == 2
    assert "no model version 'v7'" in capsys.readouterr().err
