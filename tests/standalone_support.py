"""A running `airflow standalone` on this repository, as the README's "Operating it" section starts it, and
the users who drive it through Airflow's official REST client (`apache-airflow-client`).

`standalone_airflow(...)` starts terminal 1 (`python -m devstack services --serve`), loads customers with
the CLI and starts `airflow standalone` with the environment `source .local/services.env` gives, plus what
a test adds (users of each role, a deployment policy). Every process is stopped by its pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from devstack import airflow_user, local_services
from support import ROOT, scaled


def stop(process: subprocess.Popen, group: bool = False) -> None:
    if process.poll() is None:
        (os.killpg if group else os.kill)(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=scaled(30))
        except subprocess.TimeoutExpired:
            (os.killpg if group else os.kill)(process.pid, signal.SIGKILL)
            process.wait()


def read_banner(terminal: subprocess.Popen) -> str:
    """What `devstack services` prints once every server listens (its last line says how to stop them)."""
    lines = []
    while not lines or "Ctrl-C stops" not in lines[-1]:
        line = terminal.stdout.readline()
        if not line:
            raise AssertionError(f"devstack services exited ({terminal.wait()}) after: {''.join(lines)}")
        lines.append(line)
    return "".join(lines)


def sourced(env_file: Path) -> dict:
    """What `source .local/services.env` exports."""
    return dict(re.findall(r"^export (\w+)='(.*)'$", env_file.read_text(), re.M))


@dataclass
class Standalone:
    url: str  # the API server
    front: str  # the prediction service's nginx front
    env: dict  # the environment airflow standalone runs with
    home: Path  # the temporary folder of this stack
    passwords: dict  # user -> password (the simple auth manager's generated file)

    def user(self, name: str) -> "AirflowUser":
        return AirflowUser(self.url, name, self.passwords[name])


@contextlib.contextmanager
def standalone_airflow(tmp_path: Path, *, extra_env: dict | None = None, rows: int = 5000):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CROSS_SELL_", "AWS_"))}
    env_file = tmp_path / "services.env"
    ports = {option: local_services.free_port() for option in ("--serve-port", "--mongo-port", "--s3-port",
                                                                 "--airflow-port", "--worker-log-port",
                                                                 "--trigger-log-port")}
    terminal_1 = subprocess.Popen(
        [sys.executable, "-m", "devstack", "services", "--serve", *[str(a) for item in ports.items() for a in item],
         "--env-file", str(env_file), "--airflow-home", str(tmp_path / "airflow-ui"),
         "--signing-dir", str(tmp_path / "signing"), "--state-dir", str(tmp_path / "state")],
        env=clean, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    standalone = None
    try:
        banner = read_banner(terminal_1)
        assert "Ctrl-C stops them all" in banner, banner
        front_port, api_port = ports["--serve-port"], ports["--airflow-port"]
        env = {**clean, **sourced(env_file),  # the Airflow ports come with it (devstack's --airflow-port ...)
               # standalone starts its components as `airflow ...`: this interpreter's bin comes first
               "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
               **(extra_env or {})}
        assert env["AIRFLOW__API__BASE_URL"] == f"http://127.0.0.1:{api_port}", env
        loaded = subprocess.run([sys.executable, "-m", "cross_sell", "load", "--synthetic", str(rows), "--seed", "1"],
                                env=env, cwd=ROOT, capture_output=True, text=True, timeout=scaled(300))
        assert loaded.returncode == 0 and json.loads(loaded.stdout)["inserted"] == rows, loaded.stderr
        log = open(tmp_path / "standalone.log", "wb")
        standalone = subprocess.Popen([sys.executable, "-m", "airflow", "standalone"], env=env, cwd=ROOT,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        passwords_file = tmp_path / "airflow-ui" / "simple_auth_manager_passwords.json.generated"
        url = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + scaled(180)
        while True:
            if standalone.poll() is not None:
                raise AssertionError(f"airflow standalone exited; see {tmp_path / 'standalone.log'}")
            if passwords_file.exists():
                try:
                    passwords = json.loads(passwords_file.read_text())
                    AirflowUser(url, "admin", passwords["admin"]).token()
                    break
                except (OSError, ValueError, KeyError):
                    pass
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the API server and the admin password")
            time.sleep(1)
        yield Standalone(url, f"http://127.0.0.1:{front_port}", env, tmp_path, passwords)
    finally:
        if standalone is not None:
            stop(standalone, group=True)  # standalone runs its components in its own session
        stop(terminal_1)


class AirflowUser(airflow_user.AirflowUser):
    """devstack's user of the official client, plus what the abuse-case tests try: XCom writes and clears."""

    def write_xcom(self, dag_id: str, run_id: str, task_id: str, value, key: str = "return_value"):
        from airflow_client.client import XComCreateBody

        return self.api("XComApi").create_xcom_entry(dag_id, task_id, run_id,
                                                     XComCreateBody(key=key, value=value, map_index=-1))

    def read_xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
        answer = self.api("XComApi").get_xcom_entry(dag_id=dag_id, task_id=task_id, dag_run_id=run_id, xcom_key=key,
                                                    deserialize=True)
        return answer.actual_instance.value  # the native (deserialized) form of the answer

    def clear(self, dag_id: str, run_id: str, task_ids: list[str], downstream: bool = False):
        from airflow_client.client import ClearTaskInstancesBody, ClearTaskInstancesBodyTaskIdsInner

        return self.api("TaskInstanceApi").post_clear_task_instances(dag_id, ClearTaskInstancesBody(
            dag_run_id=run_id, task_ids=[ClearTaskInstancesBodyTaskIdsInner(task) for task in task_ids],
            include_downstream=downstream, only_failed=False,
            dry_run=False, reset_dag_runs=True))
