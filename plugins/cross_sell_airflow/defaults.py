"""What every cross-sell DAG shares: start, no catch-up, one active run, alerts on failure, retries."""

from __future__ import annotations

from datetime import timedelta

import pendulum

from cross_sell.settings import Settings

from cross_sell_airflow.alerts import AlertNotifier

_SETTINGS = Settings.from_env()

# Tasks that talk to MongoDB or S3 retry transient faults with growing pauses.
IO_RETRIES = {
    "retries": 3,
    "retry_delay": timedelta(seconds=_SETTINGS.retry_delay_seconds),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
}


def dag_defaults(timeout: timedelta) -> dict:
    """Keyword arguments of `@dag`: every task times out after `timeout` unless it says otherwise, does not
    retry unless it says so (`IO_RETRIES`), and alerts when it fails."""
    return {
        "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
        "catchup": False,
        "max_active_runs": 1,
        "default_args": {"owner": "ml-platform", "retries": 0, "execution_timeout": timeout,
                         "on_failure_callback": [AlertNotifier()]},
    }
