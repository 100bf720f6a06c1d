"""Alerts through Airflow's notifier mechanism and Apprise: failed tasks, drift warnings, skew, a performance
drop, an out-of-band pointer change.

Every DAG's tasks get `AlertNotifier()` as `on_failure_callback`; a task that finishes but found
something a person must see calls `alert(reason, kind)`. The target is one Airflow connection of type
`apprise`, named by CROSS_SELL_ALERT_CONN_ID (default `cross_sell_alerts`), whose extra `config` lists
Apprise URLs: `slack://...`, `msteams://...`, `mailto://user:pass@host?to=...`, `json://host/path` (a
webhook) and the ~100 other services Apprise reaches (the Apprise provider's `AppriseHook` sends them).

Without that connection the alert is only logged, with a line saying so. Alerts carry the run, the task,
the reason and a link to the task log, never a customer row.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseNotifier

from cross_sell.settings import Settings

log = logging.getLogger(__name__)
_FAILURE_KINDS = {"task_failed"}


def payload(context: Mapping[str, Any], reason: str, kind: str) -> dict:
    """The alert as a record (title and body for people, the fields for logs and tests)."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", None)
    run_id = context.get("run_id") or getattr(ti, "run_id", None)
    task_id = getattr(ti, "task_id", None)
    try_number = getattr(ti, "try_number", None)
    log_url = getattr(ti, "log_url", None) if ti is not None else None
    title = f"[cross-sell] {kind.replace('_', ' ')}: {dag_id}/{task_id}"
    text = f"{title} in run {run_id} (try {try_number}): {reason}" + (f"\nlog: {log_url}" if log_url else "")
    return {"kind": kind, "dag_id": dag_id, "run_id": run_id, "task_id": task_id, "try_number": try_number,
            "reason": reason, "log_url": log_url, "title": title, "text": text}


def send(message: dict, settings: Settings | None = None) -> str:
    """Deliver `message` through the alert connection; returns how ("apprise", "not delivered" or "log only")."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    settings = settings or Settings.from_env()
    try:
        connection = BaseHook.get_connection(settings.alert_conn_id)
    except AirflowNotFoundException:
        log.warning("ALERT (log only: no connection %r configured): %s", settings.alert_conn_id, message["text"])
        return "log only"
    if connection.conn_type != "apprise":
        log.warning("ALERT (log only: connection %r has type %r, not apprise): %s", settings.alert_conn_id,
                    connection.conn_type, message["text"])
        return "log only"
    import apprise
    from airflow.providers.apprise.hooks.apprise import AppriseHook

    targets = apprise.Apprise()  # the hook reads the connection's config; its own notify() hides a failure
    AppriseHook(apprise_conn_id=settings.alert_conn_id).set_config_from_conn(conn=connection, apprise_obj=targets)
    kind = apprise.NotifyType.FAILURE if message["kind"] in _FAILURE_KINDS else apprise.NotifyType.WARNING
    if not targets.notify(body=message["text"], title=message["title"], notify_type=kind):
        log.error("ALERT not delivered through %s (see Apprise's log above): %s", settings.alert_conn_id,
                  message["text"])
        return "not delivered"
    log.warning("ALERT sent through %s: %s", settings.alert_conn_id, message["text"])
    return "apprise"


def alert(reason: str, kind: str) -> dict:
    """From inside a running task: notify the alert target, and carry on."""
    from airflow.sdk import get_current_context

    message = payload(get_current_context(), reason, kind)
    try:
        send(message)
    except Exception:  # an unreachable alert target must not fail the task that noticed the problem
        log.exception("could not deliver the alert: %s", message["text"])
    return message


class AlertNotifier(BaseNotifier):
    """`on_failure_callback`: the failed task, its run and the exception, with a link to the task log."""

    def __init__(self, kind: str = "task_failed"):
        super().__init__()
        self.kind = kind

    def notify(self, context: Any) -> None:
        error = context.get("exception")
        reason = f"{type(error).__name__}: {error}" if error is not None else "the task failed"
        send(payload(context, reason, self.kind))
