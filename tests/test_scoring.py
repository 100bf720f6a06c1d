"""Batch scoring against the local S3 and MongoDB-wire servers: quarantine, deciles, campaign, write-back."""

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cross_sell.data import schema, synthetic
from cross_sell.model import evaluation
from cross_sell.scoring import batch as scoring
from cross_sell.scoring import deciles
from cross_sell.scoring import engine as batches
from cross_sell.storage.artifacts import RunArtifacts
from cross_sell.storage.registry import ModelRegistry
from serving_support import PREFIX, promote, train_model
from support import SIGNING_PUBLIC_KEY

SCORED_AT = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)
CUSTOMERS = 6_000


def customers(n=CUSTOMERS, seed=21) -> list[dict]:
    frame = synthetic.generate(n, seed=seed)[list(schema.column_names(schema.SCORING))]
    return [{k: getattr(v, "item", lambda v=v: v)() for k, v in row.items()} for row in frame.to_dict("records")]


@pytest.fixture
def registry(s3, bucket, signer, verifier):
    registry = ModelRegistry(s3, bucket, PREFIX, verifier)
    trained = train_model(1)
    calibration = {"edges": [0.1, 0.3], "rows": [10, 10, 10], "observed_rate": [0.02, 0.2, 0.5],
                   "mean_probability": [0.05, 0.2, 0.45]}
    import json

    registry.publish({"version": "v1", **trained["manifest"]},
                     {**trained["files"], "calibration.json": json.dumps(calibration).encode()}, signer)
    promote(registry, "v1")
    return registry


def _run(registry, name="score-run"):
    return RunArtifacts(registry.s3, registry.bucket, PREFIX, name, area="scores")


def test_invalid_customers_are_quarantined_with_reasons_and_never_scored(registry):
    documents = customers(200)
    documents[3]["Age"] = "forty"
    documents[7]["Vehicle_Age"] = "brand new"
    del documents[9]["Gender"]
    documents[11]["id"] = -5
    model, version, calibration = scoring.served(registry)
    batch = batches.BatchScorer(model).score(documents)
    assert len(batch.ids) == 196 and len(batch.probability) == 196
    reasons = {row["id"]: row["problems"] for row in batch.quarantined}
    assert set(reasons) == {documents[i]["id"] for i in (3, 7, 9)} | {-5}
    assert reasons[documents[3]["id"]][0]["field"] == "Age" and "number" in reasons[documents[3]["id"]][0]["reason"]
    assert "not one of" in reasons[documents[7]["id"]][0]["reason"]
    assert reasons[documents[9]["id"]] == [{"field": "Gender", "reason": "missing value"}]
    assert reasons[-5][0]["field"] == "id"
    assert not set(batch.ids) & set(reasons)


def test_scores_deciles_and_lift_from_the_champions_calibration(registry):
    documents = customers()
    documents[0]["Vintage"] = -1
    model, version, calibration = scoring.served(registry)
    scored = scoring.score(iter(documents), _run(registry), model, version, SCORED_AT, calibration, batch_rows=1_000)
    assert scored["rows"] == CUSTOMERS - 1 and scored["quarantined"] == 1 and scored["model_version"] == "v1"
    frame = pd.read_parquet(_download(registry, scored["scores"]["key"]))
    assert list(frame.columns) == ["id", "probability", "label", "decile", "model_version", "scored_at"]
    assert len(frame) == CUSTOMERS - 1 and set(frame["scored_at"]) == {SCORED_AT.isoformat()}
    assert sorted(frame["id"]) == sorted(d["id"] for d in documents[1:])  # six batches through one buffer
    counts = frame["decile"].value_counts().sort_index()
    assert list(counts.index) == list(range(1, 11)) and counts.min() >= 0.09 * len(frame)  # tenths
    by_decile = frame.groupby("decile")["probability"].agg(["min", "max"])
    assert all(by_decile["min"].iloc[d] >= by_decile["max"].iloc[d + 1] for d in range(9))  # 1 = most likely
    summary = registry.s3.get_object(Bucket=registry.bucket, Key=scored["summary"]["key"])["Body"].read()
    import json

    deciles = json.loads(summary)["deciles"]
    assert deciles[0]["lift"] > 1.5 > deciles[-1]["lift"] and deciles[-1]["cumulative_gain"] == pytest.approx(1)
    # Expected buyers per call: the calibration's observed rate for each customer's probability, averaged.
    rate = evaluation.calibrated_rate(calibration, frame["probability"].to_numpy())
    expected = pd.Series(rate).groupby(frame["decile"].to_numpy()).mean()
    assert [d["expected_buyers_per_call"] for d in deciles] == pytest.approx(expected.tolist())


def test_batch_scores_equal_the_services_answers(registry, s3_env):
    from serving.app import create_app
    from serving.config import ServingConfig

    documents = customers(300, seed=5)
    model, version, calibration = scoring.served(registry)
    scored = scoring.score(iter(documents), _run(registry), model, version, SCORED_AT, calibration)
    frame = pd.read_parquet(_download(registry, scored["scores"]["key"])).set_index("id")
    app = create_app(ServingConfig(s3_bucket=registry.bucket, s3_prefix=PREFIX,
                                   public_key_path=str(SIGNING_PUBLIC_KEY), sample_rate=0.0), start_poller=False)
    records = [{k: v for k, v in d.items() if k != "id"} for d in documents]
    answer = app.test_client().post("/predict", json={"records": records}).json
    served = np.array([p["probability"] for p in answer["predictions"]])
    batch = frame.loc[[d["id"] for d in documents], "probability"].to_numpy()
    assert answer["model_version"] == version
    assert np.max(np.abs(served - batch)) <= 1e-6
    one = app.test_client().post("/predict", json={"records": records[:1]}).json  # the few-row path too
    assert abs(one["predictions"][0]["probability"] - batch[0]) <= 1e-6


def test_campaign_takes_the_top_share_or_top_n_ranked(registry):
    model, version, calibration = scoring.served(registry)
    scored = scoring.score(iter(customers()), _run(registry), model, version, SCORED_AT, calibration)
    share = scoring.campaign(_run(registry), scored, top_share=0.05)
    listed = pd.read_csv(_download(registry, share["csv_key"]))
    assert share["customers"] == len(listed) == int(np.ceil(CUSTOMERS * 0.05))
    assert listed["rank"].tolist() == list(range(1, len(listed) + 1))
    assert listed["probability"].is_monotonic_decreasing and set(listed["decile"]) == {1}
    everyone = pd.read_parquet(_download(registry, scored["scores"]["key"]))
    assert listed["probability"].min() >= everyone["probability"].quantile(0.95) - 1e-5
    top = scoring.campaign(_run(registry), scored, top_share=None, top_n=123)
    assert top["customers"] == 123 and top["expected_buyers"] == pytest.approx(123 * 0.5, rel=0.2)


def test_publishing_is_an_idempotent_upsert_keyed_on_the_customer(registry, mongo_db):
    model, version, calibration = scoring.served(registry)
    artifacts = _run(registry, "idempotent")
    scored = scoring.score(iter(customers()), artifacts, model, version, SCORED_AT, calibration)
    first_bytes = registry.s3.get_object(Bucket=registry.bucket, Key=scored["scores"]["key"])["Body"].read()
    first = scoring.publish(artifacts, scored, mongo_db["customer_scores"])
    assert first["inserted"] == CUSTOMERS and first["updated"] == 0
    again = scoring.score(iter(customers()), artifacts, model, version, SCORED_AT, calibration)  # a re-run
    assert again == scored
    assert registry.s3.get_object(Bucket=registry.bucket, Key=again["scores"]["key"])["Body"].read() == first_bytes
    second = scoring.publish(artifacts, again, mongo_db["customer_scores"])
    assert second["inserted"] == 0 and second["updated"] == CUSTOMERS
    assert mongo_db["customer_scores"].estimated_document_count() == CUSTOMERS
    document = mongo_db["customer_scores"].find_one({"_id": 1})
    assert set(document) == {"_id", "id", "probability", "label", "decile", "model_version", "scored_at", "run_id"}
    assert document["model_version"] == "v1" and document["run_id"] == "idempotent"


def test_scores_replaced_between_score_and_publish_are_refused(registry, mongo_db):
    """Issue #20's fourth break: a scores file swapped in the bucket between `score` and `publish` had its
    arbitrary probabilities, deciles and extra fields upserted for the CRM. Both readers now check it
    against the sha256 `score` recorded (in XCom), and nothing is written."""
    import io

    from cross_sell.storage.objects import CustodyError

    model, version, calibration = scoring.served(registry)
    artifacts = _run(registry, "swapped")
    scored = scoring.score(iter(customers()), artifacts, model, version, SCORED_AT, calibration)
    frame = pd.read_parquet(_download(registry, scored["scores"]["key"]))
    frame["probability"], frame["decile"], frame["note"] = 0.999, 1, "call me"
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    registry.s3.put_object(Bucket=registry.bucket, Key=scored["scores"]["key"], Body=buffer.getvalue())
    with pytest.raises(CustodyError, match=f"{scored['scores']['key']} is not the object its writer recorded"):
        scoring.publish(artifacts, scored, mongo_db["customer_scores"])
    with pytest.raises(CustodyError, match="scores.parquet"):
        scoring.campaign(artifacts, scored, top_share=0.1)
    assert mongo_db["customer_scores"].estimated_document_count() == 0


def test_without_a_champion_scoring_has_nothing_to_do_and_says_why(s3, bucket, verifier):
    from cross_sell.errors import NothingToDo

    with pytest.raises(NothingToDo, match="no champion"):
        scoring.served(ModelRegistry(s3, bucket, PREFIX, verifier))


def _download(registry, key):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / Path(key).name
    registry.s3.download_file(registry.bucket, key, str(path))
    return path


def test_score_cli_scores_a_file_like_the_dag(registry, s3_env, tmp_path, monkeypatch, capsys):
    import json

    from cross_sell.__main__ import main as cli

    monkeypatch.setenv("CROSS_SELL_S3_BUCKET", registry.bucket)
    monkeypatch.setenv("CROSS_SELL_S3_PREFIX", PREFIX)
    frame = synthetic.generate(500, seed=8)  # a Kaggle file: the label is there, and ignored
    path = tmp_path / "customers.csv"
    frame.to_csv(path, index=False)
    lines = path.read_text().splitlines()
    lines[5] = lines[5].replace("Yes", "Perhaps", 1).replace(",No,", ",Perhaps,", 1)
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "scores.csv"
    assert cli(["score", "--csv", str(path), "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["scored"] == 499 and result["quarantined"] == 1 and result["model_version"] == "v1"
    bad = json.loads((tmp_path / "scores.csv.quarantine.jsonl").read_text())
    assert bad["line"] == 6 and bad["problems"][0]["field"] == "Vehicle_Damage"
    written = pd.read_csv(out).set_index("id")
    model, version, calibration = scoring.served(registry)
    documents = [d for d in customers(500, seed=8) if str(d["id"]) != bad["document"]["id"]]  # CSV text
    batch = batches.BatchScorer(model).score(documents)
    assert np.max(np.abs(written.loc[batch.ids, "probability"].to_numpy() - batch.probability)) <= 1e-12


def test_scoring_a_file_into_itself_is_refused_and_loses_nothing(registry, s3_env, tmp_path, monkeypatch, capsys):
    """Red team (#31): `score --csv X --out X` emptied X before reading it (the customers' file lost)."""
    from cross_sell.__main__ import main as cli

    monkeypatch.setenv("CROSS_SELL_S3_BUCKET", registry.bucket)
    monkeypatch.setenv("CROSS_SELL_S3_PREFIX", PREFIX)
    path = tmp_path / "customers.csv"
    synthetic.generate(20, seed=8).to_csv(path, index=False)
    before = path.read_bytes()
    assert cli(["score", "--csv", str(path), "--out", str(path)]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_the_in_place_histogram_counts_as_numpys_does():
    probability = np.concatenate([np.random.default_rng(0).random(50_000), deciles.BIN_BOUNDS[::97],
                                  [0.0, 1.0, np.nextafter(1.0, 0.0)]])  # bin bounds themselves, both ends
    histogram = np.zeros(deciles.HISTOGRAM_BINS, dtype=np.int64)
    deciles.add_to_histogram(histogram, probability)
    np.testing.assert_array_equal(histogram, np.histogram(probability, bins=deciles.HISTOGRAM_BINS, range=(0, 1))[0])


def test_batches_are_filled_and_scored_piece_by_piece_with_the_rows_that_pass(registry):
    from concurrent.futures import ThreadPoolExecutor

    from cross_sell.model import model_input

    model, _, _ = scoring.served(registry)
    documents = customers(1_030, seed=8)
    for row in (0, 99, 100, 640, 1_029):  # first and last rows of pieces and of the stream
        documents[row]["Vehicle_Damage"] = "Maybe"
    with ThreadPoolExecutor(max_workers=1) as inference:
        scored = [batches.ScoredBatch(b.ids.copy(), b.probability.copy(), b.labels.copy(), b.quarantined)
                   for b in batches.scored_batches(iter(documents), model, rows=250, clock={"reading": 0.0},
                                                   inference=inference, piece=100)]  # one buffer, reused
    assert [len(b.ids) + len(b.quarantined) for b in scored] == [250, 250, 250, 250, 30]
    good = [d for i, d in enumerate(documents) if i not in (0, 99, 100, 640, 1_029)]
    assert np.concatenate([b.ids for b in scored]).tolist() == [d["id"] for d in good]
    assert [q["id"] for b in scored for q in b.quarantined] == [documents[i]["id"] for i in (0, 99, 100, 640, 1_029)]
    expected = model.probability(model_input.from_rows(good))
    np.testing.assert_allclose(np.concatenate([b.probability for b in scored]), expected, rtol=0, atol=1e-7)
    assert np.concatenate([b.labels for b in scored]).tolist() == model.labels(expected).tolist()


def test_customers_who_objected_are_neither_scored_nor_on_any_campaign_list(registry, mongo_db):
    """Issue #22: marketing consent. Opted-out customers (and, with the param, ones contacted recently) are
    left out before anything is computed, counted by reason, and lose the scores they had for the CRM."""
    from cross_sell.privacy import consent

    model, version, calibration = scoring.served(registry)
    artifacts = _run(registry, "consent")
    everyone = scoring.score(iter(customers()), artifacts, model, version, SCORED_AT, calibration)
    scoring.publish(artifacts, everyone, mongo_db["customer_scores"])
    top = pd.read_parquet(_download(registry, everyone["scores"]["key"])).sort_values("probability").tail(50)
    objected, called = top["id"].tolist()[:30], top["id"].tolist()[30:]
    for customer in objected:
        consent.record_consent(mongo_db["customer_consent"], customer, allowed=False)
    consent.record_consent(mongo_db["customer_consent"], called[0], allowed=True)  # said yes: stays
    mongo_db["customer_contacts"].insert_many([{"id": c, "contacted_at": "2026-11-29T10:00:00+00:00"}
                                               for c in called[1:]])
    excluded = consent.excluded(mongo_db["customer_consent"], mongo_db["customer_contacts"], contacted_within_days=7,
                                now=SCORED_AT)
    again = _run(registry, "consent-2")
    scored = scoring.score(iter(customers()), again, model, version, SCORED_AT, calibration, excluded=excluded)
    assert scored["excluded"] == {consent.OPTED_OUT: 30, consent.CONTACTED: 19}
    assert scored["rows"] == everyone["rows"] - 49
    listed = scoring.campaign(again, scored, top_share=None, top_n=200)
    names = set(pd.read_csv(_download(registry, listed["csv_key"]))["id"])
    assert not names & set(objected) and not names & set(called[1:]) and called[0] in names
    assert not set(pd.read_parquet(_download(registry, scored["scores"]["key"]))["id"]) & set(objected)
    published = scoring.publish(again, scored, mongo_db["customer_scores"])
    assert published["removed"] == 49 and mongo_db["customer_scores"].count_documents({"_id": {"$in": objected}}) == 0
    summary = json.loads(registry.s3.get_object(Bucket=registry.bucket, Key=scored["summary"]["key"])["Body"].read())
    assert summary["excluded"] == scored["excluded"]


_CELLS = {  # CSV cells: well-formed, and the odd ones files hold
    c.name: st.one_of(st.sampled_from([str(v) for v in c.allowed]) if c.allowed else
                      st.integers(-5, 600).map(str) | st.floats(-10.0, 1e6, allow_nan=False).map(str),
                      st.sampled_from(["", " 44 ", "28.0", "28.5", "1e1", "nan", "inf", "+7", "x",
                                       "99999999999999999999", "Male", "Yes", "1-2 Year"]))
    for c in schema.columns(schema.SCORING)}


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.fixed_dictionaries(_CELLS), min_size=1, max_size=40),
       drop=st.sampled_from([None, "Vintage", "Gender"]))
def test_csv_frames_are_judged_as_the_frame_engine_judged_them(rows, drop):
    """Issue #24: the CLI's CSV scoring (`BatchScorer.prepare`, now the column-wise engine) quarantines the
    same rows with the same reasons as the pandas path it replaced (tests/reference_validation.py), and
    the rows it keeps become the same model input."""
    import reference_validation

    raw = pd.DataFrame(rows, dtype=object)
    if drop:
        raw = raw.drop(columns=[drop])
    prepared = batches.BatchScorer(None).prepare(raw, allow_text=True)
    typed, problems = reference_validation.validate_frame(raw, schema.SCORING, allow_text=True)
    expected: dict[int, list[dict]] = {}
    for problem in problems:
        for row in range(len(raw)) if problem.row is None else [problem.row]:
            expected.setdefault(row, []).append({"field": problem.column, "reason": problem.reason})
    assert {i: q["problems"] for i, q in enumerate(prepared.quarantined)} == \
        {i: reasons for i, (_, reasons) in enumerate(sorted(expected.items()))}
    good = np.ones(len(raw), dtype=bool)
    good[list(expected)] = False
    if good.any():
        np.testing.assert_array_equal(prepared.matrix, reference_validation._from_frame(typed[good]).astype(np.float32))
        assert prepared.ids.tolist() == typed[schema.KEY][good].astype("int64").tolist()
