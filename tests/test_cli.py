"""The command line against the local servers: load, evaluate, champion show/history/rollback."""

import json

import pytest

from cross_sell.__main__ import main as cli
from cross_sell.storage.registry import ModelRegistry
from serving_support import publish, publish_from_run, train_model
from support import SIGNING_KEY


@pytest.fixture
def env(monkeypatch, s3_env, bucket):
    monkeypatch.setenv("CROSS_SELL_S3_BUCKET", bucket)
    monkeypatch.setenv("CROSS_SELL_S3_PREFIX", "vi")
    return bucket


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    path.write_bytes(train_model(1)["files"]["model.joblib"])
    return path


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


def test_evaluate_a_model_file_and_the_champion_on_a_csv(env, s3, tmp_path, model_file, capsys, signer, verifier):
    from cross_sell.data import synthetic

    csv = tmp_path / "holdout.csv"
    synthetic.generate(4_000, seed=72).to_csv(csv, index=False)
    assert cli(["evaluate", "--csv", str(csv), "--model-file", str(model_file)]) == 0
    from_file = _json(capsys)["metrics"]
    assert 0.75 < from_file["roc_auc"] < 0.95 and from_file["rows"] == 4_000

    registry = ModelRegistry(s3, env, "vi", verifier)
    publish(registry, "v1", train_model(1), signer)
    registry.set_champion("v1", None, "promote", signer, run_id="r")
    assert cli(["evaluate", "--csv", str(csv)]) == 0  # the champion's signed ONNX file
    from_champion = _json(capsys)
    assert from_champion["model"] == "v1"
    assert from_champion["metrics"]["roc_auc"] == pytest.approx(from_file["roc_auc"], abs=1e-6)
    publish(registry, "old", train_model(1), signer, model_input=None)  # saved by a release with another input
    assert cli(["evaluate", "--csv", str(csv), "--model", "old"]) == 2
    assert "takes model input None" in capsys.readouterr().err


def test_champion_show_history_and_rollback(env, s3, capsys, signer, verifier, monkeypatch):
    registry = ModelRegistry(s3, env, "vi", verifier)
    assert cli(["champion", "show"]) == 0
    assert _json(capsys)["champion"] is None
    for version in ("v1", "v2"):
        publish_from_run(registry, version, f"run-{version}", signer)  # restorable: its run is kept
    registry.set_champion("v1", None, "promote", signer, run_id="r1")
    registry.set_champion("v2", registry.champion().etag, "promote", signer, run_id="r2")
    assert cli(["champion", "rollback", "v1", "--reason", "drill", "--by", "alice"]) == 2  # signed: needs the key
    assert "needs the model-signing private key" in capsys.readouterr().err
    monkeypatch.setenv("CROSS_SELL_SIGNING_KEY", str(SIGNING_KEY))
    assert cli(["champion", "rollback", "v1", "--reason", "drill"]) == 2  # who decided is not optional
    assert "rollback needs --by NAME" in capsys.readouterr().err
    assert cli(["champion", "rollback", "v1", "--reason", "drill", "--by", "alice"]) == 0
    out, err = capsys.readouterr()
    rolled = json.loads(out)
    assert "airflow dags trigger cross_sell_scoring" in err  # how the CRM's scores follow
    assert rolled["version"] == "v1" and rolled["by"] == "alice"
    assert cli(["champion", "show"]) == 0
    shown = _json(capsys)
    assert shown["pointer"]["version"] == "v1" and shown["pointer"]["by"] == "alice" and shown["audit_problems"] == []
    assert cli(["champion", "history"]) == 0
    assert [(e["version"], e["action"]) for e in _json(capsys)] == [("v1", "promote"), ("v2", "promote"),
                                                                   ("v1", "rollback")]
    assert cli(["champion", "rollback", "v7", "--by", "alice"]) == 2
    assert "no model version 'v7'" in capsys.readouterr().err
    assert cli(["champion", "rollback", "--by", "alice"]) == 2  # every refusal the same way: "error: ..." and exit 2
    assert capsys.readouterr().err.startswith("error: rollback needs a VERSION")


@pytest.mark.parametrize("name", ["champion", "v1"])
def test_model_names_the_registry_only_and_never_opens_a_local_file(env, s3, tmp_path, capsys, signer, verifier,
                                                                    monkeypatch, name):
    """Issue #20's fifth break: `evaluate --model champion` (the default) or `--model v1` unpickled a file of
    that name in the working directory. Now --model only ever names the registry; a local pickle needs
    --model-file, whose help says that it unpickles."""
    import pickle

    from cross_sell.data import synthetic

    class Tripwire:
        def __reduce__(self):
            return (open, (str(tmp_path / "PWNED"), "w"))

    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(pickle.dumps(Tripwire()))
    csv = tmp_path / "holdout.csv"
    synthetic.generate(500, seed=3).to_csv(csv, index=False)
    registry = ModelRegistry(s3, env, "vi", verifier)
    publish(registry, "v1", train_model(1), signer)
    registry.set_champion("v1", None, "promote", signer, run_id="r")
    for command in (["evaluate", "--csv", str(csv)], ["score", "--csv", str(csv), "--out", "out.csv"]):
        assert cli([*command, "--model", name]) == 0
        assert "v1" in capsys.readouterr().out
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "out.csv.quarantine.jsonl").exists()  # "quarantine": null, and no empty file
    with pytest.raises(SystemExit):
        cli(["evaluate", "--help"])
    assert "UNPICKLES" in " ".join(capsys.readouterr().out.split())


def test_keygen_makes_a_pair_that_signs_and_verifies(tmp_path, capsys):
    from cross_sell.storage.signing import ManifestSigner, ManifestVerifier

    assert cli(["keygen", str(tmp_path / "keys")]) == 0
    made = _json(capsys)
    assert oct((tmp_path / "keys" / "signing.key").stat().st_mode & 0o777) == "0o600"
    signature = ManifestSigner.from_file(made["private_key"]).sign(b'{"version": "v1"}')
    ManifestVerifier.from_file(made["public_key"]).verify(b'{"version": "v1"}', signature, "test manifest")
    assert cli(["keygen", str(tmp_path / "keys")]) == 2  # never overwrites a key by accident
    # Red team (#31): with signing.key moved into the Airflow connection, keygen replaced the custody key
    # and the public key the readers verify with.
    kept = {name: (tmp_path / "keys" / name).read_bytes() for name in ("signing.pub", "custody.key")}
    (tmp_path / "keys" / "signing.key").unlink()
    assert cli(["keygen", str(tmp_path / "keys")]) == 2
    assert {name: (tmp_path / "keys" / name).read_bytes() for name in kept} == kept


def test_the_erasure_key_is_replaced_only_when_asked(tmp_path, capsys):
    """Every erased customer's hash is made with this key: a second `erasure-key` keeps it (exit 2, why),
    `--force` replaces it."""
    key = tmp_path / "erasure.key"
    assert cli(["erasure-key", str(key)]) == 0 and _json(capsys)["set"] == f"CROSS_SELL_ERASURE_KEY_FILE={key}"
    first = key.read_bytes()
    assert oct(key.stat().st_mode & 0o777) == "0o600" and len(first) >= 32
    assert cli(["erasure-key", str(key)]) == 2
    assert "exists (--force replaces it" in capsys.readouterr().err and key.read_bytes() == first
    assert cli(["erasure-key", str(key), "--force"]) == 0 and key.read_bytes() != first


def _bad_inputs(tmp):
    (tmp / "empty.csv").write_text("")
    (tmp / "latin1.csv").write_bytes("id,Response\n1,1\n\xe9\n".encode("latin-1"))
    (tmp / "quote.csv").write_text('id,Response\n"1,1\n')
    return {  # BAD_INPUTS names them
        "a day that is no date": ["skew", "--since", "12/01/2026"],
        "limits that are no JSON object": ["skew", "--thresholds", "{bad"],
        "a negative count": ["load", "--synthetic", "-5"],
        "an id past any integer MongoDB holds": ["load", "--synthetic", "3", "--first-id", "9" * 23],
        "a model file that is not there": ["evaluate", "--csv", str(tmp / "x.csv"), "--model-file", str(tmp / "no")],
        "an ids file that is not there": ["erase", "--ids-file", str(tmp / "none.txt"), "--reason", "r"],
        "an outcomes file that is not there": ["load-outcomes", "--csv", str(tmp / "none.csv")],
        "an empty outcomes file": ["load-outcomes", "--csv", str(tmp / "empty.csv")],
        "an outcomes file that is not UTF-8": ["load-outcomes", "--csv", str(tmp / "latin1.csv")],
        "an outcomes file with an open quote": ["load-outcomes", "--csv", str(tmp / "quote.csv")],
        "a signing key that is not there": ["champion", "rollback", "v1", "--by", "ops", "--signing-key",
                                            str(tmp / "no.key")],
    }


BAD_INPUTS = ["a day that is no date", "limits that are no JSON object", "a negative count",
              "an id past any integer MongoDB holds", "a model file that is not there", "an ids file that is not there",
              "an outcomes file that is not there", "an empty outcomes file", "an outcomes file that is not UTF-8",
              "an outcomes file with an open quote", "a signing key that is not there"]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_an_error_with_a_reason_never_a_traceback(case, tmp_path, capsys, monkeypatch):
    """Red team (#30): these ended in a Python traceback (exit 1). Each is refused with exit 2 and a line
    saying what is wrong, before anything is read from or written to a server."""
    monkeypatch.setenv("MONGO_URI", "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200")  # never reached
    inputs = _bad_inputs(tmp_path)
    assert sorted(inputs) == sorted(BAD_INPUTS)
    argv = inputs[case]
    try:
        code = cli(argv)
    except SystemExit as refused:  # argparse: the usage line and why
        code = refused.code
    err = capsys.readouterr().err
    assert code == 2 and "error:" in err and "Traceback" not in err, err


def test_a_signing_key_that_is_not_the_deployments_is_refused_before_anything_is_written(env, tmp_path, capsys,
                                                                                       signer):
    """Red team (#30): `champion rollback` with someone else's private key said "champion is v2" and left a
    pointer every reader refuses (the service kept its old model; training then failed closed)."""
    from cross_sell.storage import signing

    other, _ = signing.generate_key_pair(tmp_path / "other")
    before = _objects(env)
    assert cli(["champion", "rollback", "v1", "--by", "ops", "--force", "--signing-key", str(other)]) == 2
    assert "does not match the public key readers verify with" in capsys.readouterr().err
    assert _objects(env) == before


def _objects(bucket):
    from cross_sell.settings import s3_client

    listed = s3_client().list_object_versions(Bucket=bucket)
    return sorted((v["Key"], v["VersionId"]) for v in listed.get("Versions", []))
