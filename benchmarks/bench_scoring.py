"""Benchmark: batch scoring of the whole customer base, its throughput and memory, at 381k and 3.8M rows.

    python benchmarks/bench_scoring.py [--rows 381109 3811090] [--batch-rows 20000]

Each size runs in a fresh process: a model trained on 100,000 synthetic rows (ONNX, as served) scores
customers that a generator produces batch by batch (as a MongoDB cursor streams them), through
`scoring.score` and `scoring.campaign`, with a local S3 server for the files. Figures:
* model work: rows/s of checking, scoring and writing, timed inside `scoring.score` (the time spent
  waiting for documents is reported separately: here that is the generator; in the DAG, MongoDB);
* memory: the process's peak resident size during scoring above its size before (libraries and model
  loaded), against one batch's DataFrame (`memory_usage(deep=True)` of the raw documents' frame). The
  peak includes the 5,000 documents the stand-in holds at a time, as pymongo's cursor holds its batch.
The MongoDB read itself is measured on the local nx-27017 server for the smaller size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "include"), str(ROOT / "benchmarks")]

from bench_pipeline import peak_rss_mb, reset_peak_rss, rss_mb  # noqa: E402

MB = 1024 * 1024


def customer_stream(rows: int, piece: int = 5_000):
    """Synthetic customers as documents, `piece` at a time (a MongoDB cursor holds one 5,000-document
    batch); generating them is this benchmark's stand-in for the MongoDB read."""
    from cross_sell import schema, synthetic

    names = list(schema.column_names(schema.SCORING))
    for start in range(0, rows, piece):
        frame = synthetic.generate(min(piece, rows - start), seed=start, first_id=start + 1)[names]
        yield from frame.to_dict("records")


def child(rows: int, batch_rows: int, out: str) -> None:
    import pandas as pd

    from cross_sell import features, model_input, onnx_export, scoring, synthetic, training
    from cross_sell.artifacts import RunArtifacts
    from cross_sell.onnx_model import OnnxModel
    from devstack import local_services

    s3 = local_services.start_s3(bucket="bench-scoring")
    try:
        parts = features.split(synthetic.generate(100_000, seed=1), seed=1)
        estimator = training.train(parts["train"], parts["validation"], seed=1)
        onnx_bytes = onnx_export.to_onnx(estimator)
        import onnxruntime  # noqa: F401  (the library, not the model)

        without_model = rss_mb()
        model = OnnxModel(onnx_bytes, training.threshold(estimator), threads=1)  # as `served`
        model.probability(model_input.example())
        model_mb = rss_mb() - without_model
        sample = list(customer_stream(batch_rows))
        batch_mb = pd.DataFrame.from_records(sample, columns=scoring.FIELDS).memory_usage(deep=True).sum() / MB
        del sample, parts, estimator
        artifacts = RunArtifacts(local_services.s3_client_for(s3), "bench-scoring", "vi", f"bench-{rows}",
                                 area="scores")
        # Library code is not data: loaded before the baseline.
        import gc
        from concurrent.futures import ThreadPoolExecutor  # noqa: F401

        import pyarrow.parquet  # noqa: F401

        gc.collect()
        reset_peak_rss()
        before = rss_mb()
        started = time.perf_counter()
        scored = scoring.score(customer_stream(rows), artifacts, model, "bench",
                               datetime(2026, 11, 30, tzinfo=timezone.utc), None, batch_rows)
        wall = time.perf_counter() - started
        peak = peak_rss_mb() - before
        summary = artifacts.get_json(scored["summary_key"])
        campaign_started = time.perf_counter()
        scoring.campaign(artifacts, scored, top_share=0.1)
        campaign = time.perf_counter() - campaign_started
        Path(out).write_text(json.dumps({
            "rows": rows, "batch_rows": batch_rows, "batch_mb": batch_mb, "model_mb": model_mb, "peak_above_mb": peak,
            "scoring_seconds": summary["seconds"]["scoring"], "waiting_seconds": summary["seconds"]["reading"],
            "finishing_seconds": summary["seconds"]["finishing"],
            "wall": wall, "campaign_seconds": campaign,
        }))
    finally:
        s3.stop()


def mongo_read_seconds(rows: int) -> tuple[float, float]:
    """Load `rows` customers into nx-27017, then time reading them back with the scoring projection."""
    from pymongo import MongoClient

    from cross_sell import loader, scoring, synthetic
    from devstack import local_services

    mongo = local_services.start_mongo()
    try:
        collection = MongoClient(mongo.url)["bench"]["customers"]
        loader.upsert(collection, synthetic.generate(rows, seed=3), progress=False)
        started = time.perf_counter()
        count = sum(1 for _ in collection.find({}, projection={"_id": False, **{f: True for f in scoring.FIELDS}},
                                               batch_size=5_000))
        return time.perf_counter() - started, count
    finally:
        mongo.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[381_109, 3_811_090])
    parser.add_argument("--batch-rows", type=int, default=20_000)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--skip-mongo", action="store_true", help="do not time the nx-27017 read")
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), int(args.child[1]), args.child[2])
        return
    results = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            subprocess.run([sys.executable, __file__, "--child", str(rows), str(args.batch_rows), str(out)], check=True)
            results.append(json.loads(out.read_text()))
    print(f"batch scoring benchmark: batches of {args.batch_rows:,} customers, model as ONNX (1 thread, "
          f"overlapping the next batch's checks)")
    print(f"{'customers':>10s} {'model work s':>12s} {'rows/s':>10s} {'deciles+up s':>12s} {'waiting s':>10s} "
          f"{'campaign s':>10s} {'peak MB':>8s} {'batch MB':>9s} {'peak / batch':>12s} {'model MB':>9s}")
    for r in results:
        print(f"{r['rows']:10,d} {r['scoring_seconds']:12.2f} {r['rows'] / r['scoring_seconds']:10,.0f} "
              f"{r['finishing_seconds']:12.2f} {r['waiting_seconds']:10.2f} {r['campaign_seconds']:10.2f} "
              f"{r['peak_above_mb']:8.0f} {r['batch_mb']:9.1f} "
              f"{r['peak_above_mb'] / r['batch_mb']:12.2f} {r['model_mb']:9.1f}")
    print("targets: >= 200,000 rows/s of model work; peak <= 2x one batch's DataFrame (plus the model), whatever "
          "the number of customers")
    if not args.skip_mongo:
        seconds, count = mongo_read_seconds(min(args.rows))
        print(f"reading {count:,} customers back from the local nx-27017 server (scoring projection): {seconds:.1f} s "
              f"({count / seconds:,.0f} rows/s); real MongoDB is about ten times faster")


if __name__ == "__main__":
    main()
