"""
### Vehicle-insurance cross-sell: housekeeping (retention)

Daily (`CROSS_SELL_HOUSEKEEPING_CRON`, 04:00 UTC). **retain** deletes, every version, what the retention
policy (`cross_sell.privacy.retention`, the CROSS_SELL_RETENTION_* settings) says is past its time and S3's
lifecycle rules cannot decide: a training run's folder once no kept model (the champion, the shadow, the
last N registry versions) was trained on it; scoring runs but the latest; serving samples and monitoring
days by age. A record of what went (counts and names, no customer data) is kept under `audit/retention/`.
It runs as the housekeeping user (CROSS_SELL_HOUSEKEEPING_AWS_CONN_ID): the training side cannot delete.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from cross_sell.contracts import Retained
from cross_sell.params import HousekeepingParams  # typing and the standard library only: cheap at parse time
from cross_sell.settings import Settings  # standard library only: cheap at parse time
from cross_sell_airflow.defaults import IO_RETRIES, cron, dag_defaults, dag_params
from cross_sell_airflow.stage import stage_run

SETTINGS = Settings.from_env()


@dag(
    dag_id="cross_sell_housekeeping",
    schedule=cron(SETTINGS.housekeeping_cron),
    doc_md=__doc__,
    tags=["cross-sell", "data-governance"],
    **dag_defaults(timeout=timedelta(hours=2)),
    params=dag_params("cross_sell_housekeeping", SETTINGS),
)
def cross_sell_housekeeping():
    @task(multiple_outputs=False, **IO_RETRIES)
    def retain() -> Retained:
        from cross_sell.privacy import retention

        with stage_run(HousekeepingParams) as run:
            return run.done(retention.run(run, by=f"run {run.run_id}", dry_run=run.params["dry_run"]))

    retain()


cross_sell_housekeeping()
