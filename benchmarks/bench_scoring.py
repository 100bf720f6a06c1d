"""Benchmark: batch scoring of the whole customer base, its throughput and memory, at 381k and 3.8M rows.

    python benchmarks/bench_scoring.py [--rows 381109 3811090] [--batch-rows 20000 100000] [--cold] [--model FAMILY]

Each size runs in a fresh process: a model trained on 100,000 synthetic rows (ONNX, as served) scores
customers decoded from BSON 5,000 at a time (the stand-in for the MongoDB cursor, which decodes and
holds each 5,000-document reply), through `scoring.score` and `scoring.campaign`, with a local S3 server
for the files. Figures:
* model work: rows/s of checking, scoring and writing, timed inside `scoring.score` (the time spent
  waiting for documents is reported separately: here the stand-in's decoding; in the DAG, MongoDB);
* memory: the process's peak resident size during scoring above its size before, against one batch's
  DataFrame (`memory_usage(deep=True)` of the documents as a frame). Before: libraries and model loaded,
  their code paths warmed by scoring 2,000 customers in batches of 1,000 (unless --cold), and the C heap
  trimmed (`malloc_trim`), so that memory freed earlier in the process cannot hide what scoring takes.
  "code MB" is the part of the growth that is file-backed (library code paged in on first use), not data.
The MongoDB read itself is measured on the local nx-27017 server for the smaller size. `--model`: the model
family scored with (`cross_sell.model_families`; default the deployment's, CROSS_SELL_MODEL).
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "include"), str(ROOT / "benchmarks")]

from bench_pipeline import _status_mb, peak_rss_mb, reset_peak_rss, rss_mb  # noqa: E402

MB = 1024 * 1024


def encoded_customers(rows: int = 100_000) -> list[bytes]:
    """Synthetic customers as BSON documents, made before the measurement starts."""
    import bson

    from cross_sell.data import schema, synthetic

    frame = synthetic.generate(rows, seed=3)[list(schema.column_names(schema.SCORING))]
    return [bson.encode({k: getattr(v, "item", lambda v=v: v)() for k, v in row.items()})
            for row in frame.to_dict("records")]


def customer_stream(rows: int, pool: list[bytes], piece: int = 5_000):
    """This benchmark's stand-in for the MongoDB cursor: `rows` customers (ids 1..rows, features cycling
    through `pool`) decoded from BSON `piece` at a time, as pymongo decodes and holds each 5,000-document
    reply."""
    import bson

    for start in range(0, rows, piece):
        count = min(piece, rows - start)
        first = start % len(pool)
        raw = b"".join(pool[first:first + count] + pool[:max(0, first + count - len(pool))])
        documents = collections.deque(bson.decode_all(raw))  # pymongo's cursor: a deque it pops from
        del raw
        for number in range(start + 1, start + count + 1):
            document = documents.popleft()
            document["id"] = number
            yield document


def child(rows: int, batch_rows: int, warm: bool, out: str, mongo_url: str | None = None) -> None:
    """One measurement in this fresh process; with `mongo_url`, customers come from that server's cursor
    (as in the DAG) instead of the stand-in."""
    import pandas as pd

    from cross_sell.data import synthetic
    from cross_sell.model import features, model_input, onnx_export, training
    from cross_sell.model.onnx_model import OnnxModel
    from cross_sell.scoring import batch as scoring
    from cross_sell.scoring import engine as batches
    from cross_sell.storage.artifacts import RunArtifacts
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
        if mongo_url:
            from pymongo import MongoClient

            collection = MongoClient(mongo_url)["bench"]["customers"]
            projection = {"_id": False, **{f: True for f in batches.FIELDS}}

            def customers(count: int):
                return collection.find({}, projection=projection, batch_size=5_000).limit(count)
        else:
            pool = encoded_customers()

            def customers(count: int):
                return customer_stream(count, pool)
        sample = list(customers(batch_rows))
        batch_mb = pd.DataFrame.from_records(sample, columns=batches.FIELDS).memory_usage(deep=True).sum() / MB
        del sample, parts, estimator
        artifacts = RunArtifacts(local_services.s3_client_for(s3), "bench-scoring", "vi", f"bench-{rows}",
                                 area="scores")
        # Library code is not data: loaded before the baseline. Importing is not enough (the first Parquet
        # write pages in ~8 MB of library code), so a small scoring run goes first, in batches of 1,000 so
        # that ONNX Runtime's buffers for a full batch still count; then the heap gives back what it freed.
        import ctypes
        import gc

        if warm:
            scoring.score(customers(2_000), RunArtifacts(artifacts.s3, "bench-scoring", "vi", "warm-up",
                                                               area="scores"),
                          model, "bench", datetime(2026, 11, 30, tzinfo=timezone.utc), None, 1_000)
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        reset_peak_rss()
        before, code_before = rss_mb(), _status_mb("RssFile")
        started = time.perf_counter()
        scored = scoring.score(customers(rows), artifacts, model, "bench",
                               datetime(2026, 11, 30, tzinfo=timezone.utc), None, batch_rows)
        wall = time.perf_counter() - started
        peak, code = peak_rss_mb() - before, _status_mb("RssFile") - code_before
        timing = artifacts.get_json(artifacts.key("timing.json"))
        campaign_started = time.perf_counter()
        scoring.campaign(artifacts, scored, top_share=0.1)
        campaign = time.perf_counter() - campaign_started
        Path(out).write_text(json.dumps({
            "rows": rows, "batch_rows": batch_rows, "batch_mb": batch_mb, "model_mb": model_mb,
            "peak_above_mb": peak, "code_mb": code,
            "scoring_seconds": timing["scoring"], "waiting_seconds": timing["reading"],
            "finishing_seconds": timing["finishing"],
            "wall": wall, "campaign_seconds": campaign, "warm": warm,
        }))
    finally:
        s3.stop()


def run_child(rows: int, batch_rows: int, cold: bool, mongo_url: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        subprocess.run([sys.executable, __file__, "--child", str(rows), str(batch_rows), "cold" if cold else "warm",
                        str(out), *([mongo_url] if mongo_url else [])], check=True)
        return json.loads(out.read_text())


def mongo_figures(rows: int, batch_rows: int, cold: bool) -> tuple[float, int, dict]:
    """Load `rows` customers into nx-27017, time reading them back with the scoring projection, then
    score them from the server's cursor in a fresh process, as the DAG does."""
    from pymongo import MongoClient

    from cross_sell.data import loader, synthetic
    from cross_sell.scoring import engine as batches
    from devstack import local_services

    mongo = local_services.start_mongo()
    try:
        collection = MongoClient(mongo.url)["bench"]["customers"]
        loader.upsert(collection, synthetic.generate(rows, seed=3), progress=False)
        started = time.perf_counter()
        count = sum(1 for _ in collection.find({}, projection={"_id": False, **{f: True for f in batches.FIELDS}},
                                               batch_size=5_000))
        seconds = time.perf_counter() - started
        return seconds, count, run_child(rows, batch_rows, cold, mongo.url)
    finally:
        mongo.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[381_109, 3_811_090])
    parser.add_argument("--batch-rows", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--cold", action="store_true",
                        help="no warm-up run: the peak then also holds library code paged in on first use")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--skip-mongo", action="store_true", help="do not measure with the nx-27017 server")
    parser.add_argument("--model", help="model family (default: CROSS_SELL_MODEL, else model_families.DEFAULT)")
    args = parser.parse_args()
    if args.model:  # the children train with the deployment's family, which this sets
        import os

        os.environ["CROSS_SELL_MODEL"] = args.model
    if args.child:
        child(int(args.child[0]), int(args.child[1]), args.child[2] == "warm", args.child[3], *args.child[4:])
        return
    results = [run_child(rows, batch_rows, args.cold) for batch_rows in args.batch_rows for rows in args.rows]
    from cross_sell.model import model_families
    from cross_sell.scoring.batch import INFERENCE_ROWS

    print(f"batch scoring benchmark: model family {model_families.get(None).name} as ONNX (1 thread, scoring "
          f"{INFERENCE_ROWS:,} customers at a time while the next are checked); "
          f"{'cold: no' if args.cold else 'a'} warm-up run before the baseline")
    print(f"{'customers':>10s} {'batch':>7s} {'model work s':>12s} {'rows/s':>9s} {'deciles+up s':>12s} "
          f"{'waiting s':>9s} {'campaign s':>10s} {'peak MB':>7s} {'code MB':>7s} {'batch MB':>8s} "
          f"{'peak / batch':>12s} {'model MB':>8s}")
    for r in results:
        print(f"{r['rows']:10,d} {r['batch_rows']:7,d} {r['scoring_seconds']:12.2f} "
              f"{r['rows'] / r['scoring_seconds']:9,.0f} {r['finishing_seconds']:12.2f} {r['waiting_seconds']:9.2f} "
              f"{r['campaign_seconds']:10.2f} {r['peak_above_mb']:7.1f} {r['code_mb']:7.1f} {r['batch_mb']:8.1f} "
              f"{r['peak_above_mb'] / r['batch_mb']:12.2f} {r['model_mb']:8.1f}")
    print("targets: >= 200,000 rows/s of model work; peak <= 2x one batch's DataFrame (plus the model), whatever "
          "the number of customers")
    if not args.skip_mongo:
        seconds, count, r = mongo_figures(min(args.rows), max(args.batch_rows), args.cold)
        print(f"reading {count:,} customers back from the local nx-27017 server (scoring projection): {seconds:.1f} s "
              f"({count / seconds:,.0f} rows/s); real MongoDB is about ten times faster")
        print(f"scoring them from that server's cursor (batches of {r['batch_rows']:,}): model work "
              f"{r['scoring_seconds']:.2f} s ({r['rows'] / r['scoring_seconds']:,.0f} rows/s), waiting for MongoDB "
              f"{r['waiting_seconds']:.1f} s, peak {r['peak_above_mb']:.1f} MB above start "
              f"({r['peak_above_mb'] / r['batch_mb']:.2f}x the batch's {r['batch_mb']:.1f} MB DataFrame)")


if __name__ == "__main__":
    main()
