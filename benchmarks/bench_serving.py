"""Benchmark: the prediction service as shipped (nginx front, gunicorn with 2 sync workers) vs the seed
project's approach, and how long a worker takes to start.

    python benchmarks/bench_serving.py [--seconds 10]
    python benchmarks/bench_serving.py --baseline 88c0474 [--rounds 5]   # this code against a former commit
    python benchmarks/bench_serving.py --profile [--rounds 5]   # where a one-row request's CPU goes
    python benchmarks/bench_serving.py --floors [--rounds 5]    # the service's CPU beside its floors

Trains a champion on 100,000 synthetic rows, converts it to ONNX and publishes it (signed) to a local S3
server, starts the service with 2 gunicorn workers behind Debian's nginx with the compose server block,
and drives it from a separate process with `wrk` (Debian packages `nginx-light`, `wrk`): single-row
p50/p99 latency and requests/s at 1 and 8 concurrent clients through the front (and, for the front's
cost, straight to gunicorn), then the latency of one 10,000-row request through the front. The same load
runs against the seed project's approach (download and unpickle the model on every request,
benchmarks/seed_baseline_app.py). Last, a worker's start: gunicorn with one worker, from process start
to the first 200 from /ready, five times. Before all that, in process, where a request's time goes for
1, 100, 1,000 and 10,000 rows (decode, validation, model input, ONNX Runtime, response body), with the
validation and model input of the engine before issue #24 (tests/reference_validation.py) beside.

`--baseline REF` serves a former commit (a git worktree) beside this code, each behind its own nginx
front, and alternates the two for `--rounds` rounds: the 1,000- and 10,000-row requests and the CPU per
one-row request at 8 clients, split between nginx and gunicorn. Issue #24's targets are against it.
Targets (2 cores): single-row p99 <= 20 ms and >= 1,500 req/s at 8 clients; 10,000 rows <= 150 ms.
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "include"), str(ROOT / "tests")]

from cross_sell.data import schema, synthetic  # noqa: E402
from cross_sell.model import features, model_input, onnx_export, training  # noqa: E402
from cross_sell.storage.registry import ModelRegistry  # noqa: E402
from cross_sell.storage.signing import ManifestSigner, ManifestVerifier, generate_key_pair  # noqa: E402
from devstack import local_services  # noqa: E402

BUCKET, PREFIX = "bench-serving", "vi"


class LoadedModelLike:
    """`predict(matrix) -> (probabilities, labels)` as the service's LoadedModel answers."""

    def __init__(self, model):
        self.model = model

    def predict(self, matrix):
        probability = self.model.probability(matrix)
        return probability.tolist(), self.model.labels(probability).tolist()
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


def machine_speed() -> float:
    """CPU seconds of a pure-Python loop of 10**7 additions: this machine's speed varies by half
    within a day, so every figure is printed beside it (lower is faster; 0.97 s seen at best)."""
    started, total = time.process_time(), 0
    for i in range(10**7):
        total += i
    return time.process_time() - started


def tree_cpu_seconds(*roots: int) -> float:
    """User + system CPU seconds of these processes and all their descendants (Linux /proc)."""
    parents, cpu = {}, {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
            cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    members, grew = set(roots), True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in members} - members
        grew = bool(found)
        members |= found
    return sum(cpu.get(pid, 0.0) for pid in members)


def cpu_per_request(url: str, clients: int, seconds: float, *roots: int) -> tuple[dict, float]:
    """A wrk run and the service's own CPU per answered request (ms): nginx + gunicorn, not wrk.
    Steadier than req/s on a machine whose speed varies, and what capacity per core follows from."""
    before = tree_cpu_seconds(*roots)
    result = wrk(url, clients, seconds, ONE_ROW)
    used = tree_cpu_seconds(*roots) - before
    return result, 1000 * used / (result["requests_per_s"] * max(int(seconds), 1))


def request_records(rows: int) -> list[dict]:
    records = synthetic.generate(rows, seed=3)[list(schema.FEATURES)].to_dict("records")
    return [{k: getattr(v, "item", lambda v=v: v)() for k, v in r.items()} for r in records]


def big_request_ms(url: str, rows: int, repeats: int) -> list[float]:
    body = json.dumps({"records": request_records(rows)})
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


STEPS = ("decode", "validation", "model input", "ONNX Runtime", "response body")


def in_process_breakdown(model, sizes=(1, 100, 1_000, 10_000), repeats: int = 30) -> dict:
    """Milliseconds per step of a `records` request in this process (median of `repeats`), and the
    validation and model input of the engine before #24 measured in the same loop, interleaved."""
    import orjson
    import reference_validation as before

    from serving import payload

    figures = {}
    for rows in sizes:
        body = orjson.dumps({"records": request_records(rows)})
        taken = {step: [] for step in (*STEPS, "validation before", "model input before")}
        for _ in range(repeats):
            t0 = time.perf_counter()
            decoded = orjson.loads(body)
            t1 = time.perf_counter()
            checked = payload.rows_from_payload(decoded, 10**6).check()
            t2 = time.perf_counter()
            matrix = model_input.from_columns(checked.columns, np.empty((rows, len(schema.FEATURES)), np.float32))
            t3 = time.perf_counter()
            probabilities, labels = model.predict(matrix)
            t4 = time.perf_counter()
            orjson.dumps(payload.predictions_body("v", 0.5, probabilities, labels))
            t5 = time.perf_counter()
            records = orjson.loads(body)["records"]
            t6 = time.perf_counter()
            if rows <= before.SMALL_BATCH:
                cast, problems = before.cast_records(records)
                t7 = time.perf_counter()
                before._from_rows(cast)
            else:
                typed, problems = before.validate_records(records)
                t7 = time.perf_counter()
                before._from_frame(typed)
            t8 = time.perf_counter()
            assert not checked.problems and not problems
            for step, seconds in zip(taken, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t7 - t6, t8 - t7),
                                     strict=True):
                taken[step].append(seconds * 1000)
        figures[rows] = {step: (statistics.median(v), min(v), max(v)) for step, v in taken.items()}
    return figures


def print_breakdown(figures: dict) -> None:
    sizes = list(figures)
    print("in process, ms per request step (median of the repeats; validation and model input before #24 "
          "beside)")
    print(f"{'step':26s}" + "".join(f"{f'{n:,} rows':>14s}" for n in sizes))
    for step in (*STEPS, "validation before", "model input before"):
        print(f"{step:26s}" + "".join(f"{figures[n][step][0]:14.3f}" for n in sizes))
    totals = [sum(figures[n][step][0] for step in STEPS) for n in sizes]
    print(f"{'total (this code)':26s}" + "".join(f"{t:14.3f}" for t in totals))


def compare_with_baseline(ref: str, env: dict, rounds: int, seconds: float, workdir: Path) -> None:
    """This code and `ref` (a git worktree), each behind its own nginx front, alternated round by round."""
    tree = workdir / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True,
                   capture_output=True)
    servers, fronts = {}, {}
    try:
        for name, root in (("before", tree), ("after", ROOT)):
            servers[name] = local_services.start_serving(env, workers=2, log_path=str(workdir / f"{name}.log"),
                                                         root=str(root))
            fronts[name] = local_services.start_front(servers[name].env["SERVING_SOCKET"],
                                                      workdir=str(workdir / f"front-{name}"))
            wrk(fronts[name].url, 8, 2, ONE_ROW)  # warm-up
            big_request_ms(fronts[name].url, 10_000, 2)
        found = {name: {"1k": [], "10k": [], "cpu": [], "nginx": [], "gunicorn": [], "p99": [], "rps": []}
                 for name in servers}
        speed = [machine_speed()]
        for _ in range(rounds):
            for name in ("before", "after"):
                url, server, front = fronts[name].url, servers[name], fronts[name]
                found[name]["1k"].append(statistics.median(big_request_ms(url, 1_000, 15)))
                found[name]["10k"].append(statistics.median(big_request_ms(url, 10_000, 7)))
                nginx, gunicorn = tree_cpu_seconds(front.process.pid), tree_cpu_seconds(server.process.pid)
                result = wrk(url, 8, seconds, ONE_ROW)
                answered = result["requests_per_s"] * max(int(seconds), 1)
                nginx = 1000 * (tree_cpu_seconds(front.process.pid) - nginx) / answered
                gunicorn = 1000 * (tree_cpu_seconds(server.process.pid) - gunicorn) / answered
                for key, value in (("nginx", nginx), ("gunicorn", gunicorn), ("cpu", nginx + gunicorn),
                                   ("p99", result["p99_ms"]), ("rps", result["requests_per_s"])):
                    found[name][key].append(value)
        speed.append(machine_speed())
    finally:
        for service in (*fronts.values(), *servers.values()):
            service.stop()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    print(f"this code against {ref}, both through their nginx front, alternated over {rounds} rounds; "
          f"machine speed (10**7 loop) {speed[0]:.2f} s before, {speed[1]:.2f} s after")
    labels = {"1k": "1,000-row request, ms (median of 15)", "10k": "10,000-row request, ms (median of 7)",
              "cpu": "CPU per one-row request at 8 clients, ms", "nginx": "  of which nginx, ms",
              "gunicorn": "  of which gunicorn, ms", "p99": "one-row p99 at 8 clients, ms",
              "rps": "one-row req/s at 8 clients"}
    for key, label in labels.items():
        cells = [f"{name} median {statistics.median(v):.3f} [{min(v):.3f}-{max(v):.3f}]"
                 for name, v in found.items() for v in [found[name][key]]]
        print(f"{label:42s} " + "; ".join(cells))
    ratio = statistics.median(found["after"]["1k"]) / statistics.median(found["before"]["1k"])
    print(f"1,000 rows through the front, after/before: {ratio:.2f} (target <= 0.33: "
          f"{'PASS' if ratio <= 1 / 3 else 'FAIL'}); 10,000 rows after: "
          f"{statistics.median(found['after']['10k']):.1f} ms (target <= 50); CPU per one-row request after: "
          f"{statistics.median(found['after']['cpu']):.3f} ms (target <= 0.7)")


def one_row_cpu_profile(env: dict, model, rounds: int, seconds: float, workdir: Path) -> None:
    """Where the CPU of a one-row request at 8 clients goes. Through the same nginx front and gunicorn
    config: a bare WSGI callable (benchmarks/ladder_apps.py: gunicorn's own cost), a Flask route with a
    fixed answer (Flask's dispatch on top) and the service, alternated round by round, each measured as
    nginx's and gunicorn's CPU per answered request. Then the service's own steps in this process, CPU
    time per call over 20,000 calls: validation, model input, ONNX Runtime, response body, metrics and the
    access line."""
    import io
    import logging

    import orjson

    # the workers' metrics are shared files (multiprocess mode, gunicorn.conf.py): so are these
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bench-metrics-"))
    from serving import metrics, payload

    rungs = {"bare WSGI": ("ladder_apps:bare", {}), "Flask, fixed answer": ("ladder_apps:flask", {}),
             "the service": ("serving.app:create_app()", {})}
    servers, fronts = {}, {}
    found = {name: {"nginx": [], "gunicorn": []} for name in rungs}
    try:
        for name, (app, extra) in rungs.items():
            servers[name] = local_services.start_serving(
                {**env, **extra}, workers=2, log_path=str(workdir / f"ladder-{len(servers)}.log"), app=app,
                extra_path=(str(ROOT / "benchmarks"),))
            fronts[name] = local_services.start_front(servers[name].env["SERVING_SOCKET"],
                                                      workdir=str(workdir / f"front-ladder-{len(fronts)}"))
            wrk(fronts[name].url, 8, 2, ONE_ROW)
        for _ in range(rounds):
            for name in rungs:
                front, server = fronts[name], servers[name]
                nginx, gunicorn = tree_cpu_seconds(front.process.pid), tree_cpu_seconds(server.process.pid)
                result = wrk(front.url, 8, seconds, ONE_ROW)
                answered = result["requests_per_s"] * max(int(seconds), 1)
                found[name]["nginx"].append(1000 * (tree_cpu_seconds(front.process.pid) - nginx) / answered)
                found[name]["gunicorn"].append(1000 * (tree_cpu_seconds(server.process.pid) - gunicorn) / answered)
    finally:
        for service in (*fronts.values(), *servers.values()):
            service.stop()
    print(f"CPU per one-row request at 8 clients, ms (median [range] of {rounds} alternating rounds):")
    for name, cpu in found.items():
        total = [a + b for a, b in zip(cpu["nginx"], cpu["gunicorn"], strict=True)]
        print(f"  {name:22s} nginx {statistics.median(cpu['nginx']):.3f} [{min(cpu['nginx']):.3f}-"
              f"{max(cpu['nginx']):.3f}]  gunicorn {statistics.median(cpu['gunicorn']):.3f} "
              f"[{min(cpu['gunicorn']):.3f}-{max(cpu['gunicorn']):.3f}]  total {statistics.median(total):.3f}")

    record = orjson.loads(ONE_ROW)
    rows = payload.rows_from_payload(record, 10)
    checked = rows.check()
    matrix = model_input.from_columns(checked.columns, np.empty((1, len(schema.FEATURES)), np.float32))
    probabilities, labels = model.predict(matrix)
    access = logging.getLogger("bench.access")
    handler = logging.StreamHandler(io.StringIO())
    from pythonjsonlogger.orjson import OrjsonFormatter

    from serving.logging_config import LOGCONFIG

    formatter = LOGCONFIG["formatters"]["json"]
    handler.setFormatter(OrjsonFormatter(formatter["fmt"], rename_fields=formatter["rename_fields"]))
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    steps = {
        "decode + validation": lambda: payload.rows_from_payload(orjson.loads(ONE_ROW), 10).check(),
        "model input": lambda: model_input.from_columns(checked.columns,
                                                        np.empty((1, len(schema.FEATURES)), np.float32)),
        "ONNX Runtime": lambda: model.predict(matrix),
        "response body": lambda: orjson.dumps(payload.predictions_body("v", 0.5, probabilities, labels)),
        "metrics": lambda: (metrics.observe_request("/predict", 200, 0.001),
                            metrics.observe_predictions("v", probabilities, labels)),
        "access line": lambda: access.info("request", extra={
            "method": "POST", "path": "/predict", "status": 200, "duration_ms": 1.0, "rows": 1,
            "model_version": "v", "remote_addr": "127.0.0.1"}),
    }
    print("the service's steps in process, CPU ms per one-row call (20,000 calls):")
    for name, step in steps.items():
        for _ in range(500):
            step()
        started = time.process_time()
        for _ in range(20_000):
            step()
        print(f"  {name:22s} {(time.process_time() - started) / 20:.4f}")


def floors(env: dict, onnx: bytes, threshold: float, served, rounds: int, seconds: float, workdir: Path) -> None:
    """Issue #34: the service's CPU per request beside its floors, behind the same nginx front and gunicorn
    config, alternated round by round: (a) a fixed answer (ladder_apps.bare), (b) a bare WSGI app that decodes,
    runs ONNX Runtime on the same rows and answers (ladder_apps.floor), and the service with every check;
    for 1 row (8 clients), 1,000 and 10,000 rows (2 clients), as `records`, and the service also with the
    columnar `dataframe_split`. Then (c) ONNX Runtime alone, in this process. nginx + gunicorn CPU per answered
    request, median [range] of `rounds` rounds; the ratio service / (b) per round."""
    onnx_path = workdir / "floor.onnx"
    onnx_path.write_bytes(onnx)
    rungs = {"(a) fixed answer": ("ladder_apps:bare", {}),
             "(b) decode + ORT + answer": ("ladder_apps:floor", {"FLOOR_ONNX": str(onnx_path),
                                                                 "FLOOR_THRESHOLD": str(threshold)}),
             "service": ("serving.app:create_app()", {})}
    sizes = {1: 8, 1_000: 2, 10_000: 2}
    bodies = {n: json.dumps({"records": request_records(n)}) for n in sizes}
    columns = list(schema.FEATURES)
    splits = {n: json.dumps({"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns]
                                                                               for r in request_records(n)]}})
              for n in sizes}
    servers, fronts = {}, {}
    found: dict[tuple[str, int], list[float]] = {}
    try:
        for name, (app, extra) in rungs.items():
            servers[name] = local_services.start_serving(
                {**env, **extra}, workers=2, log_path=str(workdir / f"floor-{len(servers)}.log"), app=app,
                extra_path=(str(ROOT / "benchmarks"),))
            fronts[name] = local_services.start_front(servers[name].env["SERVING_SOCKET"],
                                                      workdir=str(workdir / f"front-floor-{len(fronts)}"))
            for n, clients in sizes.items():
                wrk(fronts[name].url, clients, 1, bodies[n])  # warm
        for _ in range(rounds):
            for n, clients in sizes.items():
                runs = [(name, bodies[n]) for name in rungs] + [("service, dataframe_split", splits[n])]
                for name, body in runs:
                    rung = "service" if name.startswith("service") else name
                    roots = (fronts[rung].process.pid, servers[rung].process.pid)
                    before = tree_cpu_seconds(*roots)
                    result = wrk(fronts[rung].url, clients, seconds if n == 1 else max(seconds / 2, 3), body)
                    answered = result["requests_per_s"] * max(int(seconds if n == 1 else max(seconds / 2, 3)), 1)
                    if result["non_2xx"]:
                        raise RuntimeError(f"{name}, {n} rows: non-2xx answers {result}")
                    found.setdefault((name, n), []).append(1000 * (tree_cpu_seconds(*roots) - before) / answered)
    finally:
        for service in (*fronts.values(), *servers.values()):
            service.stop()
    print(f"CPU per request, ms, nginx + gunicorn (median [range] of {rounds} alternating rounds):")
    for n in sizes:
        floor = found[("(b) decode + ORT + answer", n)]
        for name in [*rungs, "service, dataframe_split"]:
            cpu = found[(name, n)]
            line = f"  {n:>6,} rows  {name:28s} {statistics.median(cpu):8.3f} [{min(cpu):.3f}-{max(cpu):.3f}]"
            if name.startswith("service"):
                ratios = [c / f for c, f in zip(cpu, floor, strict=True)]
                line += f"   / (b): {statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
            print(line)
    print("(c) ONNX Runtime alone, in this process, CPU ms per call (the worker's 2-thread session):")
    for n in sizes:
        matrix = model_input.from_frame(synthetic.generate(n, seed=3)).astype(np.float32)
        calls = max(20, 2_000 // n)
        served.probability(matrix)
        started = time.process_time()
        for _ in range(calls):
            served.probability(matrix)
        print(f"  {n:>6,} rows  {1000 * (time.process_time() - started) / calls:8.3f}")


def worker_start_seconds(env: dict, repeats: int) -> list[float]:
    """gunicorn with one worker: from process start to the first 200 from /ready."""
    import urllib.request

    timings = []
    for _ in range(repeats):
        port = local_services.free_port()
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-c", str(ROOT / "serving" / "gunicorn.conf.py"),
             "serving.app:create_app()"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, **env, "SERVING_WORKERS": "1", "SERVING_BIND": f"127.0.0.1:{port}",
                 "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'include'}"})
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as response:
                        if response.status == 200:
                            break
                except OSError:
                    time.sleep(0.01)
            timings.append(time.perf_counter() - started)
        finally:
            process.terminate()
            process.wait()
    return timings


def shadow_p99(env: dict, registry, onnx: bytes, estimator_path: Path, private_key: Path, seconds: float,
               rounds: int, workdir: Path) -> dict:
    """p99 at 8 clients through the front with and without a challenger in shadow, alternating, every
    request row sampled (so the shadow scores all of them, in the sampler's thread, once per 1,000 rows)."""
    signer = ManifestSigner.from_file(private_key)
    registry.publish({"version": "bench-shadow", "threshold": 0.3, "model_input": model_input.LAYOUT},
                     {"model.onnx": onnx, "model.joblib": estimator_path}, signer)
    env = {**env, "SERVING_SAMPLE_RATE": "1.0", "SERVING_POLL_SECONDS": "1"}
    server = local_services.start_serving(env, workers=2, log_path=str(workdir / "shadow.log"))
    front = local_services.start_front(server.env["SERVING_SOCKET"], workdir=str(workdir / "front-shadow"))
    runs = {"without shadow": [], "with shadow": []}
    try:
        wrk(front.url, 8, 2, ONE_ROW)
        for _ in range(rounds):
            for name in ("without shadow", "with shadow"):
                if name == "with shadow":
                    registry.set_shadow("bench-shadow", signer, "benchmark")
                else:
                    registry.clear_shadow(signer)
                time.sleep(3)  # every worker's poller has seen the pointer
                runs[name].append(wrk(front.url, 8, seconds, ONE_ROW))
    finally:
        front.stop()
        server.stop()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--start-repeats", type=int, default=5)
    parser.add_argument("--shadow-rounds", type=int, default=5)
    parser.add_argument("--baseline", help="a former commit to compare with (only the comparison runs)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of --baseline / --profile")
    parser.add_argument("--profile", action="store_true", help="only where a one-row request's CPU goes")
    parser.add_argument("--floors", action="store_true",
                        help="only the service's CPU per request beside its floors (issue #34)")
    args = parser.parse_args()
    for tool, package in (("wrk", "wrk"), ("nginx", "nginx-light")):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is needed: apt-get install {package}")

    speed = [machine_speed()]
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    private_key, public_key = generate_key_pair(workdir / "keys")
    s3_server = local_services.start_s3(bucket=BUCKET)
    try:
        registry = ModelRegistry(local_services.s3_client_for(s3_server), BUCKET, PREFIX,
                                 ManifestVerifier.from_file(public_key))
        parts = features.split(synthetic.generate(args.train_rows, seed=1), seed=1)
        model = training.train(parts["train"], parts["validation"], seed=1)
        path = workdir / "model.joblib"
        training.save(model, str(path))
        exported = onnx_export.export(model, training.threshold(model), model_input.from_frame(parts["test"]))
        registry.publish({"version": "bench", "threshold": training.threshold(model), "model_input": model_input.LAYOUT,
                          "onnx_parity": exported.parity},
                         {"model.onnx": exported.onnx, "model.joblib": path}, ManifestSigner.from_file(private_key))
        registry.set_champion("bench", None, "promote", ManifestSigner.from_file(private_key), run_id="bench")
        env = {**s3_server.env, "CROSS_SELL_S3_BUCKET": BUCKET, "CROSS_SELL_S3_PREFIX": PREFIX,
               "CROSS_SELL_SIGNING_PUBLIC_KEY": str(public_key), "SERVING_SAMPLE_RATE": "0.01"}
        served, _ = registry.served_model("bench", threads=2)  # as a worker holds it (SERVING_ONNX_THREADS)
        print_breakdown(in_process_breakdown(LoadedModelLike(served)))
        if args.profile:
            one_row_cpu_profile(env, LoadedModelLike(served), args.rounds, args.seconds, workdir)
            return
        if args.floors:
            floors(env, exported.onnx, training.threshold(model), served, args.rounds, args.seconds, workdir)
            return
        if args.baseline:
            compare_with_baseline(args.baseline, env, args.rounds, args.seconds, workdir)
            return

        results = {}
        for name, app, seconds in (("service", "serving.app:create_app()", args.seconds),
                                   ("seed baseline", "seed_baseline_app:app", max(args.seconds / 2, 3))):
            server = local_services.start_serving(env, workers=2, log_path=str(workdir / f"{name}.log"), app=app,
                                                  extra_path=(str(ROOT / "benchmarks"),))
            front = local_services.start_front(server.env["SERVING_SOCKET"],
                                               workdir=str(workdir / f"front-{name.replace(' ', '-')}"))
            try:
                wrk(front.url, 8, 2, ONE_ROW)  # warm-up
                results[name] = {"1 client": wrk(front.url, 1, seconds, ONE_ROW)}
                results[name]["8 clients"], cpu_ms = cpu_per_request(front.url, 8, seconds, server.process.pid,
                                                                     front.process.pid)
                if name == "service":
                    service_cpu_ms = cpu_ms
                    results["service, no front"] = {"1 client": wrk(server.url, 1, seconds, ONE_ROW),
                                                    "8 clients": wrk(server.url, 8, seconds, ONE_ROW)}
                    big_request_ms(front.url, 10_000, 2)  # warm-up
                    results[name]["10k rows ms"] = big_request_ms(front.url, 10_000, 10)
                    results[name]["1k rows ms"] = big_request_ms(front.url, 1_000, 30)
            finally:
                front.stop()
                server.stop()
        starts = worker_start_seconds(env, args.start_repeats)
        shadow_runs = shadow_p99(env, registry, exported.onnx, path, private_key, args.seconds, args.shadow_rounds,
                                 workdir)
        speed.append(machine_speed())
    finally:
        s3_server.stop()

    print(f"serving benchmark: nginx front (1 worker process, unix socket to gunicorn) + gunicorn 2 sync workers, "
          f"wrk from a separate process, {os.cpu_count()} cores, model trained on {args.train_rows:,} rows; "
          f"machine speed (10**7 loop) {speed[0]:.2f} s before, {speed[1]:.2f} s after")
    print(f"{'':18s} {'clients':>7s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'non-2xx':>8s}")
    for name, runs in results.items():
        for key in ("1 client", "8 clients"):
            r = runs[key]
            print(f"{name:18s} {r['clients']:7d} {r['requests_per_s']:9.1f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
                  f"{r['non_2xx']:8d}" + (f"  socket errors: {r['socket_errors']}" if r["socket_errors"] else ""))
    service, seed = results["service"], results["seed baseline"]
    for key in ("1 client", "8 clients"):
        throughput = service[key]["requests_per_s"] / seed[key]["requests_per_s"]
        print(f"speed-up over the seed approach, {key}: {throughput:.1f}x req/s, "
              f"p50 {seed[key]['p50_ms'] / service[key]['p50_ms']:.1f}x lower")
    one_k = service["1k rows ms"]
    print(f"one 1,000-row request through the front: median {statistics.median(one_k):.1f} ms, "
          f"range {min(one_k):.1f}-{max(one_k):.1f} ms over {len(one_k)}")
    big = service["10k rows ms"]
    print(f"one 10,000-row request through the front: median {statistics.median(big):.1f} ms, max {max(big):.1f} ms "
          f"(target <= 150 ms: {'PASS' if statistics.median(big) <= 150 else 'FAIL'})")
    eight = service["8 clients"]
    print(f"single row at 8 clients through the front: p99 {eight['p99_ms']:.2f} ms (target <= 20: "
          f"{'PASS' if eight['p99_ms'] <= 20 else 'FAIL'}), {eight['requests_per_s']:.0f} req/s (target >= 1,500: "
          f"{'PASS' if eight['requests_per_s'] >= 1500 else 'FAIL'})")
    for name, runs in shadow_runs.items():
        p99 = ", ".join(f"{r['p99_ms']:.2f}" for r in runs)
        rates = ", ".join(f"{r['requests_per_s']:.0f}" for r in runs)
        print(f"8 clients, every row sampled, {name}: p99 {p99} ms; req/s {rates}")
    gap = statistics.median(r["p99_ms"] for r in shadow_runs["with shadow"]) - \
        statistics.median(r["p99_ms"] for r in shadow_runs["without shadow"])
    print(f"shadow's cost to p99 at 8 clients (medians of the alternating runs): {gap:+.2f} ms "
          f"(target <= 1 ms: {'PASS' if gap <= 1 else 'FAIL'})")
    print(f"CPU per one-row request at 8 clients (nginx + gunicorn, wrk excluded): {service_cpu_ms:.3f} ms, "
          f"i.e. {1000 * (os.cpu_count() or 1) / service_cpu_ms:,.0f} req/s if the service had all "
          f"{os.cpu_count()} cores")
    print(f"worker start (process start -> /ready 200, 1 worker): median {statistics.median(starts):.2f} s, "
          f"range {min(starts):.2f}-{max(starts):.2f} s over {len(starts)}")


if __name__ == "__main__":
    main()
