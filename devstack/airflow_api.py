"""A small client of Airflow's REST API v2 (token auth), tolerant of a slow server.

A poll that times out or meets a passing connection error is tried again until the caller's overall
deadline: on a loaded machine a slow answer must make a slow wait, not a failure.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request


class AirflowApi:
    def __init__(self, url: str, username: str, password: str, timeout: float = 30.0):
        self.url, self.username, self.password, self.timeout = url.rstrip("/"), username, password, timeout
        self._token: str | None = None

    def _request(self, method: str, path: str, body=None, auth: bool = True):
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(f"{self.url}{path}", method=method, headers=headers,
                                         data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            raw = response.read()
            return json.loads(raw) if raw and response.headers.get_content_type() == "application/json" else raw

    def token(self) -> str:
        if self._token is None:
            answer = self._request("POST", "/auth/token", {"username": self.username, "password": self.password},
                                   auth=False)
            self._token = answer["access_token"]
        return self._token

    def call(self, method: str, path: str, body=None):
        """One request; HTTP errors raise `urllib.error.HTTPError` (their body has the reason)."""
        return self._request(method, path, body)

    def get(self, path: str):
        return self.call("GET", path)

    def wait(self, check, timeout: float, what: str, every: float = 1.0):
        """Call `check(api)` until it returns something truthy. Timeouts, refused connections and 5xx
        answers count as 'not yet', until `timeout` seconds have passed in all."""
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                value = check(self)
                if value:
                    return value
            except (TimeoutError, socket.timeout, ConnectionError, urllib.error.URLError) as error:
                if isinstance(error, urllib.error.HTTPError) and error.code < 500:
                    raise
                last = error
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last})"
                                                                                      if last else ""))

    # -- the calls the tests and the stack use --------------------------------------------------------
    def unpause(self, dag_id: str) -> None:
        self.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run = self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict]:
        answer = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances")
        return {ti["task_id"]: ti for ti in answer["task_instances"]}

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict]:
        answer = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/"
                          f"{task_id}/tries")
        return answer["task_instances"]

    def log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        answer = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/"
                          f"{task_id}/logs/{try_number}?full_content=true")
        content = answer.get("content", []) if isinstance(answer, dict) else answer
        if isinstance(content, list):
            return "\n".join(item.get("event", "") if isinstance(item, dict) else str(item) for item in content)
        return str(content)

    def hitl_detail(self, dag_id: str, run_id: str, task_id: str) -> dict:
        """The human-in-the-loop request of a task (subject, body, options, and the answer once given)."""
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/"
                        f"{task_id}/-1/hitlDetails")

    def respond(self, dag_id: str, run_id: str, task_id: str, option: str, params_input: dict | None = None) -> dict:
        """Answer a human-in-the-loop task as this user (what the UI's Required Actions page does)."""
        return self.call("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/"
                                  f"taskInstances/{task_id}/-1/hitlDetails",
                         {"chosen_options": [option], "params_input": params_input or {}})

    def wait_for_task_state(self, dag_id: str, run_id: str, task_id: str, states: tuple[str, ...],
                            timeout: float) -> dict:
        def reached(api):
            task = api.task_instances(dag_id, run_id).get(task_id)
            if task and task["state"] in states:
                return task
            if api.run(dag_id, run_id)["state"] in ("success", "failed"):
                raise AssertionError(f"run {run_id} finished before {task_id} reached {states}: "
                                     f"{ {k: t['state'] for k, t in api.task_instances(dag_id, run_id).items()} }")
            return None
        return self.wait(reached, timeout, f"{task_id} of {run_id} to be {'/'.join(states)}", every=1.0)

    def wait_for_input_request(self, dag_id: str, run_id: str, task_id: str, timeout: float, settle: float) -> dict:
        """Wait until a human-in-the-loop task asks for input, then `settle` seconds more, as a person would.

        On Airflow 3.3.2 an answer that lands before the scheduler has processed the executor's event for
        the parked try gets the resumed task failed ("finished with state success, but the task instance's
        state attribute is queued"; seen with the LocalExecutor and an answer 1 s after parking); the
        push then does not run: it fails closed."""
        task = self.wait_for_task_state(dag_id, run_id, task_id, ("awaiting_input",), timeout)
        time.sleep(settle)
        return task

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict:
        return self.wait(lambda api: (lambda run: run if run["state"] in ("success", "failed") else None)(
            api.run(dag_id, run_id)), timeout, f"run {run_id} to finish", every=2.0)
