"""`python -m devstack services [--serve]`: the local MongoDB-wire and S3 servers for a workstation (and,
with --serve, the prediction service behind its nginx front), until Ctrl-C.

It writes .local/services.env, which points the CLI and a local `airflow standalone` at them (README,
"Operating it"): connections, AWS_* variables, the model-signing keys (made once under .local/signing/),
a local Airflow home (SQLite, the API on loopback, the DAGs unpaused) and the ports Airflow listens on.
The data is kept under .local/state/ across restarts (--in-memory: not), as Airflow keeps its history.

Ports: each is its option, else its variable (DEVSTACK_*_PORT), else its default; a default that is taken
is replaced by a free port (the banner says so), a port asked for that is taken is an error. Every path
is made absolute before anything uses it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "include"))

from cross_sell.settings import Settings  # noqa: E402
from cross_sell.storage import signing  # noqa: E402
from devstack import local_services  # noqa: E402

# The workstation's deployment policy (cross_sell.governance.policy) and the users who act under it: `admin` triggers
# and may roll back, `reviewer` approves (never the user who triggered the run: maker-checker). Their passwords
# are in $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated.
LOCAL_POLICY = {
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,reviewer:user",
    "CROSS_SELL_APPROVERS": "reviewer",
    "CROSS_SELL_ROLLBACK_OPERATORS": "admin",
}


@dataclass(frozen=True)
class PortChoice:
    option: str
    variable: str
    default: int
    what: str


PORTS = {
    "mongo": PortChoice("--mongo-port", "DEVSTACK_MONGO_PORT", 27017, "MongoDB wire protocol"),
    "s3": PortChoice("--s3-port", "DEVSTACK_S3_PORT", 5000, "S3"),
    "serve": PortChoice("--serve-port", "DEVSTACK_SERVE_PORT", 8000, "the prediction service's front"),
    "airflow": PortChoice("--airflow-port", "DEVSTACK_AIRFLOW_PORT", 8080, "Airflow's UI and REST API"),
    "worker_log": PortChoice("--worker-log-port", "DEVSTACK_WORKER_LOG_PORT", 8793, "Airflow's worker log server"),
    "trigger_log": PortChoice("--trigger-log-port", "DEVSTACK_TRIGGER_LOG_PORT", 8794,
                              "Airflow's triggerer log server"),
}


def choose_ports(args, wanted: tuple[str, ...], environ=os.environ) -> tuple[dict[str, int], list[str]]:
    """The port of each service in `wanted` (option, else variable, else default) and a line per default
    that was taken and replaced by a free port. A port asked for (option or variable) that is taken: exit."""
    ports, notes, chosen = {}, [], set()
    for name in wanted:
        choice = PORTS[name]
        given = getattr(args, name + "_port")
        source = choice.option if given is not None else choice.variable if environ.get(choice.variable) else None
        if given is None and environ.get(choice.variable):
            try:
                given = int(environ[choice.variable])
            except ValueError:
                raise SystemExit(f"{choice.variable}={environ[choice.variable]!r} is not a port number") from None
        if given is not None:
            if given in chosen or local_services.port_taken(given):
                raise SystemExit(f"port {given} for {choice.what} ({source}) is taken: choose another, or leave "
                                 f"{choice.option} and {choice.variable} unset to get a free one")
            ports[name] = given
        elif choice.default in chosen or local_services.port_taken(choice.default):
            ports[name] = local_services.free_port()
            while ports[name] in chosen:
                ports[name] = local_services.free_port()
            notes.append(f"Port {choice.default} (the default for {choice.what}) is taken: using {ports[name]} "
                         f"instead ({choice.option} or {choice.variable} chooses one).")
        else:
            ports[name] = choice.default
        chosen.add(ports[name])
    return ports, notes


def services(args) -> int:
    settings = Settings.from_env()
    for name in ("state_dir", "env_file", "airflow_home", "signing_dir"):  # relative to where it is run
        setattr(args, name, str(Path(getattr(args, name)).resolve()))
    wanted = ("mongo", "s3", *(("serve",) if args.serve else ()), "airflow", "worker_log", "trigger_log")
    ports, notes = choose_ports(args, wanted)
    keys = Path(args.signing_dir)
    if not (keys / "signing.key").exists():
        signing.generate_key_pair(keys)
    state = None if args.in_memory else Path(args.state_dir)
    if state:
        state.mkdir(parents=True, exist_ok=True)
    mongo = local_services.start_mongo(ports["mongo"], db_path=str(state / "mongo.db") if state else "memory")
    s3 = local_services.start_s3(ports["s3"], bucket=settings.s3_bucket,
                                 state_file=str(state / "s3-requests.jsonl") if state else None)
    running = [s3, mongo]
    # Block only now, so the servers do not inherit the mask; sigwait then takes Ctrl-C or a TERM.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        public_key = (keys / "signing.pub").resolve()
        env = {"MONGO_URI": mongo.url, **s3.env,
               **local_services.airflow_connections(mongo, s3, settings.mongo_database),
               **local_services.signing_env((keys / "signing.key").resolve(), public_key),
               **local_services.airflow_config(Path(args.airflow_home), ui=True),
               **local_services.airflow_ports(ports["airflow"], ports["worker_log"], ports["trigger_log"]),
               **LOCAL_POLICY, "PYTHONPATH": str(ROOT / "include")}
        env_file = Path(args.env_file)
        env_file.parent.mkdir(parents=True, exist_ok=True)
        env_file.write_text("".join(f"export {name}='{value}'\n" for name, value in env.items()))
        kept = f"kept in {state} across restarts" if state else "in memory: gone after Ctrl-C"
        lines = [f"MongoDB wire protocol on {mongo.url}, S3 on {s3.url} (bucket {settings.s3_bucket}); data {kept}."]
        if args.serve:
            service, front = serve(env, public_key, ports["serve"], running, env_file.parent)
            lines.append(f"Prediction service on {front.url} (the nginx front; /metrics only on the internal "
                         f"{service.url}); it serves the champion once training pushes one, and samples every "
                         "request row for the skew, shadow and monitoring reports.")
        lines.append(f"For `airflow standalone` (in {env_file.name}): UI and REST API on "
                     f"{env['AIRFLOW__API__BASE_URL']}, task log servers on {ports['worker_log']} and "
                     f"{ports['trigger_log']}.")
        lines += notes
        lines += [f"In other shells: source {env_file}", f"Ctrl-C stops {'them all' if args.serve else 'both'}."]
        print("\n".join(lines), flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        for service in reversed(running):
            service.stop()
    return 0


def serve(env: dict, public_key: Path, port: int, running: list, local: Path):
    """The prediction service on the local S3 registry, behind the nginx front on `port` (as compose runs
    it): every request row sampled, short polls and flushes, so a workstation closes the loop quickly."""
    settings = Settings.from_env()
    service = local_services.start_serving(
        {**{k: v for k, v in env.items() if k.startswith("AWS_")}, "CROSS_SELL_S3_BUCKET": settings.s3_bucket,
         "CROSS_SELL_S3_PREFIX": settings.s3_prefix, "CROSS_SELL_SIGNING_PUBLIC_KEY": str(public_key),
         "SERVING_SAMPLE_RATE": "1.0", "SERVING_SAMPLE_FLUSH_SECONDS": "10", "SERVING_POLL_SECONDS": "5"},
        log_path=str(local / "serving.log"), ready_path="/health")
    running.append(service)
    front = local_services.start_front(service.env["SERVING_SOCKET"], port=port,
                                       workdir=str(local / "front"))
    running.append(front)
    return service, front


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("services", help="run local MongoDB-wire and S3 servers until Ctrl-C")
    for name, choice in PORTS.items():  # each: option, else variable, else default (a free one if taken)
        run.add_argument(choice.option, dest=name + "_port", type=int, default=None,
                         help=f"{choice.what} (else ${choice.variable}, else {choice.default}, or a free port when "
                              f"{choice.default} is taken)")
    run.add_argument("--state-dir", default=".local/state",
                     help="where the customers (nx-27017's SQLite file) and the bucket (moto's request log, "
                          "replayed at start) are kept across restarts")
    run.add_argument("--in-memory", action="store_true", help="keep nothing: every start is a fresh stack")
    run.add_argument("--serve", action="store_true",
                     help="also run the prediction service behind its nginx front (needs Debian's nginx)")
    run.add_argument("--env-file", default=".local/services.env", help="where to write the export lines")
    run.add_argument("--airflow-home", default=".local/airflow-ui", help="AIRFLOW_HOME for `airflow standalone`")
    run.add_argument("--signing-dir", default=".local/signing", help="the model-signing key pair (made if missing)")
    args = parser.parse_args(argv)
    return services(args)


if __name__ == "__main__":
    sys.exit(main())
