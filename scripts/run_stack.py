"""The production topology on this machine, for a person to click through: `make stack [WORKERS=3]`.

Airflow on PostgreSQL (database `cross_sell_stack`, made afresh) with the CeleryExecutor and Redis
(database number 7), api-server, scheduler, dag-processor, triggerer and WORKERS Celery workers, with
docker-compose.yaml's settings (devstack/airflow_stack.py), plus local MongoDB-wire and S3 servers
holding synthetic customers. Ctrl-C stops every process by its pid and drops the database.
Needs PostgreSQL on 127.0.0.1:5432 (trust auth) and Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "include")]

from cross_sell.data import loader, synthetic  # noqa: E402
from cross_sell.storage import signing  # noqa: E402
from devstack import airflow_stack, local_services  # noqa: E402

MLFLOW_DATABASE = "cross_sell_stack_mlflow"
DAG_ID = "cross_sell_training"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8080, help="the Airflow UI and API")
    parser.add_argument("--synthetic", type=int, default=100_000, help="customers to load into MongoDB")
    parser.add_argument("--workdir", default=str(ROOT / ".local" / "stack"))
    args = parser.parse_args()
    problem = airflow_stack.unreachable()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from pymongo import MongoClient

    local = Path(args.workdir)
    keys = ROOT / ".local" / "signing"
    if not (keys / "signing.key").exists():
        signing.generate_key_pair(keys)
    mongo, s3 = local_services.start_mongo(log_dir=str(ROOT / ".local")), local_services.start_s3(bucket="cross-sell")
    statsd = local_services.start_statsd_exporter()  # compose runs prom/statsd-exporter
    topology = mlflow = None
    try:
        # compose runs the mlflow image on the same PostgreSQL; here `mlflow server` from its own venv
        airflow_stack.create_database(MLFLOW_DATABASE)
        mlflow = local_services.start_mlflow(airflow_stack.postgres_url(MLFLOW_DATABASE), local / "mlflow-artifacts",
                                             log_path=ROOT / ".local" / "mlflow.log")
        print(f"loading {args.synthetic:,} synthetic customers into {mongo.url} ...", flush=True)
        client = MongoClient(mongo.url)
        loader.upsert(client["insurance"]["customers"], synthetic.generate(args.synthetic, seed=1))
        client.close()
        password = secrets.token_urlsafe(12)
        print(f"starting Airflow (api-server, scheduler, dag-processor, triggerer, {args.workers} Celery "
              f"workers) on PostgreSQL and Redis ...", flush=True)
        started = time.perf_counter()
        topology = airflow_stack.start(
            local / "airflow", database="cross_sell_stack", redis_db=7, mongo_url=mongo.url, s3_env=s3.env,
            signing_key=keys / "signing.key", public_key=keys / "signing.pub", workers=args.workers,
            statsd_port=int(statsd.env["STATSD_PORT"]), api_port=args.port, admin_password=password,
            overrides={"CROSS_SELL_SCHEDULE": "none"}, mlflow_url=mlflow.url)
        topology.api.wait(lambda: topology.api.dag(DAG_ID), 300, "the DAG to be parsed", 2.0)
        topology.api.unpause(DAG_ID)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        print(f"ready in {time.perf_counter() - started:.0f} s: http://127.0.0.1:{args.port}  user admin, "
              f"password {password}\n"
              f"{DAG_ID} is unpaused and runs when you trigger it (Trigger, with params if you like).\n"
              f"Process logs: {local / 'airflow' / 'logs'}; S3 at {s3.url}; Airflow's metrics (Prometheus "
              f"format) at {statsd.url}/metrics; MLflow (every run tracked) at {mlflow.url}.\nCtrl-C stops everything.",
              flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
        print("stopping ...", flush=True)
    finally:
        if topology is not None:
            topology.stop()
        airflow_stack.drop_database("cross_sell_stack")
        airflow_stack.flush_redis(7)
        s3.stop()
        mongo.stop()
        statsd.stop()
        if mlflow is not None:
            mlflow.stop()
        airflow_stack.drop_database(MLFLOW_DATABASE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
