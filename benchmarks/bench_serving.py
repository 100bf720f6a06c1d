"""Benchmark: the prediction service under gunicorn (2 workers) vs the seed project's approach.

    python benchmarks/bench_serving.py [--seconds 10]

Trains a champion on 100,000 synthetic rows, publishes it to a local S3 server, starts the service
with 2 gunicorn workers and drives it from a separate process with `wrk` (Debian package `wrk`):
single-row p50/p99 latency and requests/s at 1 and 8 concurrent clients, then the latency of one
10,000-row request. The same load runs against the seed project's approach (download and unpickle
the model on every request, benchmarks/seed_baseline_app.py) and the ratio is printed.
Targets (2 cores): single-row p99 <= 20 ms and >= 500 req/s at 8 clients; 10,000 rows <= 150 ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "include"))

from cross_sell import features, local_services, schema, synthetic, training  # noqa: E402
from cross_sell.registry import ModelRegistry  # noqa: E402

BUCKET, PREFIX = "bench-serving", "vi"
ONE_ROW = json.dumps({"records": [schema.example_record()]})


def wrk(url: str, clients: int, seconds: float, body: str) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                     'wrk.headers["Content-Type"] = "application/json"\n')
    command = ["wrk", "-t", str(min(clients, 2)), "-c", str(clients), "-d", f"{max(int(seconds), 1)}s", "--latency",
               "-s", script.name, f"{url}/predict"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"clients": clients, "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": ms("50"), "p99_ms": ms("99"), "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else None}


def big_request_ms(url: str, rows: int, repeats: int) -> list[float]:
    records = synthetic.generate(rows, seed=3)[list(schema.FEATURES)].to_dict("records")
    body = json.dumps({"records": [{k: getattr(v, "item", lambda v=v: v)() for k, v in r.items()} for r in records]})
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
        timings.append((time.perf_counter() - started) * 1000)  # to the response's last byte
        payload = json.loads(answer)
        assert response.status == 200 and len(payload["predictions"]) == rows, response.status
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--train-rows", type=int, default=100_000)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed as the load generator: apt-get install wrk")

    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    s3_server = local_services.start_s3(bucket=BUCKET)
    try:
        registry = ModelRegistry(local_services.s3_client_for(s3_server), BUCKET, PREFIX)
        parts = features.split(synthetic.generate(args.train_rows, seed=1), seed=1)
        model = training.train(parts["train"], parts["validation"], seed=1)
        path = workdir / "model.joblib"
        sha = training.save(model, str(path))
        registry.publish(path, {"version": "bench", "sha256": sha, "threshold": training.threshold(model),
                                "model_input": features.MODEL_INPUT})
        registry.set_champion("bench", None, "promote", run_id="bench")
        env = {**s3_server.env, "CROSS_SELL_S3_BUCKET": BUCKET, "CROSS_SELL_S3_PREFIX": PREFIX}

        results = {}
        for name, app, seconds in (("service", "serving.app:create_app()", args.seconds),
                                   ("seed baseline", "seed_baseline_app:app", max(args.seconds / 2, 3))):
            server = local_services.start_serving(env, workers=2, log_path=str(workdir / f"{name}.log"), app=app,
                                                  extra_path=(str(ROOT / "benchmarks"),))
            url = server.url
            try:
                wrk(url, 8, 2, ONE_ROW)  # warm-up
                results[name] = {"1 client": wrk(url, 1, seconds, ONE_ROW), "8 clients": wrk(url, 8, seconds, ONE_ROW)}
                if name == "service":
                    big_request_ms(url, 10_000, 2)  # warm-up
                    results[name]["10k rows ms"] = big_request_ms(url, 10_000, 10)
            finally:
                server.stop()
    finally:
        s3_server.stop()

    threads = int(os.environ.get("SERVING_THREADS", "1"))  # as serving/gunicorn.conf.py reads it
    kind = f"gthread ({threads} threads)" if threads > 1 else "sync"
    print(f"serving benchmark: gunicorn 2 {kind} workers, wrk from a separate process, {os.cpu_count()} cores, "
          f"model trained on {args.train_rows:,} rows")
    print(f"{'':16s} {'clients':>7s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'non-2xx':>8s}")
    for name, runs in results.items():
        for key in ("1 client", "8 clients"):
            r = runs[key]
            print(f"{name:16s} {r['clients']:7d} {r['requests_per_s']:9.1f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
                  f"{r['non_2xx']:8d}" + (f"  socket errors: {r['socket_errors']}" if r["socket_errors"] else ""))
    service, seed = results["service"], results["seed baseline"]
    for key in ("1 client", "8 clients"):
        throughput = service[key]["requests_per_s"] / seed[key]["requests_per_s"]
        print(f"speed-up over the seed approach, {key}: {throughput:.1f}x req/s, "
              f"p50 {seed[key]['p50_ms'] / service[key]['p50_ms']:.1f}x lower")
    big = service["10k rows ms"]
    print(f"one 10,000-row request: median {statistics.median(big):.1f} ms, max {max(big):.1f} ms "
          f"(target <= 150 ms: {'PASS' if statistics.median(big) <= 150 else 'FAIL'})")
    eight = service["8 clients"]
    print(f"single row at 8 clients: p99 {eight['p99_ms']:.2f} ms (target <= 20: "
          f"{'PASS' if eight['p99_ms'] <= 20 else 'FAIL'}), {eight['requests_per_s']:.0f} req/s (target >= 500: "
          f"{'PASS' if eight['requests_per_s'] >= 500 else 'FAIL'})")


if __name__ == "__main__":
    main()
