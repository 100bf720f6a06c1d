"""Whoever can write to the registry bucket but lacks the training side's private key runs no code anywhere.

The scenario of issue #10: a pickle that runs a command when unpickled, a manifest with its matching
sha256, and the champion pointer moved to it. Nothing that reads the registry (the service, the
pipeline's evaluate, the CLI, rollback) may execute it, and no signature but the training side's is
accepted.
"""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from cross_sell.__main__ import main as cli
from cross_sell.data import synthetic
from cross_sell.model.evaluation import Gate, UnreadableChampion
from cross_sell.operations import training as stages
from cross_sell.storage import signing
from cross_sell.storage.artifacts import RunArtifacts
from cross_sell.storage.registry import IntegrityError, ModelRegistry, RegistryError, sha256_bytes
from cross_sell.storage.signing import SignatureError
from serving_support import PREFIX, promote, publish, train_model
from support import ROOT, SIGNING_KEY, SIGNING_PUBLIC_KEY, scaled


class _RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _plant(s3, bucket: str, version: str, marker: Path, signer=None) -> None:
    """The attacker's version: a malicious pickle under every model name, a manifest with their sha256
    (signed with `signer`, their own key, if any), and the champion pointer moved to it (signed the same
    way: they do not hold the training side's key)."""
    import base64

    from cross_sell.storage.registry import record_bytes

    payload = pickle.dumps(_RunsACommand(marker))
    manifest = {"version": version, "threshold": 0.5, "model_input": "schema-codes-float64/1",
                "artifacts": {"model.joblib": sha256_bytes(payload), "model.onnx": sha256_bytes(payload)}}
    body = json.dumps(manifest).encode()
    for name in ("model.joblib", "model.onnx"):
        s3.put_object(Bucket=bucket, Key=f"{PREFIX}/models/{version}/{name}", Body=payload)
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/models/{version}/manifest.json", Body=body)
    champion = json.loads(s3.get_object(Bucket=bucket, Key=f"{PREFIX}/champion.json")["Body"].read())
    record = {**champion["record"], "version": version, "sequence": champion["record"]["sequence"] + 1,
              "model_key": f"{PREFIX}/models/{version}/model.joblib"}
    pointer = {"record": record, "signature": champion["signature"]}
    if signer is not None:
        s3.put_object(Bucket=bucket, Key=f"{PREFIX}/models/{version}/manifest.sig", Body=signer.sign(body))
        pointer["signature"] = base64.b64encode(signer.sign(record_bytes(record))).decode()
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/champion.json", Body=json.dumps(pointer).encode())


@pytest.fixture
def registry(s3, bucket, signer, verifier):
    registry = ModelRegistry(s3, bucket, PREFIX, verifier)
    publish(registry, "v1", train_model(1), signer)
    promote(registry, "v1")
    return registry


@pytest.fixture
def attacker_key(tmp_path):
    private, _ = signing.generate_key_pair(tmp_path / "attacker")
    return signing.ManifestSigner.from_file(private)


@pytest.mark.parametrize("signed_by", ["nobody", "another key"])
def test_a_planted_pickle_runs_nowhere(registry, s3, s3_env, bucket, tmp_path, attacker_key, monkeypatch,
                                       signed_by, capsys):
    from serving.app import create_app
    from serving.config import ServingConfig

    marker = tmp_path / "pwned"
    app = create_app(ServingConfig(s3_bucket=bucket, s3_prefix=PREFIX, public_key_path=str(SIGNING_PUBLIC_KEY),
                                   poll_seconds=3600), start_poller=False)
    _plant(s3, bucket, "evil", marker, attacker_key if signed_by == "another key" else None)

    # The service: refuses the pointer (not the training side's signature), keeps serving v1, says why.
    holder = app.extensions["champion"]
    for _ in range(3):
        assert holder.refresh() is False
    info = app.test_client().get("/model").json
    assert info["version"] == "v1" and "signature check failed" in info["last_reload_error"]
    assert ("Signature mismatch" if signed_by == "nobody" else "Key mismatch") in info["last_reload_error"]

    # The pipeline's evaluate: the gate fails closed, nothing is pushed.
    artifacts = RunArtifacts(s3, bucket, PREFIX, "run-after-attack")
    extracted = stages.extract(synthetic.generate(4_000, seed=5).to_dict("records"), artifacts)
    transformed = stages.transform(artifacts, extracted["snapshot"], seed=1,
                                   validated=stages.validate(artifacts, extracted["snapshot"], min_rows=1_000))
    from datetime import datetime, timezone

    trained = stages.train(artifacts, transformed, seed=1, run_started=datetime(2026, 11, 30, tzinfo=timezone.utc))
    with pytest.raises(UnreadableChampion, match="fails closed"):
        stages.evaluate(artifacts, registry, trained, transformed["splits"]["test"], Gate(0.6, 0.002))

    # The CLI: evaluate the champion (the pointer is refused) or the planted version by name (its manifest
    # is refused), roll back to the planted version (refused).
    monkeypatch.setenv("CROSS_SELL_S3_BUCKET", bucket)
    monkeypatch.setenv("CROSS_SELL_S3_PREFIX", PREFIX)
    monkeypatch.setenv("CROSS_SELL_SIGNING_KEY", str(SIGNING_KEY))
    csv = tmp_path / "holdout.csv"
    synthetic.generate(500, seed=6).to_csv(csv, index=False)
    refusal = "no signature" if signed_by == "nobody" else "Key mismatch"
    assert cli(["evaluate", "--csv", str(csv)]) == 2
    assert "signature check failed" in capsys.readouterr().err
    assert cli(["evaluate", "--csv", str(csv), "--model", "evil"]) == 2
    assert refusal in capsys.readouterr().err
    promote(registry, "v1")  # the training side puts v1 back, then someone tries to roll back to the plant
    assert cli(["champion", "rollback", "evil", "--reason", "test", "--by", "mallory", "--force"]) == 2
    assert refusal in capsys.readouterr().err and registry.champion().version == "v1"
    assert not marker.exists()


def test_signatures_are_checked_before_any_hash(registry, s3, bucket, attacker_key, verifier):
    manifest_key = registry.manifest_key("v1")
    body = s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()
    assert registry.manifest("v1")["version"] == "v1"

    # Re-signed with another key: refused.
    good_signature = s3.get_object(Bucket=bucket, Key=registry.version_file_key("v1", "manifest.sig"))["Body"].read()
    s3.put_object(Bucket=bucket, Key=registry.version_file_key("v1", "manifest.sig"), Body=attacker_key.sign(body))
    with pytest.raises(SignatureError, match="Key mismatch"):
        registry.manifest("v1")
    # An edited manifest under the right signature: refused.
    s3.put_object(Bucket=bucket, Key=registry.version_file_key("v1", "manifest.sig"), Body=good_signature)
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=body.replace(b'"threshold"', b'"threshold" ', 1))
    with pytest.raises(SignatureError, match="mismatch"):
        registry.manifest("v1")
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=body)
    # A validly signed manifest copied to another version's place: refused.
    for name in ("manifest.json", "manifest.sig"):
        source = s3.get_object(Bucket=bucket, Key=registry.version_file_key("v1", name))["Body"].read()
        s3.put_object(Bucket=bucket, Key=registry.version_file_key("v9", name), Body=source)
    with pytest.raises(SignatureError, match="signed for version 'v1'"):
        registry.manifest("v9")
    # No public key: nothing is trusted.
    with pytest.raises(SignatureError, match="no public key"):
        ModelRegistry(s3, bucket, PREFIX).manifest("v1")
    # A file that is not the one the signed manifest names: refused.
    s3.put_object(Bucket=bucket, Key=registry.version_file_key("v1", "profile.json"), Body=b"{}")
    with pytest.raises(IntegrityError):
        registry.artifact("v1", "model.onnx", {**registry.manifest("v1"), "artifacts": {"model.onnx": "0" * 64}})
    with pytest.raises(RegistryError, match="no model version"):
        registry.manifest("v404")


def test_the_serving_process_never_imports_a_pickle_loader(registry, s3_env, bucket):
    """Load the champion and answer a request with scikit-learn, joblib and skl2onnx unimportable and
    pickle's loaders replaced by a tripwire: what serving needs is the ONNX file and the public key."""
    script = f"""
import sys, pickle, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("sklearn", "joblib", "skl2onnx", "cloudpickle", "scipy"):
            raise ImportError(f"{{name}} is not available to the service")
sys.meta_path.insert(0, Block())
def tripwire(*args, **kwargs):
    raise AssertionError("the service unpickled something")
pickle.load = pickle.loads = tripwire
pickle.Unpickler = tripwire
sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'include')!r}]
from serving.app import create_app
from serving.config import ServingConfig
from cross_sell.data import schema
app = create_app(ServingConfig(s3_bucket={bucket!r}, s3_prefix={PREFIX!r},
                 public_key_path={str(SIGNING_PUBLIC_KEY)!r}, sample_rate=0.0), start_poller=False)
answer = app.test_client().post("/predict", json={{"records": [schema.example_record()]}})
assert answer.status_code == 200, answer.json
print(answer.json["model_version"])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=scaled(300),
                          env={**os.environ, **s3_env})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "v1"


def test_signing_leaves_no_key_material_on_disk_even_when_killed(tmp_path, monkeypatch):
    """Issue #20: a SIGKILL during signing left a copy of the private key in TMPDIR (model-signing reads the
    key from a path). The key now reaches it through a pipe; while a signature is being made (the moment a
    kill would strike), no file under TMPDIR holds it, and a process killed there leaves nothing behind."""
    import tempfile

    from support import SIGNING_KEY

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    pem = Path(SIGNING_KEY).read_bytes()
    signer = signing.ManifestSigner.from_file(SIGNING_KEY)
    seen = []
    real_sign = signer._config.sign

    def while_signing(*args):
        seen.extend(p for p in tmp_path.rglob("*") if p.is_file() and (pem in p.read_bytes()
                                                                        or b"PRIVATE KEY" in p.read_bytes()))
        return real_sign(*args)

    monkeypatch.setattr(signer._config, "sign", while_signing)
    signer.sign(b'{"version": "v1"}')
    assert seen == [] and list(tmp_path.rglob("*")) == []
    # And a signing process killed mid-signature: nothing of the key survives it in its TMPDIR.
    script = (f"import os, signal, sys; sys.path[:0] = [{str(ROOT / 'include')!r}]\n"
              "from cross_sell.storage import signing\n"
              f"signer = signing.ManifestSigner.from_file({str(SIGNING_KEY)!r})\n"
              "signer._config.sign = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
              "signer.sign(b'{}')\n")
    killed = subprocess.run([sys.executable, "-c", script], env={**os.environ, "TMPDIR": str(tmp_path)},
                            timeout=scaled(120))
    assert killed.returncode == -9
    assert not any(pem in p.read_bytes() or b"PRIVATE KEY" in p.read_bytes()
                   for p in tmp_path.rglob("*") if p.is_file())


def test_an_onnx_file_naming_external_data_loads_nothing_from_the_working_directory(tmp_path, monkeypatch):
    """Issue #20: ONNX Runtime could load external-data files relative to the working directory (only the
    signature stood in the way). The service's sessions point external data at a folder no file can be in."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from cross_sell.model.onnx_model import OnnxModel

    weights = numpy_helper.from_array(np.ones((2,), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["probabilities"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [2])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    monkeypatch.chdir(tmp_path)
    onnx.save_model(model, "m.onnx", save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").exists()  # the file an attacker would plant beside the worker
    with pytest.raises(Exception, match="External data path"):
        OnnxModel((tmp_path / "m.onnx").read_bytes(), threshold=0.5)
