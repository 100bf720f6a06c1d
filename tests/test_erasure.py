"""Erasure finds every copy, its receipt states what is left, and receipts are evidence (issue #30).

Through the CLI (`python -m cross_sell erase`), against the local MongoDB-wire and S3 servers: documents
written the way a CRM writes them (`{id: ..., ...}` with a generated `_id`), objects put with boto3, serving
samples written by the service's own sampler. What is left is read back independently of the erasure code.
Erasure through Airflow (the dry run's request file, scoring and monitoring afterwards) is in
tests/test_governance_runs.py.
"""

from __future__ import annotations

import base64
import csv
import io
import json

import pytest

from cross_sell.__main__ import main as cli
from cross_sell.data import casting, loader, schema, synthetic
from cross_sell.settings import Settings
from cross_sell.storage.registry import record_bytes
from support import ROOT, SIGNING_KEY

PREFIX = "vi"
GONE = [21, 22, 23]
CUSTOMER_COLLECTIONS = ("customers", "customer_scores", "customer_outcomes", "customer_consent", "customer_contacts")
ROWS_BY_ID = (".parquet", ".csv", "/quarantine.jsonl")  # the objects that hold customer rows with ids
OUTCOME_AT = "2026-11-30T00:00:00+00:00"


@pytest.fixture
def world(mongo_db, bucket, s3, s3_env, monkeypatch, tmp_path):
    """Customers loaded, a CRM's documents about them, their rows in the bucket (every kind of object the
    layout says holds rows), and the CLI's environment."""
    from cross_sell.privacy.suppression import make_key

    monkeypatch.setenv("CROSS_SELL_S3_BUCKET", bucket)
    monkeypatch.setenv("CROSS_SELL_S3_PREFIX", PREFIX)
    monkeypatch.setenv("CROSS_SELL_MONGO_DATABASE", mongo_db.name)
    monkeypatch.setenv("MONGO_URI", f"mongodb://{mongo_db.client.address[0]}:{mongo_db.client.address[1]}")
    monkeypatch.setenv("CROSS_SELL_ERASURE_KEY_FILE", str(make_key(tmp_path / "erasure.key")))
    monkeypatch.setenv("CROSS_SELL_SIGNING_KEY", str(SIGNING_KEY))
    frame = synthetic.generate(300, seed=5)
    loader.upsert(mongo_db.customers, frame, progress=False)  # keyed {_id: id, id: id}
    # The CRM writes the usual way: {id: ...} with a generated _id.
    mongo_db.customer_outcomes.insert_many([{"id": i, "Response": 1, "observed_at": OUTCOME_AT} for i in (21, 22, 50)])
    mongo_db.customer_contacts.insert_many([{"id": i, "contacted_at": OUTCOME_AT} for i in (21, 23, 51)])
    mongo_db.customer_consent.insert_many([{"id": 22, "contact_allowed": False, "updated_at": OUTCOME_AT},
                                           {"id": 52, "contact_allowed": False, "updated_at": OUTCOME_AT}])
    mongo_db.customer_scores.insert_many([{"_id": i, "id": i, "probability": 0.5} for i in (21, 22, 53)])
    ids = frame["id"].to_numpy()
    _put_parquet(s3, bucket, f"{PREFIX}/runs/r1/raw/snapshot.parquet", frame)
    _put_parquet(s3, bucket, f"{PREFIX}/runs/r1/features/train.parquet", frame.iloc[::2])
    scores = frame[["id"]].assign(probability=0.1, label=0, decile=1)
    _put_parquet(s3, bucket, f"{PREFIX}/scores/s1/scores.parquet", scores)
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/scores/s1/campaign.csv", Body=scores.to_csv(index=False).encode())
    quarantine = "\n".join(json.dumps({"id": str(i), "problems": [], "document": {"id": str(i)}}) for i in (22, 60))
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/scores/s1/quarantine.jsonl", Body=quarantine.encode())
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/scores/s1/summary.json", Body=b'{"rows": 300}')
    # Serving samples as the service writes them: request rows cast by the schema, no id. Two flushes, and a
    # first version of one of them (an older version holds their rows too).
    from serving.sampling import RequestSampler

    sampler = RequestSampler(s3, bucket, PREFIX, rate=1.0)
    requested = [int(i) for i in (21, 22, 70, 71)]
    checked = casting.check_records([_features(frame, i) for i in requested])
    sampler.add([{**checked.record(row), "probability": 0.3} for row in range(len(requested))], "v1")
    first = sampler.flush()
    body = s3.get_object(Bucket=bucket, Key=first)["Body"].read()
    s3.put_object(Bucket=bucket, Key=first, Body=body + b"\n")  # a second version of the same flush
    checked = casting.check_records([_features(frame, i) for i in (23, 72)])
    sampler.add([{**checked.record(row), "probability": 0.4} for row in range(2)], "v1")
    sampler.flush()
    assert set(GONE) <= set(ids.tolist())
    return {"frame": frame, "ids_file": _ids_file(tmp_path, GONE), "db": mongo_db}


def _features(frame, customer: int) -> dict:
    row = frame.loc[frame["id"] == customer].iloc[0]
    return {name: (row[name].item() if hasattr(row[name], "item") else row[name]) for name in schema.FEATURES}


def _put_parquet(s3, bucket, key, frame):
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def _ids_file(tmp_path, ids, name="ticket-4711"):
    path = tmp_path / f"{name}.txt"
    path.write_text("\n".join(map(str, ids)) + "\n")
    return path


def _all_versions(s3, bucket):
    return [v for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
            for v in page.get("Versions", [])]


def _ids_in(s3, bucket, key, version_id) -> set[int]:
    """Customer ids an object version holds, read independently of the erasure code."""
    import re

    import pyarrow.parquet as pq

    body = s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"].read()
    if key.endswith(".parquet"):
        table = pq.read_table(io.BytesIO(body))
        return set(table.column("id").to_pylist()) if "id" in table.column_names else set()
    text = body.decode("utf-8", "replace")
    if key.endswith(".csv"):
        return {int(r["id"]) for r in csv.DictReader(io.StringIO(text)) if r.get("id", "").isdigit()}
    return {int(m) for m in re.findall(r'"id":\s*"?(\d+)', text)}


def _sample_rows(s3, bucket, key, version_id) -> list[dict]:
    body = s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def _same_features(row: dict, features: dict) -> bool:
    return all(str(row.get(name)) == str(features[name]) or
               (isinstance(features[name], (int, float)) and float(row.get(name)) == float(features[name]))
               for name in schema.FEATURES)


def _documents_of(db, name, ids) -> list[dict]:
    """Every document of a collection that names one of `ids`, by `id` or `_id`, read without a filter."""
    return [d for d in db[name].find({}) if d.get("id") in ids or d.get("_id") in ids]


def _receipt(s3, bucket, key, verifier) -> dict:
    document = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    verifier.verify(record_bytes(document["record"]), base64.b64decode(document["signature"]), key)
    return document["record"]


def _erase(capsys, ids_file, *extra) -> tuple[int, dict | None, str]:
    code = cli(["erase", "--ids-file", str(ids_file), "--reason", "ticket 4711", "--by", "dpo", *extra])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_erasure_finds_every_copy_and_its_receipt_counts_a_rescan(world, s3, bucket, verifier, capsys):
    """Issue #30, break 4: erasure deleted MongoDB documents by `_id` only, so a CRM's `{id: ...}` documents in
    customer_outcomes and customer_contacts survived while the signed receipt said 0 there; the serving samples
    kept every erased customer's feature row. Now every collection is matched by `id` and `_id`, sample rows are
    found by the customers' feature rows (every version), the receipt's `left` comes from a re-scan (0), and an
    objection to marketing stays on the suppression list with the hash."""
    db, frame = world["db"], world["frame"]
    features = {i: _features(frame, i) for i in GONE}
    kept_rows = {i: _features(frame, i) for i in (70, 71, 72)}
    code, out, err = _erase(capsys, world["ids_file"])
    assert code == 0, err
    for name in CUSTOMER_COLLECTIONS:
        assert _documents_of(db, name, set(GONE)) == [], name
    assert len(_documents_of(db, "customer_outcomes", {50})) == 1  # other customers stay
    versions = _all_versions(s3, bucket)
    for version in versions:
        key = version["Key"]
        if "/serving-samples/" in key:
            rows = _sample_rows(s3, bucket, key, version["VersionId"])
            assert not [r for r in rows for f in features.values() if _same_features(r, f)], key
        elif key.endswith(ROWS_BY_ID):
            assert not set(GONE) & _ids_in(s3, bucket, key, version["VersionId"]), key
    samples = [r for v in versions if "/serving-samples/" in v["Key"] and v["IsLatest"]
               for r in _sample_rows(s3, bucket, v["Key"], v["VersionId"])]
    assert all(any(_same_features(r, f) for r in samples) for f in kept_rows.values())  # the others stay
    receipt = _receipt(s3, bucket, out["receipt_key"], verifier)
    assert receipt["complete"] is True and receipt["left"]["total"] == 0
    assert receipt["mongodb"]["customer_outcomes"] == {"found": 2, "deleted": 2, "left": 0}
    assert receipt["mongodb"]["customer_contacts"] == {"found": 2, "deleted": 2, "left": 0}
    assert receipt["mongodb"]["customer_consent"] == {"found": 1, "deleted": 1, "left": 0}
    assert receipt["serving_samples"]["rows_found"] == 5 and receipt["serving_samples"]["rows_left"] == 0
    assert receipt["opted_out_kept"] == 1 and receipt["sequence"] == 1
    assert not any(f'"id": {i}' in json.dumps(receipt) for i in GONE)
    listed = db[Settings.from_env().erased_collection].find({}, {"_id": True, "opted_out": True, "receipt": True})
    assert sorted((bool(d.get("opted_out")), d["receipt"]) for d in listed) == [(False, 1), (False, 1), (True, 1)]
    assert cli(["erase", "--verify"]) == 0, capsys.readouterr().out


def test_a_dry_run_changes_nothing_and_a_document_or_object_nobody_can_place_stops_the_erasure(
        world, s3, bucket, capsys):
    """Nothing fails open: a document without `id` in a customer collection, or an object under the prefix
    that the storage layout does not declare, stops the erasure before anything changes, with the reason."""
    db = world["db"]
    before = _all_versions(s3, bucket)
    db.customer_outcomes.insert_one({"customer": 21, "Response": 0})  # whose is it?
    code, _, err = _erase(capsys, world["ids_file"])
    assert code == 2 and "customer_outcomes: a document has no `id` field" in err
    for document in db.customer_outcomes.find({"customer": 21}, {"_id": True}):
        db.customer_outcomes.delete_one({"_id": document["_id"]})
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/exports/crm-dump.csv", Body=b"id\n21\n")
    code, _, err = _erase(capsys, world["ids_file"])
    assert code == 2 and "in no area of the storage layout" in err
    assert [v for v in _all_versions(s3, bucket) if "/exports/" not in v["Key"]] == before
    assert db.customers.count_documents({"_id": 21}) == 1
    assert db.erased_customers.estimated_document_count() == 0  # nobody was put on the list either
    for version in [v for v in _all_versions(s3, bucket) if "/exports/" in v["Key"]]:
        s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])

    code, out, _ = _erase(capsys, world["ids_file"], "--dry-run")
    assert code == 0 and out["dry_run"] is True and out["receipt_key"] is None
    assert out["mongodb"]["customer_outcomes"]["found"] == 2 and out["left"]["total"] > 0
    assert _all_versions(s3, bucket) == before and len(_documents_of(db, "customer_outcomes", set(GONE))) == 2


def test_a_deleted_or_overwritten_receipt_is_found(world, s3, bucket, capsys, tmp_path):
    """Issue #30, break 6: a bucket writer deleted an erasure receipt and nothing noticed. `erase --verify`
    checks every receipt: numbered without gaps, written once, signed, complete, and matching the
    suppression list (in MongoDB, out of a bucket writer's reach), so even the newest one's loss is found."""
    assert _erase(capsys, world["ids_file"])[0] == 0
    code, out, _ = _erase(capsys, _ids_file(tmp_path, [40, 41], "ticket-4712"))
    assert code == 0
    newest = out["receipt_key"]
    assert cli(["erase", "--verify"]) == 0
    assert json.loads(capsys.readouterr().out) == {"receipts_verified": 2, "problems": []}
    assert newest.endswith("/erasure/receipts/000000000002.json")  # numbered

    s3.delete_object(Bucket=bucket, Key=newest)  # a delete marker hides it
    assert cli(["erase", "--verify"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert any("hidden by a delete marker" in p for p in problems), problems
    assert any("name receipt 2, which is missing" in p for p in problems), problems
    for version in [v for v in _all_versions(s3, bucket) if v["Key"] == newest]:
        s3.delete_object(Bucket=bucket, Key=newest, VersionId=version["VersionId"])  # gone for good
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=newest):
        for marker in page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=newest, VersionId=marker["VersionId"])
    assert cli(["erase", "--verify"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert problems == ["2 erased customer(s) on the suppression list name receipt 2, which is missing or not "
                        f"verified ({newest})"]

    first = newest.replace("000000000002", "000000000001")
    forged = json.loads(s3.get_object(Bucket=bucket, Key=first)["Body"].read())
    forged["record"]["customers"] = 0
    s3.put_object(Bucket=bucket, Key=first, Body=json.dumps(forged).encode())  # overwritten, unsigned
    assert cli(["erase", "--verify"]) == 1
    problems = " ".join(json.loads(capsys.readouterr().out)["problems"])
    assert "written 2 times" in problems and "not signed by the training side's key" in problems


def test_receipts_are_under_object_lock_when_configured(world, s3, bucket, capsys, monkeypatch):
    """Receipts get the audit records' write-once protection: with CROSS_SELL_AUDIT_LOCK_DAYS, their version
    cannot be deleted (COMPLIANCE)."""
    from botocore.exceptions import ClientError

    monkeypatch.setenv("CROSS_SELL_AUDIT_LOCK_DAYS", "1")
    code, out, _ = _erase(capsys, world["ids_file"])
    assert code == 0
    head = s3.head_object(Bucket=bucket, Key=out["receipt_key"])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(ClientError):
        s3.delete_object(Bucket=bucket, Key=out["receipt_key"], VersionId=head["VersionId"])


def test_the_docs_table_is_the_storage_layout():
    """docs/data-governance.md's table of what holds customer data is `layout.markdown_table`, verbatim: the
    docs, erasure, retention and the erasure DAG read the same declaration. The DAG and the CLI run the one
    erasure operation (`erasure.erase_ids`, which opens the collections the layout declares) with their
    clients, and name no collection themselves."""
    import inspect

    from cross_sell.privacy import erasure
    from cross_sell.storage import layout

    docs = (ROOT / "docs" / "data-governance.md").read_text()
    assert layout.markdown_table(Settings()) in docs
    assert "layout.erasure_collections(" in inspect.getsource(erasure.erase_ids)
    assert "erase_ids(clients," in inspect.getsource(erasure.run_request)
    dag = (ROOT / "dags" / "cross_sell_erasure.py").read_text()
    cli_source = (ROOT / "include" / "cross_sell" / "commands.py").read_text()
    assert "erasure.run_request(run," in dag and "erasure.erase_ids(clients," in cli_source
    for source in (dag, cli_source):  # the collections erasure works on are never listed again
        assert not [name for name in ("contacts_collection", "consent_collection", "scores_collection")
                    if name in source]


def test_a_dry_run_needs_no_erasure_key_and_a_real_one_names_how_to_make_it(world, s3, bucket, capsys, monkeypatch):
    """Issue #32: `erase --dry-run` refused without an erasure key, and the error did not name `erasure-key`.
    A dry run keeps no hash, so it counts with a throwaway key; an erasure without one says how to make one."""
    monkeypatch.delenv("CROSS_SELL_ERASURE_KEY_FILE")
    before = _all_versions(s3, bucket)
    code, out, _ = _erase(capsys, world["ids_file"], "--dry-run")
    assert code == 0 and out["dry_run"] is True and out["mongodb"]["customer_outcomes"]["found"] == 2
    assert _all_versions(s3, bucket) == before
    code, _, err = _erase(capsys, world["ids_file"])
    assert code == 2 and "python -m cross_sell erasure-key" in err and "CROSS_SELL_ERASURE_KEY_FILE" in err
    assert world["db"].customers.count_documents({"_id": GONE[0]}) == 1  # nothing was erased


@pytest.mark.parametrize("stored", [" 21", "21 ", "021", "+21", "21.0"])
def test_a_crm_document_whose_id_is_text_is_erased_too(world, capsys, stored):
    """Issue #30, found by the red team: a CRM storing the id as `" 21"`, `"021"`, `"+21"` or `"21.0"` kept its
    contact and consent documents through the erasure, and the receipt said complete. Every written form of an
    id is read as the id (`suppression.as_id`), in the erasure and its re-scan alike."""
    db = world["db"]
    db.customer_contacts.insert_one({"id": stored, "contacted_at": "2026-12-01T00:00:00+00:00", "crm": True})
    db.customer_consent.insert_one({"id": stored, "contact_allowed": False, "crm": True})
    code, receipt, err = _erase(capsys, world["ids_file"])
    assert code == 0, err
    assert receipt["complete"] is True and receipt["left"]["total"] == 0
    assert [d for name in ("customer_contacts", "customer_consent") for d in db[name].find({}) if d.get("crm")] == []


@pytest.mark.parametrize("stored", ["twenty-one", {"value": 21}, True, 21.5, None], ids=repr)
def test_a_document_whose_id_is_no_id_stops_the_erasure(world, capsys, stored):
    """Red team (#30): an id stored as an object, a boolean or a fraction matched nothing, and the receipt
    said `complete` with the document still there. Whose it is cannot be told: the erasure stops, changing
    nothing, and says which collection to correct."""
    db = world["db"]
    db.customer_contacts.insert_one({"id": stored, "contacted_at": "2026-12-01T00:00:00+00:00"})
    code, _, err = _erase(capsys, world["ids_file"])
    assert code == 2 and "customer_contacts: a document" in err and "so whose it is cannot be told" in err, err
    assert db.customers.count_documents({"_id": 21}) == 1  # nothing erased before the check
    assert db[Settings.from_env().erased_collection].estimated_document_count() == 0
    assert world["db"].customers.count_documents({"_id": GONE[0]}) == 1  # nothing was erased


def test_an_unreadable_older_version_is_deleted_and_an_unreadable_current_one_stops_the_erasure(world, s3, bucket,
                                                                                              capsys):
    """A split replaced by bytes that are no Parquet file (an attacker's, or a corruption) and put back: the
    older, unreadable version cannot be shown to hold none of the customers, so it goes; a current one that
    cannot be read stops the erasure with the reason (whether it holds them cannot be told)."""
    key = f"{PREFIX}/runs/r1/features/train.parquet"
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=original + b"\0")
    s3.put_object(Bucket=bucket, Key=key, Body=original)
    code, receipt, err = _erase(capsys, world["ids_file"])
    assert code == 0 and receipt["complete"] is True, err
    assert len([v for v in _all_versions(s3, bucket) if v["Key"] == key]) == 1  # only the rewritten current one
    s3.put_object(Bucket=bucket, Key=key, Body=b"not parquet")
    code, _, err = _erase(capsys, world["ids_file"])
    assert code == 2 and "the current version cannot be read" in err


@pytest.mark.parametrize("cause", ["a line that is no id", "an object nobody can place"])
def test_a_failed_dry_run_of_a_request_leaves_no_plaintext_ids(world, s3, bucket, cause):
    """Red team (#30): the erasure DAG's operation deleted a dry run's request file only when the erasure
    itself refused; a bad line (refused while reading the ids) or an object in an undeclared area left the
    plaintext ids in the bucket."""
    from cross_sell.clients import EnvClients
    from cross_sell.privacy import erasure

    key = f"{PREFIX}/erasure/requests/ticket-9.txt"
    body = b"21\n22\n23 (duplicate of 4711)\n" if cause == "a line that is no id" else b"21\n22\n23\n"
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    if cause == "an object nobody can place":
        s3.put_object(Bucket=bucket, Key=f"{PREFIX}/exports/crm-dump.csv", Body=b"id\n99\n")  # a bucket writer's
    from cross_sell.errors import NotRetryable

    with EnvClients.from_env() as clients, pytest.raises(NotRetryable):
        erasure.run_request(clients, key, reason="art. 17", by="dpo", dry_run=True)
    assert [v for v in _all_versions(s3, bucket) if v["Key"] == key] == []
    assert world["db"].customers.count_documents({"_id": 21}) == 1  # and a dry run changed nothing
