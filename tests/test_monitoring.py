"""Monitoring and shadow: realized performance from outcomes, prediction drift, skew, the trend page, and a
challenger scored beside the champion off the request path."""

import json
from datetime import date, datetime, timezone

import numpy as np
import pytest

from cross_sell.__main__ import main as cli
from cross_sell.data import schema, synthetic
from cross_sell.monitoring import daily as monitoring
from cross_sell.monitoring import drift
from cross_sell.scoring import batch as scoring
from cross_sell.storage.artifacts import RunArtifacts
from cross_sell.storage.registry import ModelRegistry
from serving_support import PREFIX, promote, session_signer, train_model
from support import SIGNING_KEY, SIGNING_PUBLIC_KEY

DAY = date(2026, 11, 29)


def _customers(n, seed):
    frame = synthetic.generate(n, seed=seed)
    return frame, [{k: getattr(v, "item", lambda v=v: v)() for k, v in r.items()}
                   for r in frame[list(schema.column_names(schema.SCORING))].to_dict("records")]


@pytest.fixture
def registry(s3, bucket, signer, verifier, monkeypatch, s3_env):
    monkeypatch.setenv("CROSS_SELL_S3_BUCKET", bucket)
    monkeypatch.setenv("CROSS_SELL_S3_PREFIX", PREFIX)
    registry = ModelRegistry(s3, bucket, PREFIX, verifier)
    for version, seed in (("v1", 1), ("v2", 2)):
        trained = train_model(seed)
        model = trained["model"]
        test = synthetic.generate(3_000, seed=40 + seed)
        from cross_sell.model import evaluation

        y, probability, _ = evaluation.predictions(model, test)
        files = {**trained["files"], "profile.json": json.dumps(drift.profile(test)).encode(),
                 "calibration.json": json.dumps(evaluation.calibration_table(y, probability)).encode()}
        registry.publish({"version": version, **trained["manifest"]}, files, signer)
    promote(registry, "v1")
    return registry


def _score_everyone(registry, frame_docs, when):
    model, version, calibration = scoring.served(registry)
    artifacts = RunArtifacts(registry.s3, registry.bucket, PREFIX, f"scoring-{when:%Y%m%d}", area="scores")
    return scoring.score(iter(frame_docs), artifacts, model, version, when, calibration)


def test_realized_performance_prediction_drift_and_the_trend_page(registry, mongo_db):
    frame, documents = _customers(4_000, seed=61)
    scoring_runs = [_score_everyone(registry, documents, datetime(2026, 11, 28, 5, tzinfo=timezone.utc))]
    outcomes = mongo_db["customer_outcomes"]
    outcomes.insert_many([{"_id": int(r.id), "id": int(r.id), "Response": int(r.Response),
                           "observed_at": f"{DAY.isoformat()}T10:00:00+00:00"} for r in frame.itertuples()])
    result, alerts = monitoring.monitor_day(DAY, registry, outcomes, scoring_runs)
    realized = result["realized"]
    assert realized["outcomes"] == 4_000 and realized["rows"] == 4_000 and realized["scored_by"] == "v1"
    assert 0.78 < realized["roc_auc"] < 0.95 and alerts == []  # the synthetic truth: the model does well
    assert abs(realized["observed_rate"] - realized["mean_probability"]) < 0.05  # calibrated
    # The same customers with outcomes that contradict the model: realized ROC-AUC falls and alerts.
    for r in frame.itertuples():
        outcomes.update_one({"_id": int(r.id)}, {"$set": {"Response": 1 - int(r.Response)}})
    result, alerts = monitoring.monitor_day(DAY, registry, outcomes, scoring_runs)
    assert result["realized"]["roc_auc"] < 0.25 and any("realized ROC-AUC" in a for a in alerts)
    # Scores swapped in the bucket after their run recorded them are refused, not joined with outcomes.
    from cross_sell.storage.objects import CustodyError

    registry.s3.put_object(Bucket=registry.bucket, Key=scoring_runs[0]["scores"]["key"], Body=b"PAR1 planted")
    with pytest.raises(CustodyError, match="scores.parquet"):
        monitoring.monitor_day(DAY, registry, outcomes, scoring_runs)
    registry.s3.delete_object(Bucket=registry.bucket, Key=scoring_runs[0]["scores"]["key"])
    scoring_runs = [_score_everyone(registry, documents, datetime(2026, 11, 28, 5, tzinfo=timezone.utc))]
    # Served probabilities from another population drift from the champion's test-split ones.
    import pandas as pd

    skewed = synthetic.generate(2_000, seed=62)
    skewed["Previously_Insured"] = 0
    skewed["Vehicle_Damage"] = "Yes"
    model, _ = registry.served_model("v1")
    from cross_sell.model import model_input

    skewed["probability"] = model.probability(model_input.from_frame(skewed))
    samples = skewed[[*schema.column_names(schema.SERVING), "probability"]]
    result, alerts = monitoring.monitor_day(DAY, registry, outcomes, scoring_runs, samples=pd.DataFrame(samples))
    assert result["prediction_psi"] > monitoring.PSI_LIMIT and any("prediction drift" in a for a in alerts)
    assert set(result["skew"]["drifted"]) >= {"Previously_Insured", "Vehicle_Damage"}
    page = monitoring.trend_report([result, {**result, "day": "2026-11-30"}])
    assert page.count("data:image/png;base64,") == 1 and "<script" not in page and "2026-11-30" in page


def test_outcomes_load_from_a_csv_keyed_on_the_customer(tmp_path, mongo_db, capsys):
    path = tmp_path / "outcomes.csv"
    path.write_text("id,Response,observed_at\n1,1,2026-11-29\n2,0,2026-11-29T08:30:00+01:00\n3,1,\n")
    uri = f"mongodb://{mongo_db.client.address[0]}:{mongo_db.client.address[1]}"
    assert cli(["load-outcomes", "--csv", str(path), "--mongo-uri", uri, "--database", mongo_db.name,
                "--observed-at", "2026-11-30T00:00:00"]) == 0
    loaded = capsys.readouterr()
    assert json.loads(loaded.out)["inserted"] == 3 and json.loads(loaded.out)["ids_matching_no_customer"] == 3
    assert "3 outcome(s) name no customer" in loaded.err  # this database has no customers: said, not hidden
    stored = {d["_id"]: d["observed_at"] for d in mongo_db["customer_outcomes"].find()}
    assert stored == {1: "2026-11-29T00:00:00+00:00", 2: "2026-11-29T07:30:00+00:00",
                      3: "2026-11-30T00:00:00+00:00"}
    path.write_text("id,Response\n4,2\n")
    assert cli(["load-outcomes", "--csv", str(path), "--mongo-uri", uri, "--database", mongo_db.name]) == 2
    refused = capsys.readouterr().err
    assert "line 2, column Response: expected 0 (did not buy) or 1 (bought), got '2'" in refused
    assert refused.startswith("error: ") and mongo_db["customer_outcomes"].estimated_document_count() == 3


def test_a_challenger_in_shadow_scores_the_sampled_rows_off_the_request_path(registry, capsys, mongo_db):
    from serving.app import create_app
    from serving.config import ServingConfig

    assert cli(["shadow", "set", "v2", "--reason", "passed the floor, not the margin",
                "--signing-key", str(SIGNING_KEY)]) == 0
    capsys.readouterr()
    app = create_app(ServingConfig(s3_bucket=registry.bucket, s3_prefix=PREFIX, sample_rate=1.0,
                                   public_key_path=str(SIGNING_PUBLIC_KEY)), start_poller=False)
    assert app.test_client().get("/model").json["shadow"]["version"] == "v2"
    _, documents = _customers(300, seed=63)
    records = [{k: v for k, v in d.items() if k != "id"} for d in documents]
    answered = app.test_client().post("/predict", json={"records": records}).json
    assert answered["model_version"] == "v1"  # the champion answers; the shadow never does
    app.extensions["sampler"].flush()
    samples = [json.loads(line) for item in registry.s3.list_objects_v2(Bucket=registry.bucket,
                                                                         Prefix=f"{PREFIX}/serving-samples/")["Contents"]
               for line in registry.s3.get_object(Bucket=registry.bucket, Key=item["Key"])["Body"].read().splitlines()]
    assert len(samples) == 300 and {s["shadow_version"] for s in samples} == {"v2"}
    v2, _ = registry.served_model("v2")
    from cross_sell.model import model_input

    expected = v2.probability(model_input.from_rows(samples))
    assert np.max(np.abs(np.array([s["shadow_probability"] for s in samples]) - expected)) <= 1e-9
    served = [p["probability"] for p in answered["predictions"]]
    assert [s["probability"] for s in samples] == served  # the champion's own answers, as sent
    # The report: agreement and distributions; realized metrics once outcomes exist.
    outcomes = mongo_db["customer_outcomes"]
    frame, _ = _customers(300, seed=63)
    mongo_db["customers"].insert_many([{**d, "_id": d["id"]} for d in documents])
    outcomes.insert_many([{"_id": int(r.id), "id": int(r.id), "Response": int(r.Response),
                           "observed_at": "2026-11-29T00:00:00+00:00"} for r in frame.itertuples()])
    from cross_sell.monitoring import shadow_report

    report = shadow_report.report(registry, None, outcomes, mongo_db["customers"])["shadows"]["v2"]
    # Two models of the same family on the same kind of data rank alike (the figure depends on the family:
    # 0.74 for two 4,000-row LightGBM fits of different seeds); it is the Pearson correlation of the pairs.
    pairs = np.array([[s["probability"], s["shadow_probability"]] for s in samples])
    assert report["rows"] == 300 and 0.5 < report["label_agreement"] <= 1 and report["correlation"] > 0.5
    assert report["correlation"] == pytest.approx(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1])
    assert report["realized"]["champion"]["rows"] == report["realized"]["shadow"]["rows"] == 300
    assert report["realized"]["shadow"]["version"] == "v2" and report["realized"]["shadow"]["roc_auc"] > 0.7
    # The command shows the same comparison (without --mongo-uri: no realized metrics, and it says so).
    assert cli(["shadow", "report"]) == 0
    shown = json.loads(capsys.readouterr().out)["shadows"]["v2"]
    assert shown["rows"] == 300 and shown["label_agreement"] == report["label_agreement"]
    assert isinstance(shown["realized"], str) and shown["correlation"] == report["correlation"]
    # Cleared: the workers stop scoring in shadow at their next poll.
    assert cli(["shadow", "clear", "--signing-key", str(SIGNING_KEY)]) == 0
    assert app.extensions["shadow"].refresh() is False and app.extensions["shadow"].current is None


def test_an_unsigned_shadow_is_refused_like_a_champion(registry, s3):
    from serving.app import create_app
    from serving.config import ServingConfig

    registry.set_shadow("v2", session_signer(), "test")
    s3.delete_object(Bucket=registry.bucket, Key=registry.version_file_key("v2", "manifest.sig"))
    app = create_app(ServingConfig(s3_bucket=registry.bucket, s3_prefix=PREFIX, sample_rate=1.0,
                                   public_key_path=str(SIGNING_PUBLIC_KEY)), start_poller=False)
    shadow = app.test_client().get("/model").json["shadow"]
    assert shadow["version"] is None and "no signature" in shadow["last_reload_error"]


def test_a_day_without_data_says_what_is_missing_and_how_to_provide_it(registry, mongo_db, caplog):
    """Issue #21: with no samples and no outcomes the day's JSON was all null and the page showed three
    empty plots, blank cells and 14 matplotlib "categorical units" lines in the task log."""
    import logging

    caplog.set_level(logging.INFO)
    result = monitoring.run_day(DAY, registry, mongo_db["customer_outcomes"])
    daily = json.loads(registry.s3.get_object(Bucket=registry.bucket, Key=result["daily"]["key"])["Body"].read())
    assert "SERVING_SAMPLE_RATE" in daily["missing"]["skew"] and "no day has samples yet" in daily["missing"]["skew"]
    assert "python -m cross_sell load-outcomes" in daily["missing"]["realized"]
    page = monitoring.trend_report([daily, {**daily, "day": "2026-11-30"}])
    assert "data:image/png" not in page and "No figure to draw yet" in page
    assert "What these days lack" in page and "load-outcomes" in page and "–" in page
    assert not [r for r in caplog.records if "categorical units" in r.getMessage()]
    from cross_sell.params import ParamError  # a misspelt feature is refused, samples or not (issue #21)

    with pytest.raises(ParamError, match=r"unknown feature\(s\) \['Agee'\]; valid: Gender"):
        monitoring.run_day(DAY, registry, mongo_db["customer_outcomes"], skew_thresholds={"Agee": 0.1})


def test_an_empty_day_names_the_day_param_and_the_days_that_have_samples(registry, mongo_db):
    """Issue #32: the default day (yesterday) was empty while today's requests were sampled, and the page
    blamed a missing `--serve`: it names the `day` param, where it looked, and the days that do have samples."""
    from cross_sell.monitoring import skew

    for day in ("2026-11-30", "2026-12-01"):  # requests sampled on other days than the one monitored
        registry.s3.put_object(Bucket=registry.bucket, Key=f"{skew.samples_prefix(PREFIX)}date={day}/x.jsonl",
                               Body=b"")
    result = monitoring.run_day(DAY, registry, mongo_db["customer_outcomes"])
    daily = json.loads(registry.s3.get_object(Bucket=registry.bucket, Key=result["daily"]["key"])["Body"].read())
    said = daily["missing"]["skew"]
    assert f"no sampled serving rows for {DAY}" in said and "`day` param" in said, said
    assert f"serving-samples/date={DAY}/" in said and "days with samples: 2026-11-30, 2026-12-01" in said, said
    assert "--serve" not in said
    assert "`day` param" in daily["missing"]["realized"] and "observed_at on that day" in daily["missing"]["realized"]
    page = monitoring.trend_report([daily])
    assert "days with samples: 2026-11-30, 2026-12-01" in page and "`day` param" in page
