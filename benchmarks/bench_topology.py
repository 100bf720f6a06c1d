"""Benchmark: the DAG on the production topology (PostgreSQL, CeleryExecutor, Redis, 2 workers) vs
`airflow dags test`, the scheduling overhead per task, and the time a worker lost mid-task costs.

    python benchmarks/bench_topology.py [--rows 30000] [--heartbeat-timeout 30]

Same data for both (synthetic customers in a local MongoDB-wire server, local S3). Figures:
* trigger -> success on the topology (REST trigger, API polling every 0.5 s) and the wall time of
  `airflow dags test` (its ~5 s start-up included);
* scheduling gap per task: a task's start minus the latest end of its upstream tasks, from the task
  instances' own timestamps (what the scheduler, broker and worker add between two tasks);
* a worker SIGKILLed during `train`: the work lost (kill - attempt 1 start) and the wait until the retry
  starts (attempt 2 start - kill), which the scheduler's task_instance_heartbeat_timeout governs.
Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "include")]

from cross_sell.data import loader, synthetic  # noqa: E402
from cross_sell.storage import signing  # noqa: E402
from devstack import airflow_stack, local_services  # noqa: E402

DAG_ID = "cross_sell_training"
UPSTREAM = {"validate": ["extract"], "check_drift": ["extract"], "transform": ["extract", "validate", "check_drift"],
            "train": ["transform"], "evaluate": ["train", "transform"], "should_push": ["evaluate"],
            "push": ["should_push", "evaluate", "train", "extract"]}


def gaps(tis: dict) -> list[float]:
    """`tis`: task id -> the official client's TaskInstanceResponse (datetimes)."""
    out = []
    for task, parents in UPSTREAM.items():
        ti = tis[task]
        if ti.state.value == "success" and ti.start_date:
            out.append(ti.start_date.timestamp() - max(tis[p].end_date.timestamp() for p in parents))
    return out


def timed_run(api, conf: dict) -> tuple[str, float]:
    started = time.perf_counter()
    run_id = api.trigger(DAG_ID, conf)

    def succeeded() -> bool:
        state = api.run(DAG_ID, run_id).state.value
        if state == "failed":
            sys.exit(f"run {run_id} failed")
        return state == "success"
    api.wait(succeeded, 1800, "the run", every=0.5)
    return run_id, time.perf_counter() - started


def dags_test_seconds(home: Path, mongo, s3, keys) -> float:
    env = {**os.environ, **local_services.airflow_config(home), **s3.env,
           **local_services.airflow_connections(mongo, s3, "insurance"), **local_services.signing_env(*keys),
           "CROSS_SELL_S3_BUCKET": "cross-sell", "PYTHONPATH": str(ROOT / "include")}
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "--conf", '{"min_roc_auc": 0.7}'],
                   env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--heartbeat-timeout", type=int, default=30)
    args = parser.parse_args()
    problem = airflow_stack.unreachable()
    if problem:
        raise SystemExit(problem)
    from pymongo import MongoClient

    work = Path(tempfile.mkdtemp(prefix="bench-topology-"))
    keys = signing.generate_key_pair(work / "keys")
    mongo = local_services.start_mongo()
    loader.upsert(MongoClient(mongo.url)["insurance"]["customers"], synthetic.generate(args.rows, seed=11),
                  progress=False)
    database, redis_db = f"cross_sell_bench_{secrets.token_hex(3)}", 8 + secrets.randbelow(8)
    results = {}
    s3 = local_services.start_s3(bucket="cross-sell")
    try:
        results["dags test"] = dags_test_seconds(work / "sqlite", mongo, s3, keys)
    finally:
        s3.stop()
    s3 = local_services.start_s3(bucket="cross-sell")  # an empty registry again: the same first-push run
    topology = None
    try:
        topology = airflow_stack.start(
            work / "airflow", database=database, redis_db=redis_db, mongo_url=mongo.url, s3_env=s3.env,
            signing_key=keys[0], public_key=keys[1], workers=2, api_port=local_services.free_port(),
            statsd_port=local_services.free_port(),  # nobody listens: StatsD is fire-and-forget UDP
            admin_password=secrets.token_urlsafe(12),
            overrides={"AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(args.heartbeat_timeout),
                       "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                       "CROSS_SELL_SCHEDULE": "none", "CROSS_SELL_RETRY_DELAY_SECONDS": "1"})
        api = topology.api  # the admin, through Airflow's official REST client
        api.wait(lambda: api.dag(DAG_ID), 300, "the DAG", 2.0)
        api.unpause(DAG_ID)
        run_id, results["topology"] = timed_run(api, {"min_roc_auc": 0.7})
        tis = api.task_instances(DAG_ID, run_id)
        results["gaps"] = gaps(tis)
        results["task seconds"] = sum(ti.duration or 0 for ti in tis.values())

        run_id = api.trigger(DAG_ID, {"min_roc_auc": 0.7})
        train = api.wait_for_state(DAG_ID, run_id, "train", ("running",), 600)
        time.sleep(1.0)  # into the task's work
        killed_at = time.time()
        topology.kill(train.hostname)
        api.wait_for_run(DAG_ID, run_id, 1800)
        tries = {t.try_number: t for t in api.tries(DAG_ID, run_id, "train")}
        results["work lost"] = killed_at - tries[1].start_date.timestamp()
        results["wait for retry"] = tries[2].start_date.timestamp() - killed_at
    finally:
        airflow_stack.teardown(topology, database, redis_db, s3, mongo)

    g = results["gaps"]
    print(f"topology benchmark: {args.rows:,} rows, 2 Celery workers, {os.cpu_count()} cores")
    print(f"airflow dags test (SQLite, one process), wall incl. start-up: {results['dags test']:7.1f} s")
    print(f"topology: trigger -> success through the API:                 {results['topology']:7.1f} s "
          f"(sum of task durations {results['task seconds']:.1f} s)")
    print(f"scheduling gap per task (start - upstream end), {len(g)} tasks: mean {statistics.mean(g):.2f} s, "
          f"median {statistics.median(g):.2f} s, max {max(g):.2f} s")
    print(f"worker killed during train: work lost {results['work lost']:.1f} s, retry started "
          f"{results['wait for retry']:.1f} s after the kill (heartbeat timeout {args.heartbeat_timeout} s, "
          f"detection every 5 s, retry delay 1 s)")


if __name__ == "__main__":
    main()
