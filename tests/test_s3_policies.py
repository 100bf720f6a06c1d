"""The least-privilege S3 policies of docker/minio/, enforced by a real policy engine (moto's IAM).

minio-init gives MinIO users exactly these documents (bucket and prefix filled in); the README shows them
as the IAM policies for AWS. Here moto runs with authentication on: the training side can do what the
pipeline does and nothing outside the prefix, nor delete; the service can load the champion and write
its samples, and nothing else: it cannot rewrite the registry it serves from.
"""

import json
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError

from cross_sell.storage.registry import ModelRegistry
from devstack import local_services
from serving.champion import ChampionHolder
from serving.sampling import RequestSampler
from serving_support import promote, publish, train_model
from support import ROOT, SIGNING_PUBLIC_KEY

pytestmark = pytest.mark.servers  # processes of their own (see conftest.SERVER_FIXTURES)

BUCKET, PREFIX = "policy-registry", "vehicle-insurance"
MLFLOW_BUCKET = "policy-mlflow"


def policy(role: str) -> str:
    text = (ROOT / "docker" / "minio" / f"{role}-policy.json").read_text()
    return text.replace("@BUCKET@", BUCKET).replace("@PREFIX@", PREFIX).replace("@MLFLOW_BUCKET@", MLFLOW_BUCKET)


@pytest.fixture(scope="module")
def clients():
    """A moto server of its own (its auth switch is global), users made, then authentication switched on."""
    server = local_services.start_s3(bucket=BUCKET)
    try:
        iam = boto3.client("iam", endpoint_url=server.url, aws_access_key_id="setup", aws_secret_access_key="setup",
                           region_name="us-east-1")
        made = {}
        local_services.create_bucket(server, MLFLOW_BUCKET)
        for role in ("training", "serving", "housekeeping", "mlflow"):
            iam.create_user(UserName=role)
            iam.put_user_policy(UserName=role, PolicyName=f"cross-sell-{role}", PolicyDocument=policy(role))
            key = iam.create_access_key(UserName=role)["AccessKey"]
            made[role] = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                                      aws_access_key_id=key["AccessKeyId"],
                                      aws_secret_access_key=key["SecretAccessKey"])
        request = urllib.request.Request(f"{server.url}/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})
        assert json.loads(urllib.request.urlopen(request).read())["status"] == "ok"
        yield made
    finally:
        server.stop()


def _denied(call) -> bool:
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"] == "AccessDenied"
    return False


def test_policies_are_valid_json_naming_only_the_registry():
    for role in ("training", "serving", "housekeeping"):
        document = json.loads(policy(role))
        resources = [r for statement in document["Statement"] for r in statement["Resource"]]
        assert all(r == f"arn:aws:s3:::{BUCKET}" or r.startswith(f"arn:aws:s3:::{BUCKET}/{PREFIX}/")
                   for r in resources), resources
        actions = {a for statement in document["Statement"] for a in statement["Action"]}
        assert not any(a.endswith("*") for a in actions), actions
        assert any("Delete" in a for a in actions) == (role == "housekeeping"), (role, actions)


def test_the_training_side_publishes_and_promotes_within_its_prefix(clients, signer, verifier):
    s3 = clients["training"]
    registry = ModelRegistry(s3, BUCKET, PREFIX, verifier)
    publish(registry, "v1", train_model(1), signer)  # files, signed manifest
    promote(registry, "v1")  # conditional PUT of the pointer, audit record
    assert registry.champion().version == "v1" and registry.history()  # reads and lists
    assert registry.hidden_audit_records() == []  # lists the audit records' versions (the daily check)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/runs/r1/raw/snapshot.json", Body=b"{}")
    assert _denied(lambda: s3.put_object(Bucket=BUCKET, Key="elsewhere/x", Body=b"x"))
    assert _denied(lambda: s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/champion.json"))


def test_the_service_loads_the_champion_and_writes_samples_only(clients, signer, verifier):
    training = ModelRegistry(clients["training"], BUCKET, PREFIX, verifier)
    publish(training, "v2", train_model(2), signer)
    promote(training, "v2")
    s3 = clients["serving"]
    holder = ChampionHolder(ModelRegistry(s3, BUCKET, PREFIX, verifier), poll_seconds=3600)
    assert holder.refresh() is True and holder.current.version == "v2", holder.status.last_error
    assert holder.status.pointer_problems == []  # it read the change's audit record (and the next one's place)
    sampler = RequestSampler(s3, BUCKET, PREFIX, rate=1.0)
    sampler.add([{"Age": 44}], "v2")
    assert sampler.flush().startswith(f"{PREFIX}/serving-samples/")
    # It cannot rewrite what it serves from, read the runs, or delete anything.
    for key in (f"{PREFIX}/champion.json", f"{PREFIX}/models/v2/model.onnx", f"{PREFIX}/models/v9/manifest.json"):
        assert _denied(lambda key=key: s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")), key
    assert _denied(lambda: s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/runs/r1/raw/snapshot.json"))
    assert _denied(lambda: s3.delete_object(Bucket=BUCKET, Key=f"{PREFIX}/champion.json"))
    assert _denied(lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX))
    assert str(SIGNING_PUBLIC_KEY).endswith(".pub")  # the service holds the public key only


def test_only_the_housekeeping_user_deletes_and_only_customer_data(clients, signer, verifier):
    """Issue #22: retention and erasure delete; the training side cannot (above), and the housekeeping user
    can delete run, scoring and sample data, every version, but never the registry or the audit log."""
    from datetime import datetime, timedelta, timezone

    from cross_sell.privacy import retention

    training = ModelRegistry(clients["training"], BUCKET, PREFIX, verifier)
    publish(training, "v3", train_model(1), signer)
    promote(training, "v3")
    clients["training"].put_object(Bucket=BUCKET, Key=f"{PREFIX}/runs/old-run/raw/snapshot.parquet", Body=b"rows")
    s3 = clients["housekeeping"]
    registry = ModelRegistry(s3, BUCKET, PREFIX, verifier)
    later = datetime.now(timezone.utc) + timedelta(days=400)
    planned = retention.plan(s3, BUCKET, PREFIX, registry, retention.Policy(keep_versions=0), now=later)
    assert "old-run" in {d.unit for d in planned.deletions if d.data_class == "runs"}
    record = retention.apply(s3, BUCKET, PREFIX, planned, by="policy test")  # deletes, records
    assert record["deleted_object_versions"] >= 1
    for key in (f"{PREFIX}/models/v3/model.onnx", f"{PREFIX}/champion.json",
                f"{PREFIX}/audit/champion/000000000001.json"):
        assert _denied(lambda key=key: s3.delete_object(Bucket=BUCKET, Key=key)), key
        assert _denied(lambda key=key: s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")), key


def test_the_mlflow_server_reaches_its_artifacts_and_nothing_of_the_registry(clients):
    """Issue #26: the tracking server's MinIO user writes and reads its own bucket only."""
    s3 = clients["mlflow"]
    s3.put_object(Bucket=MLFLOW_BUCKET, Key="artifacts/1/run/model.onnx", Body=b"x")
    assert s3.get_object(Bucket=MLFLOW_BUCKET, Key="artifacts/1/run/model.onnx")["Body"].read() == b"x"
    assert _denied(lambda: s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/champion.json"))
    assert _denied(lambda: s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/champion.json", Body=b"{}"))
    assert _denied(lambda: s3.list_objects_v2(Bucket=BUCKET))


def test_the_housekeeping_user_erases_from_every_area_and_cannot_remove_a_receipt(clients, signer, verifier,
                                                                                   mongo_db, tmp_path):
    """Issue #30: erasure, as the housekeeping user, rewrites snapshots and serving samples (the service's
    own flush) and writes its receipt, which that user then cannot delete (nor hide behind a delete marker;
    a second version, which it could put, is what `erase --verify` reports)."""
    import io

    from cross_sell.data import casting, loader, schema, synthetic
    from cross_sell.privacy import erasure
    from cross_sell.privacy.suppression import make_key
    from cross_sell.settings import Settings
    from cross_sell.storage import layout

    frame = synthetic.generate(40, seed=9, first_id=9_000)
    loader.upsert(mongo_db.customers, frame, progress=False)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    clients["training"].put_object(Bucket=BUCKET, Key=f"{PREFIX}/runs/erasure-run/raw/snapshot.parquet",
                                   Body=buffer.getvalue())
    row = frame.loc[frame["id"] == 9_005].iloc[0]
    checked = casting.check_records([{n: (row[n].item() if hasattr(row[n], "item") else row[n])
                                      for n in schema.FEATURES}])
    sampler = RequestSampler(clients["serving"], BUCKET, PREFIX, rate=1.0)
    sampler.add([{**checked.record(0), "probability": 0.2}], "v3")
    assert sampler.flush()
    s3 = clients["housekeeping"]
    done = erasure.erase([9_005], s3=s3, bucket=BUCKET, prefix=PREFIX,
                         collections=layout.erasure_collections(Settings(), mongo_db.__getitem__),
                         erased=mongo_db.erased_customers, key=make_key(tmp_path / "k").read_bytes(),
                         registry=ModelRegistry(s3, BUCKET, PREFIX, verifier), request="policy", reason="test",
                         by="test", signer=signer)
    assert done.complete and done.samples["rows_found"] == 1
    assert {f.key.split("/")[1] for f in done.objects if f.action != "kept"} >= {"runs", "serving-samples"}
    version = s3.head_object(Bucket=BUCKET, Key=done.receipt_key)["VersionId"]
    assert _denied(lambda: s3.delete_object(Bucket=BUCKET, Key=done.receipt_key, VersionId=version))
    assert _denied(lambda: s3.delete_object(Bucket=BUCKET, Key=done.receipt_key))
