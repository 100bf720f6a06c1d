"""The production topology of docker-compose.yaml, run as plain processes on this machine.

Airflow on PostgreSQL with the CeleryExecutor and Redis: `airflow db migrate` and the admin user (as
`airflow-init` does), then separate api-server, scheduler, dag-processor, triggerer and N Celery
workers, each with its own hostname (as each container has). The Airflow settings are the
`x-airflow-common` environment of docker-compose.yaml (plus each service's own), parsed, with only
hosts, ports and secrets replaced (`REPLACED`); what this file adds for running several processes on
one machine is in `local_settings`. Every process is stopped by its own process group.

Used by tests/test_production_topology.py and `make stack` (scripts/run_stack.py).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cross_sell.governance import custody

from . import local_services
from .airflow_user import AirflowUser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yaml"
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS = ("127.0.0.1", 6379)
# The compose values that name other containers or hold secrets; everything else is used verbatim.
REPLACED = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND", "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY", "AIRFLOW_CONN_MONGO_DEFAULT", "AIRFLOW_CONN_AWS_DEFAULT",
    "AIRFLOW_CONN_CROSS_SELL_SIGNING", "CROSS_SELL_SIGNING_PUBLIC_KEY",
    "AIRFLOW__METRICS__STATSD_HOST", "AIRFLOW__METRICS__STATSD_PORT",
    "AIRFLOW_CONN_MONGO_SCORING", "AIRFLOW_CONN_MONGO_MONITORING", "AIRFLOW_CONN_MONGO_ERASURE",
    "AIRFLOW_CONN_AWS_HOUSEKEEPING", "CROSS_SELL_ERASURE_KEY_FILE", "MLFLOW_TRACKING_URI",
    "CROSS_SELL_CUSTODY_KEY_FILE",
}
SERVICES = {"api-server": "airflow-apiserver", "scheduler": "airflow-scheduler",
            "dag-processor": "airflow-dag-processor", "triggerer": "airflow-triggerer"}
_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}")


def interpolate(value: str, variables: dict[str, str]) -> str | None:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}`; None when a required one is unset."""
    missing = False

    def one(match: re.Match) -> str:
        nonlocal missing
        name, kind, default = match.groups()
        if variables.get(name):
            return variables[name]
        if kind == ":-":
            return default
        missing = missing or kind == ":?"
        return ""

    text = _VARIABLE.sub(one, str(value)).replace("$$", "$")
    return None if missing else text


def compose_environment(service: str, variables: dict[str, str] | None = None) -> dict[str, str | None]:
    """The environment docker-compose.yaml gives `service` (YAML merge keys resolved), interpolated."""
    document = yaml.safe_load(COMPOSE.read_text())
    environment = document["services"][service].get("environment") or {}
    return {name: interpolate(value, variables or {}) for name, value in environment.items()}


def postgres_url(database: str, driver: str = "postgresql+psycopg2") -> str:
    return f"{driver}://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}/{database}"


def create_database(name: str) -> None:
    import psycopg2

    connection = psycopg2.connect(dbname="postgres", **POSTGRES)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()


def drop_database(name: str) -> None:
    import psycopg2

    connection = psycopg2.connect(dbname="postgres", **POSTGRES)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    connection.close()


def flush_redis(db: int) -> None:
    import redis

    redis.Redis(host=REDIS[0], port=REDIS[1], db=db).flushdb()


def unreachable() -> str | None:
    """Why the topology cannot run here (PostgreSQL or Redis not answering), or None."""
    import socket

    for name, (host, port) in (("PostgreSQL", (POSTGRES["host"], POSTGRES["port"])), ("Redis", REDIS)):
        try:
            socket.create_connection((host, port), timeout=3).close()
        except OSError as error:
            return f"{name} is not reachable on {host}:{port} ({error})"
    return None


@dataclass
class Topology:
    home: Path
    env: dict
    api: AirflowUser  # the admin, through Airflow's official REST client
    database: str
    redis_db: int
    approver: AirflowUser | None = None  # a second person (role User): the admin may not approve own runs
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    worker_hostnames: dict[str, str] = field(default_factory=dict)  # process name -> TI hostname

    def start_process(self, name: str, command: list[str], extra: dict | None = None) -> subprocess.Popen:
        log = open(self.home / "logs" / f"{name}.log", "ab")
        try:
            process = subprocess.Popen([sys.executable, "-m", "airflow", *command], env={**self.env, **(extra or {})},
                                       stdout=log, stderr=subprocess.STDOUT, cwd=self.home, start_new_session=True)
        finally:
            log.close()
        self.processes[name] = process
        return process

    def start_worker(self, name: str) -> None:
        """A Celery worker whose task instances report `name` as their hostname."""
        self.worker_hostnames[name] = name
        # No log server (it binds every interface): on one machine the API reads each task's log from the
        # shared $AIRFLOW_HOME/logs, as compose's api-server does from the shared logs volume.
        self.start_process(name, ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "2",
                                  "--skip-serve-logs"], {
            "CROSS_SELL_WORKER_HOSTNAME": name,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "cross_sell_airflow.hostname.get_hostname",
        })

    def listening(self) -> dict[str, set[str]]:
        """Every TCP address a process of the topology (or one it started) listens on, by process name."""
        return {name: listening_addresses(process.pid) for name, process in self.processes.items()
                if process.poll() is None}

    def kill(self, name: str) -> None:
        """SIGKILL a process and everything it started (a lost container or host, not a shutdown)."""
        process = self.processes[name]
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

    def stop(self) -> None:
        """SIGTERM each process group (workers last started first), then SIGKILL what is left."""
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()


def local_settings(home: Path, api_port: int) -> dict[str, str]:
    """What running every service on one machine needs beyond compose's settings: paths (the image's
    /opt/airflow), the API's loopback address, and where each process finds the project's code."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",  # every listener on loopback
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins")]),
    }


def start(home: Path, *, database: str, redis_db: int, mongo_url: str, s3_env: dict, signing_key: Path,
          public_key: Path, statsd_port: int, workers: int = 2, api_port: int, admin_password: str,
          overrides: dict | None = None, ready_timeout: float = 300.0, mlflow_url: str = "") -> Topology:
    """Migrate a fresh metadata DB, create the admin user, start every process, wait until healthy.
    `mlflow_url`: the tracking server (`local_services.start_mlflow`); empty: runs are not tracked."""
    import json

    home.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(exist_ok=True)
    host, port = mongo_url.removeprefix("mongodb://").split(":")
    replacements = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_url(database),
        "AIRFLOW__CELERY__RESULT_BACKEND": postgres_url(database, "db+postgresql+psycopg2"),
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS[0]}:{REDIS[1]}/{redis_db}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        # nx-27017 has no users: every MongoDB role is the same local connection here.
        **{f"AIRFLOW_CONN_MONGO_{role}": json.dumps({"conn_type": "mongo", "host": host, "port": int(port)})
           for role in ("DEFAULT", "SCORING", "MONITORING", "ERASURE")},
        **{f"AIRFLOW_CONN_AWS_{role}": json.dumps({
            "conn_type": "aws", "login": s3_env["AWS_ACCESS_KEY_ID"], "password": s3_env["AWS_SECRET_ACCESS_KEY"],
            "extra": {"endpoint_url": s3_env["AWS_ENDPOINT_URL"], "region_name": "us-east-1"}})
           for role in ("DEFAULT", "HOUSEKEEPING")},
        "CROSS_SELL_ERASURE_KEY_FILE": str(_erasure_key(home)),
        "AIRFLOW_CONN_CROSS_SELL_SIGNING": json.dumps({"conn_type": "generic",
                                                       "extra": {"key_file": str(signing_key)}}),
        "CROSS_SELL_SIGNING_PUBLIC_KEY": str(public_key),
        "CROSS_SELL_CUSTODY_KEY_FILE": local_services.signing_env(signing_key, public_key)[custody.KEY_ENV],
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(statsd_port),  # local_services.start_statsd_exporter
        "MLFLOW_TRACKING_URI": mlflow_url,
    }
    common = compose_environment("airflow-worker")
    unknown = set(replacements) - set(common)
    if unknown:  # the compose file changed: keep this list in step with it
        raise KeyError(f"docker-compose.yaml no longer sets {sorted(unknown)}")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CROSS_SELL_"))}
    env = {**base, **{k: v for k, v in common.items() if v is not None}, **replacements,
           **local_settings(home, api_port), **(overrides or {})}
    env = {k: str(v) for k, v in env.items()}
    create_database(database)
    flush_redis(redis_db)
    topology = Topology(home, env, AirflowUser(f"http://127.0.0.1:{api_port}", "admin", admin_password),
                        database, redis_db)
    _run([sys.executable, "-m", "airflow", "db", "migrate"], env, home, "airflow db migrate")
    _run([sys.executable, "-m", "airflow", "users", "create", "--role", "Admin", "--username", "admin",
          f"--password={admin_password}",  # one argument: a generated password may start with "-"
          "--firstname", "Admin", "--lastname", "User", "--email", "admin@example.invalid"],
         env, home, "airflow users create")
    # Compose's policy is maker-checker (CROSS_SELL_ALLOW_SELF_APPROVAL=false): the runs the admin triggers
    # are approved by someone else.
    approver_password = secrets.token_urlsafe(12)
    _run([sys.executable, "-m", "airflow", "users", "create", "--role", "User", "--username", "approver",
          f"--password={approver_password}", "--firstname", "Appro", "--lastname", "Ver",
          "--email", "approver@example.invalid"], env, home, "airflow users create")
    topology.approver = AirflowUser(f"http://127.0.0.1:{api_port}", "approver", approver_password)
    try:
        for name, service in SERVICES.items():
            own = {k: v for k, v in compose_environment(service).items() if k not in common and v is not None}
            topology.start_process(name, [name, *(["--skip-serve-logs"] if name == "triggerer" else [])], own)
        for number in range(1, workers + 1):
            topology.start_worker(f"worker-{number}")
        topology.api.wait(topology.api.healthy, ready_timeout, "the API to report a healthy scheduler, dag "
                          "processor and triggerer", every=2.0)
    except BaseException:
        topology.stop()
        raise
    return topology


def listening_addresses(pid: int) -> set[str]:
    """"host:port" of every listening TCP socket held by `pid`'s process group (Linux /proc)."""
    import ipaddress

    inodes = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) != pid:
                continue
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except (OSError, ProcessLookupError):
            continue
    found = set()
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            # /proc writes each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4))
            found.add(f"{ipaddress.ip_address(raw)}:{int(port, 16)}")
    return found


def teardown(topology: Topology | None, database: str, redis_db: int, *servers) -> None:
    """Stop the processes, drop the database, empty the Redis database, stop the local servers."""
    if topology is not None:
        topology.stop()
    drop_database(database)
    flush_redis(redis_db)
    for server in servers:
        server.stop()


def _erasure_key(home: Path) -> Path:
    from cross_sell.privacy.suppression import make_key

    path = home / "erasure.key"
    return path if path.exists() else make_key(path)


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _run(command: list[str], env: dict, cwd: Path, what: str) -> None:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
