"""Erasure, scoring and the daily check through Airflow (`dag.test()`), issue #30.

A bucket, a database and an Airflow metadata DB of this module's own; the champion is a version trained on a
recorded run of the loaded customers (no training run needed). The scenarios build on each other, in file
order: a dry run, an erasure, a CRM writing the erased customers back before scoring, a receipt deleted.
"""

from __future__ import annotations

import json

import pytest

from cross_sell.data import synthetic
from support import dag_run_stack, parse_dags

pytestmark = pytest.mark.dagrun
ROWS = 3_000
SEED = 7
GONE = [21, 22, 23]
ISOLATED = {"CROSS_SELL_S3_BUCKET": "cross-sell-governance", "CROSS_SELL_MONGO_DATABASE": "cross_sell_governance"}


@pytest.fixture(scope="module")
def stack(mongo_server, s3_server, signer, tmp_path_factory):
    from cross_sell.privacy.suppression import make_key
    from serving_support import publish_from_run

    key_file = make_key(tmp_path_factory.mktemp("erasure") / "erasure.key")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**ISOLATED, "CROSS_SELL_ERASURE_KEY_FILE": str(key_file)}.items():
            patch.setenv(name, value)
        with dag_run_stack(mongo_server, s3_server, ROWS, seed=SEED) as stack:
            database = stack["collection"].database
            for name in database.list_collection_names():
                if name != stack["settings"].mongo_collection:
                    database[name].drop()
            registry = stack["registry"]
            publish_from_run(registry, "v1", "run-v1", signer, frame=synthetic.generate(ROWS, seed=SEED))
            registry.set_champion("v1", None, "promote", signer, run_id="run-v1")
            yield {**stack, "database": database, "bag": parse_dags()}


def _states(dag_run) -> dict:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def _request(stack, name: str) -> str:
    registry, settings = stack["registry"], stack["settings"]
    key = f"{settings.s3_prefix}/erasure/requests/{name}.txt"
    body = "\n".join(map(str, GONE)).encode()
    registry.s3.put_object(Bucket=registry.bucket, Key=key, Body=body)
    registry.s3.put_object(Bucket=registry.bucket, Key=key, Body=body + b"\n")  # a second version
    return key


def _versions(stack, key: str) -> list[dict]:
    registry = stack["registry"]
    return [v for page in registry.s3.get_paginator("list_object_versions").paginate(Bucket=registry.bucket, Prefix=key)
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []) if v["Key"] == key]


def test_a_dry_run_leaves_no_plaintext_ids_behind(stack):
    """Issue #30, break 4: a dry run kept its request file, the plaintext ids. Now it counts, changes nothing,
    and deletes the request file (every version) all the same."""
    request = _request(stack, "dry-4711")
    run = stack["bag"].dags["cross_sell_erasure"].test(
        run_conf={"request": request, "reason": "ticket 4711, first a dry run", "dry_run": True})
    assert str(run.state) == "success", _states(run)
    assert _versions(stack, request) == []
    customers = stack["collection"]
    assert customers.count_documents({"_id": {"$in": GONE}}) == len(GONE)  # nothing changed
    assert stack["database"][stack["settings"].erased_collection].estimated_document_count() == 0


def test_erased_customers_a_crm_writes_back_stay_out_of_scores_campaigns_and_the_crm(stack):
    """Issue #30, break 5: a CRM re-inserting an erased (and opted-out) customer put them back in
    scores.parquet, campaign.csv and customer_scores: scoring never checked the suppression list, and the
    opt-out was erased with the customer. Now scoring leaves them out by their keyed hashes whatever the
    collections say, counts them in the summary, and the opt-out is kept with the hash."""
    import io

    import pandas as pd

    from cross_sell.privacy import consent
    from cross_sell.storage.artifacts import RunArtifacts

    database, settings, registry = stack["database"], stack["settings"], stack["registry"]
    customers = stack["collection"]
    database[settings.consent_collection].insert_one({"id": GONE[0], "contact_allowed": False})  # the CRM's way
    rows = {d["id"]: {k: v for k, v in d.items() if k != "_id"} for d in customers.find({"_id": {"$in": GONE}})}
    run = stack["bag"].dags["cross_sell_erasure"].test(
        run_conf={"request": _request(stack, "ticket-4711"), "reason": "ticket 4711", "dry_run": False})
    assert str(run.state) == "success", _states(run)
    assert customers.count_documents({"id": {"$in": GONE}}) == 0

    # The CRM writes them back, the usual way (a generated _id), with contact allowed.
    customers.insert_many([rows[i] for i in GONE])
    database[settings.consent_collection].insert_many([{"id": i, "contact_allowed": True} for i in GONE])
    scoring = stack["bag"].dags["cross_sell_scoring"].test(run_conf={"campaign_top_share": 1.0})
    assert str(scoring.state) == "success", _states(scoring)
    artifacts = RunArtifacts(registry.s3, registry.bucket, settings.s3_prefix, scoring.run_id, area="scores")

    def read(name: str) -> bytes:
        return registry.s3.get_object(Bucket=registry.bucket, Key=artifacts.key(name))["Body"].read()

    scores = pd.read_parquet(io.BytesIO(read("scores.parquet")))
    campaign = pd.read_csv(io.BytesIO(read("campaign.csv")))
    assert len(scores) == ROWS - len(GONE) and len(campaign) == ROWS - len(GONE)
    assert not set(GONE) & set(scores["id"]) and not set(GONE) & set(campaign["id"])
    published = database[settings.scores_collection]
    assert [d for d in published.find({}) if d.get("id") in GONE or d.get("_id") in GONE] == []
    summary = json.loads(read("summary.json"))
    assert summary["excluded"] == {consent.ERASED: len(GONE)}
    assert not any(str(i) in json.dumps(summary["excluded"]) for i in GONE)
    listed = list(database[settings.erased_collection].find({}))  # the objection outlived the consent document
    assert len(listed) == len(GONE) and sum(bool(d.get("opted_out")) for d in listed) == 1
    for document in customers.find({"id": {"$in": GONE}}, {"_id": True}):
        customers.delete_one({"_id": document["_id"]})


def test_the_daily_check_alerts_on_a_deleted_receipt(stack, alert_sink, capsys, monkeypatch):
    """Issue #30, break 6: a bucket writer deleted an erasure receipt and nothing listed, checked or alerted.
    The monitoring DAG's daily check now checks the receipts (and the suppression list against them) and
    alerts; the alert names the receipt, never a customer."""
    from cross_sell.__main__ import main as cli

    registry, settings = stack["registry"], stack["settings"]
    monitoring = stack["bag"].dags["cross_sell_monitoring"]
    run = monitoring.test()
    assert str(run.state) == "success", _states(run)
    assert [a for a in alert_sink if "erasure receipts" in a["reason"]] == []
    [receipt] = [v["Key"] for page in registry.s3.get_paginator("list_object_versions").paginate(
        Bucket=registry.bucket, Prefix=f"{settings.s3_prefix}/erasure/receipts/") for v in page.get("Versions", [])]
    registry.s3.delete_object(Bucket=registry.bucket, Key=receipt)  # a delete marker: gone from a listing
    run = parse_dags().dags["cross_sell_monitoring"].test()
    assert str(run.state) == "success", _states(run)
    sent = [a["reason"] for a in alert_sink if "erasure receipts" in a["reason"]]
    assert any("hidden by a delete marker" in reason for reason in sent), sent
    assert any("name receipt 1, which is missing" in reason for reason in sent), sent
    hashes = [d["_id"] for d in stack["database"][settings.erased_collection].find({})]
    assert not any(h in reason for h in hashes for reason in sent)
    for name, value in (("CROSS_SELL_S3_BUCKET", registry.bucket), ("AWS_ENDPOINT_URL", registry.s3.meta.endpoint_url),
                        ("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("MONGO_URI", f"mongodb://{stack['collection'].database.client.address[0]}:"
                                      f"{stack['collection'].database.client.address[1]}")):
        monkeypatch.setenv(name, value)
    assert cli(["erase", "--verify"]) == 1
    assert "hidden by a delete marker" in capsys.readouterr().out
