"""Benchmark: the monitoring DAG's work over 30 days of samples and outcomes for 381,109 customers.

    python benchmarks/bench_monitoring.py [--customers 381109] [--days 30] [--samples-per-day 3000]

Set-up (not measured): a champion (100,000 training rows) with its profile and calibration; a scoring
run of every customer each week; each day's sampled request rows (with the answers) in S3; one outcome
per customer, spread over the days, in the local nx-27017 server. Measured: `monitoring.run_day` for each
of the days, then `build_report`, as this process's CPU time (the task work; the local MongoDB-wire and
S3 servers are other processes) and as wall time (which also holds those servers' time).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from datetime import time as clock_time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "include"), str(ROOT / "benchmarks")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=381_109)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--samples-per-day", type=int, default=3_000)
    args = parser.parse_args()

    import numpy as np
    from pymongo import MongoClient

    from cross_sell.data import schema, synthetic
    from cross_sell.model import evaluation, features, model_input, onnx_export, training
    from cross_sell.monitoring import daily as monitoring
    from cross_sell.monitoring import drift, skew
    from cross_sell.scoring import batch as scoring
    from cross_sell.storage.artifacts import RunArtifacts
    from cross_sell.storage.registry import ModelRegistry
    from cross_sell.storage.signing import ManifestSigner, ManifestVerifier, generate_key_pair
    from devstack import local_services

    first = date(2026, 10, 1)
    work = Path(tempfile.mkdtemp(prefix="bench-monitoring-"))
    private, public = generate_key_pair(work / "keys")
    s3_server, mongo = local_services.start_s3(bucket="bench-monitoring"), local_services.start_mongo()
    try:
        s3 = local_services.s3_client_for(s3_server)
        registry = ModelRegistry(s3, "bench-monitoring", "vi", ManifestVerifier.from_file(public))
        parts = features.split(synthetic.generate(100_000, seed=1), seed=1)
        estimator = training.train(parts["train"], parts["validation"], seed=1)
        threshold = training.threshold(estimator)
        exported = onnx_export.export(estimator, threshold, model_input.from_frame(parts["test"]))
        y, probability, _ = evaluation.predictions(estimator, parts["test"])
        registry.publish({"version": "bench", "threshold": threshold, "model_input": model_input.LAYOUT},
                         {"model.onnx": exported.onnx,
                          "profile.json": json.dumps(drift.profile(parts["train"])).encode(),
                          "calibration.json": json.dumps(evaluation.calibration_table(y, probability)).encode()},
                         ManifestSigner.from_file(private))
        registry.set_champion("bench", None, "promote", ManifestSigner.from_file(private), run_id="bench")
        model, version, calibration = scoring.served(registry)
        customers = synthetic.generate(args.customers, seed=9)
        documents = customers[list(schema.column_names(schema.SCORING))].to_dict("records")
        scoring_runs = []  # what the DAG reads back from the cross_sell_scores Asset events
        for week in range(0, args.days, 7):  # a scoring run each week, the day before
            when = datetime.combine(first + timedelta(days=week - 1), clock_time(5), tzinfo=timezone.utc)
            scoring_runs.append(scoring.score(
                iter(documents), RunArtifacts(s3, registry.bucket, "vi", f"weekly-{week}", area="scores"),
                model, version, when, calibration))
        rng = np.random.default_rng(0)
        for day in range(args.days):
            rows = customers.sample(args.samples_per_day, random_state=day)[list(schema.FEATURES)]
            rows["probability"] = model.probability(model_input.from_frame(rows))
            rows["model_version"], rows["sampled_at"] = version, f"{first + timedelta(days=day)}T12:00:00+00:00"
            key = skew.sample_key("vi", datetime.combine(first + timedelta(days=day), clock_time(12),
                                                         tzinfo=timezone.utc), "bench")
            s3.put_object(Bucket=registry.bucket, Key=key,
                          Body="\n".join(json.dumps(r, default=str) for r in rows.to_dict("records")).encode())
        outcomes = MongoClient(mongo.url)["bench"]["customer_outcomes"]
        days_of = rng.integers(0, args.days, len(customers))
        outcomes.insert_many([{"_id": int(i), "id": int(i), "Response": int(r),
                               "observed_at": f"{first + timedelta(days=int(d))}T18:00:00+00:00"}
                              for i, r, d in zip(customers["id"], customers["Response"], days_of, strict=True)],
                             ordered=False)

        cpu, started = time.process_time(), time.perf_counter()
        results = [monitoring.run_day(first + timedelta(days=d), registry, outcomes, scoring_runs)
                   for d in range(args.days)]
        report_key = monitoring.build_report(s3, registry.bucket, "vi", days=args.days)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - started
        copy = ROOT / ".local" / "reports" / "monitoring-benchmark.html"
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(s3.get_object(Bucket=registry.bucket, Key=report_key)["Body"].read())
    finally:
        s3_server.stop()
        mongo.stop()
    realized = [r for r in results]
    print(f"monitoring benchmark: {args.days} days, {args.customers:,} customers with one outcome each, "
          f"{args.samples_per_day:,} sampled rows a day, weekly scoring runs")
    print(f"task work (this process's CPU time): {cpu:.1f} s (target <= 60 s: {'PASS' if cpu <= 60 else 'FAIL'}); "
          f"wall time incl. the local nx-27017 and S3 servers: {wall:.1f} s")
    alerts = sum(len(r["alerts"]) for r in realized)
    print(f"days monitored: {len(realized)}, alerts raised: {alerts}; the trend page: {copy}")


if __name__ == "__main__":
    main()
