"""Benchmark: erasing 1,000 customers from a bucket holding N training runs of R rows (issue #22).

    python benchmarks/bench_erasure.py [--runs 10] [--rows 381109] [--customers 1000]

Each run holds what a training run holds of customer rows: the Parquet snapshot (row groups of 10,000, as
extraction writes it) and the three splits; each scoring run (one per training run) its scores, campaign
list and quarantine file. Everything sits in the local S3 server; the erased customers are also in the
local nx-27017 server. The erasure (`cross_sell.privacy.erasure.erase`, what the CLI and the DAG call) runs in a
child process so that its peak memory is its own: printed as the peak above the child's resident size
before it started, beside the wall time. Target: the peak does not grow with the number of runs or rows
(every file is streamed a row group or a line at a time).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "include"), str(ROOT / "benchmarks")]

from bench_pipeline import peak_rss_mb, reset_peak_rss, rss_mb  # noqa: E402


def child(s3_url: str, mongo_url: str, bucket: str, work: str, ids_file: str, out: str) -> None:
    """The erasure, measured: wall time and peak RSS above the start (Linux VmHWM after clear_refs)."""
    import boto3
    import pyarrow.parquet  # noqa: F401  (library code is not data: loaded before the baseline)

    from cross_sell.memory import lean_allocators

    lean_allocators()
    from pymongo import MongoClient

    from cross_sell.privacy import erasure
    from cross_sell.settings import Settings
    from cross_sell.storage import layout
    from cross_sell.storage.registry import ModelRegistry
    from cross_sell.storage.signing import ManifestSigner, ManifestVerifier

    s3 = boto3.client("s3", endpoint_url=s3_url, aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1")
    database = MongoClient(mongo_url)["bench"]
    work = Path(work)
    registry = ModelRegistry(s3, bucket, "vi", ManifestVerifier.from_file(work / "keys" / "signing.pub"))
    signer = ManifestSigner.from_file(work / "keys" / "signing.key")
    ids = erasure.read_ids(ids_file)
    key = (work / "erasure.key").read_bytes()
    # A warm-up on a small copy (prefix "warm", a dry run: nothing changes) pages in every library the
    # erasure uses, so that the peak below is the data's, not the code's (as bench_scoring's warm-up).
    warm_ids = erasure.read_ids(Path(work) / "warm-ids.txt")
    erasure.erase(warm_ids, s3=s3, bucket=bucket, prefix="warm", collections=[], erased=None, key=key,
                  registry=registry, request="warm-up", reason="warm-up", by="bench", dry_run=True)
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)
    reset_peak_rss()
    baseline, started = rss_mb(), time.perf_counter()
    done = erasure.erase(ids, s3=s3, bucket=bucket, prefix="vi",
                         collections=layout.erasure_collections(Settings(), database.__getitem__),
                         erased=database["erased_customers"], key=key,
                         registry=registry, request="bench", reason="benchmark", by="bench", signer=signer)
    wall = time.perf_counter() - started
    changed = [f for f in done.objects if f.action != "kept"]
    Path(out).write_text(json.dumps({
        "wall_seconds": wall, "baseline_mb": baseline, "peak_above_mb": peak_rss_mb() - baseline,
        "object_versions_scanned": len(done.objects), "object_versions_changed": len(changed),
        "rows_scanned": sum(f.rows for f in done.objects), "rows_removed": sum(f.removed for f in changed),
        "mongodb": done.mongodb}))


def build(s3, bucket: str, runs: int, rows: int, customers: int, work: Path, prefix: str = "vi") -> list[int]:
    """The bucket: `runs` training runs and as many scoring runs over the same `rows` customers."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from cross_sell.data import snapshot, synthetic
    from cross_sell.model import features

    frame = synthetic.generate(rows, seed=3)
    files = work / f"files-{prefix}"
    files.mkdir(parents=True, exist_ok=True)
    documents = frame.to_dict("records")
    snapshot.write(documents, str(files / "snapshot.parquet"))
    del documents
    typed, _ = __import__("cross_sell.data.casting", fromlist=["x"]).validate_frame(frame, "training")
    from cross_sell.operations.training import SPLIT_ROW_GROUP

    for name, part in features.split(typed, 42).items():  # as transform writes them
        part.to_parquet(files / f"{name}.parquet", index=False, row_group_size=SPLIT_ROW_GROUP)
    scores = pa.table({"id": frame["id"].to_numpy(), "probability": np.random.default_rng(1).random(rows)})
    pq.write_table(scores, files / "scores.parquet", row_group_size=20_000)
    top = scores.slice(0, rows // 10)
    pq.write_table(top, files / "campaign.parquet")
    pacsv.write_csv(top, files / "campaign.csv")
    (files / "quarantine.jsonl").write_text("".join(json.dumps({"id": int(i), "problems": []}) + "\n"
                                                    for i in frame["id"].to_numpy()[:200]))
    for run in range(runs):
        for name in ("snapshot",):
            s3.upload_file(str(files / f"{name}.parquet"), bucket, f"{prefix}/runs/run-{run}/raw/snapshot.parquet")
        for name in ("train", "validation", "test"):
            s3.upload_file(str(files / f"{name}.parquet"), bucket, f"{prefix}/runs/run-{run}/features/{name}.parquet")
        for name in ("scores.parquet", "campaign.parquet", "campaign.csv", "quarantine.jsonl"):
            s3.upload_file(str(files / name), bucket, f"{prefix}/scores/score-{run}/{name}")
    rng = np.random.default_rng(7)
    return sorted(int(i) for i in rng.choice(frame["id"].to_numpy(), customers, replace=False))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rows", type=int, default=381_109)
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    from pymongo import MongoClient

    from cross_sell.privacy.suppression import make_key
    from cross_sell.storage.signing import generate_key_pair
    from devstack import local_services

    work = Path(tempfile.mkdtemp(prefix="bench-erasure-"))
    generate_key_pair(work / "keys")
    make_key(work / "erasure.key")
    s3_server, mongo = local_services.start_s3(bucket="bench-erasure"), local_services.start_mongo()
    try:
        s3 = local_services.s3_client_for(s3_server)
        started = time.perf_counter()
        ids = build(s3, "bench-erasure", args.runs, args.rows, args.customers, work)
        warm = build(s3, "bench-erasure", 1, 5_000, 20, work, prefix="warm")
        (work / "warm-ids.txt").write_text("\n".join(map(str, warm)) + "\n")
        MongoClient(mongo.url)["bench"]["customers"].insert_many([{"_id": i, "id": i} for i in ids])
        built = time.perf_counter() - started
        (work / "ids.txt").write_text("\n".join(map(str, ids)) + "\n")
        out = work / "result.json"
        subprocess.run([sys.executable, __file__, "--child", s3_server.url, mongo.url, "bench-erasure", str(work),
                        str(work / "ids.txt"), str(out)], check=True)
        result = json.loads(out.read_text())
    finally:
        s3_server.stop()
        mongo.stop()
    print(f"erasure benchmark: {args.customers:,} customers out of {args.runs} training runs and {args.runs} "
          f"scoring runs of {args.rows:,} rows (the bucket took {built:.1f} s to fill)")
    print(f"object versions scanned {result['object_versions_scanned']}, rewritten "
          f"{result['object_versions_changed']}; rows scanned {result['rows_scanned']:,}, removed "
          f"{result['rows_removed']:,}; MongoDB {result['mongodb']}")
    print(f"wall time {result['wall_seconds']:.1f} s (with the local S3 server); peak memory "
          f"{result['peak_above_mb']:.0f} MB above the {result['baseline_mb']:.0f} MB the process had before")


if __name__ == "__main__":
    main()
