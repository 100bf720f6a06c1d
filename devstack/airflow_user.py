"""One Airflow user, through Airflow's official REST client (`apache-airflow-client`), as a script would.

The client has no login helper for the simple auth manager: the token comes from `POST /auth/token`, then
every call goes through the generated APIs (`user.api("DagRunApi").get_dag_run(...)`). A few shortcuts for
what the tests, the local stack and the benchmarks do, and one thin retry: `wait(check, ...)` calls `check`
until it returns something truthy, counting passing connection errors and 5xx answers (SQLite's lock on a
loaded machine) as "not yet". Errors are the client's `ApiException` (its `status` and `body` carry
Airflow's answer).
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any, Callable, TypeVar

T = TypeVar("T")
FINISHED = ("success", "failed")


def _value(state: Any) -> str | None:
    return state.value if hasattr(state, "value") else state


class AirflowUser:
    def __init__(self, url: str, username: str, password: str, timeout: float = 30.0):
        self.url, self.username, self.password, self.timeout = url.rstrip("/"), username, password, timeout
        self._client = None

    def token(self) -> str:
        """A fresh access token (`POST /auth/token`), e.g. for the UI's `_token` cookie."""
        request = urllib.request.Request(f"{self.url}/auth/token", method="POST",
                                         headers={"Content-Type": "application/json"},
                                         data=json.dumps({"username": self.username,
                                                          "password": self.password}).encode())
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())["access_token"]

    @property
    def client(self):
        if self._client is None:
            from airflow_client.client import ApiClient, Configuration

            self._client = ApiClient(Configuration(host=self.url, access_token=self.token()))
        return self._client

    def api(self, name: str):
        """One of the client's generated APIs, e.g. "DagRunApi", "TaskInstanceApi", "XComApi"."""
        import airflow_client.client as official

        return getattr(official, name)(self.client)

    # -- what a person does through the UI or a script ------------------------------------------------
    def dag(self, dag_id: str):
        return self.api("DAGApi").get_dag(dag_id)

    def unpause(self, dag_id: str) -> None:
        from airflow_client.client import DAGPatchBody

        self.api("DAGApi").patch_dag(dag_id, DAGPatchBody(is_paused=False))

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        """A new run's id. The id is chosen here, so the trigger can be asked again after a 5xx (SQLite's lock
        on a loaded machine): a 409 then means the earlier answer was lost but its run exists."""
        from datetime import datetime, timezone

        from airflow_client.client import TriggerDAGRunPostBody
        from airflow_client.client.exceptions import ApiException

        run_id = f"manual__{datetime.now(timezone.utc).isoformat()}"
        body = TriggerDAGRunPostBody(dag_run_id=run_id, logical_date=None, conf=conf or {})

        def triggered() -> str:
            try:
                return self.api("DagRunApi").trigger_dag_run(dag_id, body).dag_run_id
            except ApiException as error:
                if error.status == 409:
                    return run_id
                raise
        return self.wait(triggered, 4 * self.timeout, f"a run of {dag_id} to be triggered")

    def run(self, dag_id: str, run_id: str):
        return self.api("DagRunApi").get_dag_run(dag_id, run_id)

    def runs(self, dag_id: str, **filters) -> list:
        """The DAG's runs (`~`: every DAG's), e.g. `order_by=["-run_after"]`, `state=["failed"]`."""
        return self.api("DagRunApi").get_dag_runs(dag_id, **filters).dag_runs

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, Any]:
        tasks = self.api("TaskInstanceApi").get_task_instances(dag_id, run_id).task_instances
        return {t.task_id: t for t in tasks}

    def states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {task: _value(ti.state) for task, ti in self.task_instances(dag_id, run_id).items()}

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list:
        return self.api("TaskInstanceApi").get_task_instance_tries(dag_id, run_id, task_id).task_instances

    def log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        answer = self.api("TaskInstanceApi").get_log(dag_id, run_id, task_id, try_number, full_content=True)
        content = answer.content.actual_instance if hasattr(answer.content, "actual_instance") else answer.content
        if isinstance(content, list):
            return "\n".join(getattr(item, "event", None) or str(item) for item in content)
        return str(content)

    def links(self, dag_id: str, run_id: str, task_id: str) -> dict[str, str | None]:
        """The task's extra links (name -> URL, None where a link has no target) as the UI shows them. Read
        raw: the client's model admits no None, which Airflow answers for a link without one."""
        answer = self.api("ExtraLinksApi").get_extra_links_without_preload_content(dag_id, run_id, task_id)
        if answer.status >= 400:
            from airflow_client.client.exceptions import ApiException

            raise ApiException(status=answer.status, reason=answer.reason, body=answer.data.decode())
        return dict(json.loads(answer.data)["extra_links"] or {})

    def hitl(self, dag_id: str, run_id: str, task_id: str):
        return self.api("TaskInstanceApi").get_hitl_detail(dag_id, run_id, task_id, -1)

    def respond(self, dag_id: str, run_id: str, task_id: str, option: str, comment: str = ""):
        """Answer a human-in-the-loop task as this user (what the UI's Required Actions page does)."""
        from airflow_client.client import UpdateHITLDetailPayload

        return self.api("TaskInstanceApi").update_hitl_detail(
            dag_id, run_id, task_id, -1,
            UpdateHITLDetailPayload(chosen_options=[option], params_input={"comment": comment}))

    def healthy(self) -> bool:
        """Metadatabase, scheduler, DAG processor and triggerer all report healthy."""
        health = self.api("MonitorApi").get_health()
        parts = (health.metadatabase, health.scheduler, health.dag_processor, health.triggerer)
        return all(part is not None and part.status == "healthy" for part in parts)

    # -- waiting, as a script would ---------------------------------------------------------------------
    def wait(self, check: Callable[[], T], timeout: float, what: str, every: float = 1.0) -> T:
        """`check()` until truthy; passing connection errors and 5xx answers count as 'not yet'."""
        from airflow_client.client.exceptions import ApiException

        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                value = check()
                if value:
                    return value
            except ApiException as error:
                if error.status is not None and 0 < error.status < 500:
                    raise
                last = error
            except (OSError, TimeoutError) as error:  # urllib3's connection errors are OSErrors too
                last = error
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" ({last})" if last else ""))

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float):
        def finished():
            run = self.run(dag_id, run_id)
            return run if _value(run.state) in FINISHED else None
        return self.wait(finished, timeout, f"run {run_id} to finish", every=2.0)

    def wait_for_state(self, dag_id: str, run_id: str, task_id: str, states: tuple[str, ...], timeout: float,
                       settle: float = 0.0):
        """Until `task_id` is in one of `states` (then `settle` s more, as a person would before answering:
        on Airflow 3.3.2 an answer within a second of a human-in-the-loop task parking meets a race that
        fails the resumed task); the task instance."""
        def reached():
            task = self.task_instances(dag_id, run_id).get(task_id)
            if task is not None and _value(task.state) in states:
                return task
            if _value(self.run(dag_id, run_id).state) in FINISHED:
                raise AssertionError(f"run {run_id} finished before {task_id} reached {states}: "
                                     f"{self.states(dag_id, run_id)}")
            return None
        task = self.wait(reached, timeout, f"{task_id} of {run_id} to be {'/'.join(states)}")
        time.sleep(settle)
        return task
