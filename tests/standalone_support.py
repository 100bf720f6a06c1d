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

from devstack import local_services
from support import ROOT, scaled


def stop(process: subprocess.Popen, group: bool = False) -> None:
    if process.poll() is None:
        (os.killpg if group else os.kill)(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=scaled(30))
        except subprocess.TimeoutExpired:
            (os.killpg if group else os.kill)(process.pid, signal.SIGKILL)
            process.wait()


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
    front_port = local_services.free_port()
    terminal_1 = subprocess.Popen(
        [sys.executable, "-m", "devstack", "services", "--serve", "--serve-port", str(front_port),
         "--mongo-port", str(local_services.free_port()),
         "--s3-port", str(local_services.free_port()), "--env-file", str(env_file),
         "--airflow-home", str(tmp_path / "airflow-ui"), "--signing-dir", str(tmp_path / "signing"),
         "--state-dir", str(tmp_path / "state")],
        env=clean, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    standalone = None
    try:
        banner = [terminal_1.stdout.readline() for _ in range(4)]  # printed once every server listens
        assert "Ctrl-C stops them all" in "".join(banner), banner
        api_port = local_services.free_port()
        env = {**clean, **sourced(env_file),
               # standalone starts its components as `airflow ...`: this interpreter's bin comes first
               "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
               # ports of their own (8080, 8793, 8794 may be taken)
               "AIRFLOW__API__PORT": str(api_port),
               "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
               "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(local_services.free_port()),
               "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(local_services.free_port()),
               **(extra_env or {})}
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


class AirflowUser:
    """One Airflow user, through the official client: a token from `POST /auth/token` (the client has no
    login helper for the simple auth manager), then the generated APIs. Errors are the client's
    `ApiException` (its `status` and `body` carry Airflow's answer)."""

    def __init__(self, url: str, username: str, password: str):
        self.url, self.username, self.password = url, username, password
        self._client = None

    def token(self) -> str:
        import urllib.request

        request = urllib.request.Request(f"{self.url}/auth/token", method="POST",
                                         headers={"Content-Type": "application/json"},
                                         data=json.dumps({"username": self.username,
                                                          "password": self.password}).encode())
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["access_token"]

    @property
    def client(self):
        if self._client is None:
            from airflow_client.client import ApiClient, Configuration

            self._client = ApiClient(Configuration(host=self.url, access_token=self.token()))
        return self._client

    def api(self, name: str):
        import airflow_client.client as official

        return getattr(official, name)(self.client)

    # -- what a person does through the UI or a script ------------------------------------------------
    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        from airflow_client.client import TriggerDAGRunPostBody

        run = self.api("DagRunApi").trigger_dag_run(dag_id, TriggerDAGRunPostBody(logical_date=None, conf=conf or {}))
        return run.dag_run_id

    def run(self, dag_id: str, run_id: str):
        return self.api("DagRunApi").get_dag_run(dag_id, run_id)

    def states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        tasks = self.api("TaskInstanceApi").get_task_instances(dag_id, run_id).task_instances
        return {t.task_id: (t.state.value if t.state is not None else None) for t in tasks}

    def log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        answer = self.api("TaskInstanceApi").get_log(dag_id, run_id, task_id, try_number, full_content=True)
        content = answer.content.actual_instance if hasattr(answer.content, "actual_instance") else answer.content
        if isinstance(content, list):
            return "\n".join(getattr(item, "event", None) or str(item) for item in content)
        return str(content)

    def hitl(self, dag_id: str, run_id: str, task_id: str):
        return self.api("TaskInstanceApi").get_hitl_detail(dag_id, run_id, task_id, -1)

    def respond(self, dag_id: str, run_id: str, task_id: str, option: str, comment: str = ""):
        from airflow_client.client import UpdateHITLDetailPayload

        return self.api("TaskInstanceApi").update_hitl_detail(
            dag_id, run_id, task_id, -1,
            UpdateHITLDetailPayload(chosen_options=[option], params_input={"comment": comment}))

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

    # -- waiting, as a script would ---------------------------------------------------------------------
    def wait(self, check, timeout: float, what: str, every: float = 1.0):
        """`check()` until truthy; passing connection errors and 5xx answers count as 'not yet'."""
        from airflow_client.client.exceptions import ApiException

        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                value = check()
                if value:
                    return value
            except ApiException as error:
                if error.status is not None and error.status < 500:
                    raise
                last = error
            except (OSError, TimeoutError) as error:
                last = error
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" ({last})" if last else ""))

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float):
        def finished():
            run = self.run(dag_id, run_id)
            return run if run.state.value in ("success", "failed") else None
        return self.wait(finished, timeout, f"run {run_id} to finish", every=2.0)

    def wait_for_state(self, dag_id: str, run_id: str, task_id: str, states: tuple[str, ...], timeout: float,
                       settle: float = 0.0) -> None:
        """Until `task_id` is in one of `states` (then `settle` s more, as a person would before answering:
        an answer within a second of parking meets an Airflow 3.3.2 race)."""
        def reached():
            if self.states(dag_id, run_id).get(task_id) in states:
                return True
            if self.run(dag_id, run_id).state.value in ("success", "failed"):
                raise AssertionError(f"run {run_id} finished before {task_id} reached {states}: "
                                     f"{self.states(dag_id, run_id)}")
            return None
        self.wait(reached, timeout, f"{task_id} of {run_id} to be {'/'.join(states)}")
        time.sleep(settle)
