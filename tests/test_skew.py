"""Serving samples request rows to S3; the skew report compares them with the champion's training data."""

import json

import pytest

from cross_sell import __main__ as cli
from cross_sell.data import schema, synthetic
from cross_sell.monitoring import drift, skew
from cross_sell.storage.registry import ModelRegistry
from serving.app import create_app
from serving.config import ServingConfig
from serving_support import PREFIX, promote, train_model
from support import SIGNING_PUBLIC_KEY


@pytest.fixture
def registry(s3, s3_env, bucket, monkeypatch, signer, verifier):
    monkeypatch.setenv("CROSS_SELL_S3_BUCKET", bucket)
    monkeypatch.setenv("CROSS_SELL_S3_PREFIX", PREFIX)
    registry = ModelRegistry(s3, bucket, PREFIX, verifier)
    trained = train_model(1)
    profile = drift.profile(synthetic.generate(20_000, seed=1))
    registry.publish({"version": "v1", **trained["manifest"]},
                     {**trained["files"], "profile.json": json.dumps(profile).encode()}, signer)
    promote(registry, "v1")
    return registry


def _client(registry, rate):
    config = ServingConfig(s3_bucket=registry.bucket, s3_prefix=PREFIX, poll_seconds=3600, sample_rate=rate,
                           public_key_path=str(SIGNING_PUBLIC_KEY))
    app = create_app(config, start_poller=False)
    return app.extensions["sampler"], app.test_client()


def _records(n, seed, age_shift=0):
    frame = synthetic.generate(n, seed=seed)[list(schema.FEATURES)]
    frame["Age"] = (frame["Age"] + age_shift).clip(upper=100)
    return [{k: getattr(v, "item", lambda v=v: v)() for k, v in r.items()} for r in frame.to_dict("records")]


def test_sampled_rows_reach_s3_from_small_and_large_requests(registry):
    sampler, client = _client(registry, rate=1.0)
    small, large = _records(5, seed=2), _records(200, seed=3)
    for records in (small, large):
        assert client.post("/predict", json={"records": records}).status_code == 200
    assert client.post("/predict", json={"records": [{"Age": "old"}]}).status_code == 422  # refused: not sampled
    key = sampler.flush()
    assert key.startswith(f"{PREFIX}/{skew.SAMPLES}/date=")
    samples = skew.read_samples(registry.s3, registry.bucket, PREFIX)
    assert len(samples) == 205 and set(samples["model_version"]) == {"v1"}
    sent = [{name: r[name] for name in schema.FEATURES} for r in small + large]
    assert samples[list(schema.FEATURES)].to_dict("records") == sent  # the rows as validated, in order


def test_sample_rate_keeps_about_that_share(registry):
    sampler, client = _client(registry, rate=0.1)
    for seed in range(10):
        client.post("/predict", json={"records": _records(100, seed=seed)})
    sampler.flush()
    assert 60 <= len(skew.read_samples(registry.s3, registry.bucket, PREFIX)) <= 140  # binomial(1000, 0.1)
    assert _client(registry, rate=0.0)[0].choose(1_000) == []


def test_skew_cli_flags_serving_data_unlike_training_data(registry, capsys):
    assert cli.main(["skew"]) == 2  # nothing sampled yet
    sampler, client = _client(registry, rate=1.0)
    client.post("/predict", json={"records": _records(2_000, seed=4)})
    sampler.flush()
    assert cli.main(["skew", "--fail-on-skew"]) == 0
    assert "drifted: none" in capsys.readouterr().out

    client.post("/predict", json={"records": _records(4_000, seed=5, age_shift=15)})
    sampler.flush()
    assert cli.main(["skew", "--fail-on-skew"]) == 1
    out = capsys.readouterr().out
    assert "6,000 sampled serving rows vs the training data of v1" in out and "drifted: Age" in out
    assert cli.main(["skew", "--thresholds", '{"Age": 5}']) == 0


def test_a_handful_of_sampled_rows_is_not_judged(registry, capsys):
    """Issue #32: `skew` declared drift on 6 of 10 features from 4 sampled rows. Below the minimum sample
    it says so and judges nothing; the monitoring day neither judges skew nor prediction drift, nor alerts."""
    from datetime import datetime, timezone

    from cross_sell.monitoring import daily as monitoring
    from cross_sell.monitoring import drift

    sampler, client = _client(registry, rate=1.0)
    client.post("/predict", json={"records": _records(4, seed=4, age_shift=40)})
    sampler.flush()
    assert cli.main(["skew", "--fail-on-skew"]) == 0
    out = capsys.readouterr().out
    assert f"4 sampled serving rows: too few rows to judge (n = 4 < {drift.MIN_ROWS_TO_JUDGE})" in out
    assert "DRIFT" not in out
    today = datetime.now(timezone.utc).date()
    samples = skew.read_samples(registry.s3, registry.bucket, PREFIX, today, today)

    class NoOutcomes:
        name = "customer_outcomes"

        def find(self, *args, **kwargs):
            return []

    result, alerts = monitoring.monitor_day(today, registry, NoOutcomes(), samples=samples)
    assert result["skew"] == {"rows": 4, "judged": False, "reason": drift.too_few(4)}
    assert result["prediction_psi"] is None and alerts == []


def test_a_planted_sample_line_is_left_out_and_never_stops_skew_or_the_shadow_report(registry, capsys):
    """Red team (#30): one line that is no JSON in serving-samples/ (anyone who can write the bucket) made
    `skew`, `shadow report` and the monitoring day die with a traceback. Such lines, and rows the service
    would never have written, are left out and counted."""
    sampler, client = _client(registry, rate=1.0)
    client.post("/predict", json={"records": _records(2_000, seed=4)})
    sampler.flush()
    day = skew.read_samples(registry.s3, registry.bucket, PREFIX)["sampled_at"].iloc[0][:10]
    planted = b'not json\n[1, 2]\n{"Gender": "Robot", "Age": "old"}\n{"Age": 30}\n'
    registry.s3.put_object(Bucket=registry.bucket, Key=f"{PREFIX}/serving-samples/date={day}/x.jsonl", Body=planted)
    assert len(skew.read_samples(registry.s3, registry.bucket, PREFIX)) == 2_000
    assert cli.main(["skew"]) == 0
    assert "2,000 sampled serving rows vs the training data of v1" in capsys.readouterr().out
    assert cli.main(["shadow", "report"]) == 2  # no shadow set: said, not a traceback
    assert "no sampled rows scored in shadow yet" in capsys.readouterr().err
