"""Benchmark: the CSV loader's memory and time at 381k and 2M rows (Kaggle format, synthetic content).

    python benchmarks/bench_loader.py [--rows 381109 2000000]

Each size runs in a fresh process: `loader.load_csv` checks the whole file, then upserts it a chunk at
a time into a collection that acknowledges every write without storing it (the loader's own memory and
time; a real server's are its own). Peak resident size above the size before the load, against the file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "include"), str(ROOT / "benchmarks")]

from bench_pipeline import peak_rss_mb, reset_peak_rss, rss_mb  # noqa: E402

MB = 1024 * 1024


class AcknowledgingCollection:
    """What `load_csv` writes to, minus the storage: counts the upserts."""

    class Result:
        def __init__(self, count):
            self.upserted_count, self.matched_count = count, 0

    def create_index(self, *args, **kwargs):
        return "customer_id_unique"

    def bulk_write(self, operations, ordered=False):
        return self.Result(len(operations))


def write_csv(path: Path, rows: int) -> None:
    from cross_sell.data import synthetic

    with open(path, "w") as handle:
        for start in range(0, rows, 200_000):
            frame = synthetic.generate(min(200_000, rows - start), seed=start, first_id=start + 1)
            frame = frame.astype({"Region_Code": "float64", "Policy_Sales_Channel": "float64"})  # as Kaggle
            frame.to_csv(handle, index=False, header=start == 0)


def child(path: str, out: str) -> None:
    from cross_sell.data import loader

    reset_peak_rss()
    before = rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    stats = loader.load_csv(AcknowledgingCollection(), path, progress=False)
    Path(out).write_text(json.dumps({"rows": stats.rows, "wall": time.perf_counter() - started,
                                     "cpu": time.process_time() - cpu, "peak_above_mb": peak_rss_mb() - before}))


def loader_chunk() -> int:
    from cross_sell.data import loader

    return loader.CHUNK_ROWS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[381_109, 2_000_000])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print(f"loader benchmark: check the whole file, then upsert it in chunks of {loader_chunk():,} rows")
    print(f"{'rows':>10s} {'file MB':>8s} {'wall s':>7s} {'CPU s':>7s} {'peak MB above start':>20s}")
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            path, out = Path(tmp) / f"{rows}.csv", Path(tmp) / "out.json"
            write_csv(path, rows)
            subprocess.run([sys.executable, __file__, "--child", str(path), str(out)], check=True)
            r = json.loads(out.read_text())
            print(f"{r['rows']:10,d} {os.path.getsize(path) / MB:8.0f} {r['wall']:7.1f} {r['cpu']:7.1f} "
                  f"{r['peak_above_mb']:20.0f}")
            path.unlink()


if __name__ == "__main__":
    main()
