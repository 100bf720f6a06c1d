"""`python -m devstack services`: the local MongoDB-wire and S3 servers for a workstation, until Ctrl-C.

It writes .local/services.env, which points the CLI and a local `airflow standalone` at them (README,
"Run it in the Airflow UI"): connections, AWS_* variables, the model-signing keys (made once under
.local/signing/) and a local Airflow home (SQLite, the API on loopback, the DAG unpaused).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "include"))

from cross_sell import signing  # noqa: E402
from cross_sell.settings import Settings  # noqa: E402
from devstack import local_services  # noqa: E402


def services(args) -> int:
    settings = Settings.from_env()
    keys = Path(args.signing_dir)
    if not (keys / "signing.key").exists():
        signing.generate_key_pair(keys)
    mongo = local_services.start_mongo(args.mongo_port, db_path=args.mongo_db_file)
    s3 = local_services.start_s3(args.s3_port, bucket=settings.s3_bucket)
    # Block only now, so the servers do not inherit the mask; sigwait then takes Ctrl-C or a TERM.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        env = {"MONGO_URI": mongo.url, **s3.env,
               **local_services.airflow_connections(mongo, s3, settings.mongo_database),
               **local_services.signing_env((keys / "signing.key").resolve(), (keys / "signing.pub").resolve()),
               **local_services.airflow_config(Path(args.airflow_home).resolve(), ui=True),
               "PYTHONPATH": str(ROOT / "include")}
        env_file = Path(args.env_file)
        env_file.parent.mkdir(parents=True, exist_ok=True)
        env_file.write_text("".join(f"export {name}='{value}'\n" for name, value in env.items()))
        print(f"MongoDB wire protocol on {mongo.url}, S3 on {s3.url} (bucket {settings.s3_bucket}).\n"
              f"In other shells: source {env_file}\nCtrl-C stops both.", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        s3.stop()
        mongo.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("services", help="run local MongoDB-wire and S3 servers until Ctrl-C")
    run.add_argument("--mongo-port", type=int, default=27017)
    run.add_argument("--s3-port", type=int, default=5000)
    run.add_argument("--mongo-db-file", default="memory", help="SQLite file to keep data across restarts")
    run.add_argument("--env-file", default=".local/services.env", help="where to write the export lines")
    run.add_argument("--airflow-home", default=".local/airflow-ui", help="AIRFLOW_HOME for `airflow standalone`")
    run.add_argument("--signing-dir", default=".local/signing", help="the model-signing key pair (made if missing)")
    args = parser.parse_args(argv)
    return services(args)


if __name__ == "__main__":
    sys.exit(main())
