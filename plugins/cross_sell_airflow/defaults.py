"""What every cross-sell DAG shares: schedules that wait for their next slot, no catch-up, one active run,
alerts on failure, retries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, overload

from airflow.sdk import CronTriggerTimetable, Param

from cross_sell.settings import Settings
from cross_sell_airflow.alerts import AlertNotifier

_SETTINGS = Settings.from_env()

# Tasks that talk to MongoDB or S3 retry transient faults with growing pauses.
IO_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay": timedelta(seconds=_SETTINGS.retry_delay_seconds),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
}


@overload
def cron(expression: str) -> CronTriggerTimetable: ...
@overload
def cron(expression: str | None) -> CronTriggerTimetable | None: ...
def cron(expression: str | None) -> CronTriggerTimetable | None:
    """A cron expression or preset (UTC) as a schedule whose first run is its next slot: a DAG that is
    deployed, or unpaused, does not run at once for a slot that has passed (before any champion exists,
    that run could only fail). None: triggered runs only."""
    if not expression:
        return None
    # A zero delta, not False: Airflow 3.3 treats False like None (run a past slot less than a tenth of
    # the period ago, e.g. 2.4 h for a daily cron).
    return CronTriggerTimetable(expression, timezone="UTC", run_immediately=timedelta(0))


def dag_defaults(timeout: timedelta) -> dict:
    """Keyword arguments of `@dag`: every task times out after `timeout` unless it says otherwise, does not
    retry unless it says so (`IO_RETRIES`), and alerts when it fails. No start_date: with one, Airflow
    would run the latest past slot as soon as the DAG is unpaused (`cron`)."""
    return {
        "catchup": False,
        "max_active_runs": 1,
        "default_args": {"owner": "ml-platform", "retries": 0, "execution_timeout": timeout,
                         "on_failure_callback": [AlertNotifier()]},
    }


def dag_params(dag_id: str, settings: Settings | None = None) -> dict[str, Param]:
    """`@dag(params=...)` of `dag_id`, from the one declaration of each param (`cross_sell.params.declared`):
    default, JSON-schema bounds, description."""
    from cross_sell.params import NO_DEFAULT, declared

    return {name: Param(**({} if spec.default is NO_DEFAULT else {"default": spec.default}),
                        description=spec.description, **spec.schema)
            for name, spec in declared(dag_id, settings or _SETTINGS).items()}
