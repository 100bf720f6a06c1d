"""Alerts through Airflow's notifier mechanism: failed tasks, drift warnings, skew, a performance drop.

Every DAG's tasks get `AlertNotifier()` as `on_failure_callback`; a task that finishes but found
something a person must see calls `alert(reason, kind)`. The target is one Airflow connection, named by
CROSS_SELL_ALERT_CONN_ID (default `cross_sell_alerts`):

* an HTTP connection: the JSON payload is POSTed to it (a webhook; its `text` field makes it a valid
  Slack, Mattermost or Teams incoming-webhook message as it is);
* an SMTP connection: the same text by e-mail (Airflow's SMTP provider), to the extra `to`.

Without that connection the alert is only logged, with a line saying so.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseNotifier

from cross_sell.settings import Settings

log = logging.getLogger(__name__)


def payload(context: dict, reason: str, kind: str) -> dict:
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", None)
    run_id = context.get("run_id") or getattr(ti, "run_id", None)
    task_id = getattr(ti, "task_id", None)
    log_url = getattr(ti, "log_url", None) if ti is not None else None
    text = f"[cross-sell] {kind.replace('_', ' ')}: {dag_id}/{task_id} in run {run_id}: {reason}"
    return {"kind": kind, "dag_id": dag_id, "run_id": run_id, "task_id": task_id,
            "try_number": getattr(ti, "try_number", None), "reason": reason, "log_url": log_url,
            "text": text + (f" ({log_url})" if log_url else "")}


def send(message: dict, settings: Settings | None = None) -> str:
    """Deliver `message` to the alert connection; returns how ("http", "smtp" or "log only")."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    settings = settings or Settings.from_env()
    try:
        connection = BaseHook.get_connection(settings.alert_conn_id)
    except AirflowNotFoundException:
        log.warning("ALERT (log only: no connection %r configured): %s", settings.alert_conn_id, message["text"])
        return "log only"
    if connection.conn_type in ("http", "https"):
        from airflow.providers.http.hooks.http import HttpHook

        endpoint = connection.extra_dejson.get("endpoint", "")
        HttpHook(method="POST", http_conn_id=settings.alert_conn_id).run(
            endpoint, json=message, headers={"Content-Type": "application/json"})
        log.warning("ALERT sent to %s: %s", settings.alert_conn_id, message["text"])
        return "http"
    if connection.conn_type in ("smtp", "email"):
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook(smtp_conn_id=settings.alert_conn_id) as smtp:
            smtp.send_email_smtp(to=connection.extra_dejson["to"], subject=message["text"][:120],
                                 html_content=f"<pre>{message}</pre>")
        log.warning("ALERT e-mailed through %s: %s", settings.alert_conn_id, message["text"])
        return "smtp"
    log.warning("ALERT (log only: connection %r has type %r, not http or smtp): %s", settings.alert_conn_id,
                connection.conn_type, message["text"])
    return "log only"


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
