"""
### Vehicle-insurance cross-sell: monitoring the champion in production

`monitor → report`, daily (`CROSS_SELL_MONITORING_CRON`, 06:00 UTC), for the day before (or `day`).

* **monitor**: the day's sampled requests against the champion's training profile (serving skew); the
  probabilities the service answered against the champion's test-split probabilities (prediction drift,
  PSI); outcomes observed that day (`customer_outcomes`: `{id, Response, observed_at}`) joined with the
  scores the latest scoring run gave those customers (realized ROC-AUC, precision at the threshold and in
  the top decile, observed vs predicted rate). Saved as `monitoring/daily/<day>.json`; skew past its
  limits, prediction drift past PSI 0.2, or realized figures below `min_realized_roc_auc` /
  `min_realized_precision` alert (named so since #31: they are alert limits on outcomes, not the training
  gates of the same names).
  It also checks the champion's audit trail and the erasure receipts: a receipt deleted, hidden by a delete
  marker, overwritten, unsigned, recording data left behind, or not matching the suppression list alerts.
* **report**: `monitoring/report.html`, the trend of the last 30 days on one self-contained page.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

from airflow.sdk import dag, task

from cross_sell.contracts import Monitored
from cross_sell.params import MonitoringParams  # typing and the standard library only: cheap at parse time
from cross_sell.settings import Settings  # standard library only: cheap at parse time
from cross_sell_airflow import tracking
from cross_sell_airflow.alerts import alert
from cross_sell_airflow.assets import SCORES, recorded_scores
from cross_sell_airflow.defaults import IO_RETRIES, cron, dag_defaults, dag_params
from cross_sell_airflow.links import MONITORED_DAY, MONITORING_PAGE, with_links
from cross_sell_airflow.stage import stage_run

SETTINGS = Settings.from_env()


@dag(
    dag_id="cross_sell_monitoring",
    schedule=cron(SETTINGS.monitoring_cron),
    doc_md=__doc__,
    tags=["cross-sell", "monitoring"],
    **dag_defaults(timeout=timedelta(minutes=30)),
    params=dag_params("cross_sell_monitoring", SETTINGS),
)
def cross_sell_monitoring():
    @task(inlets=[SCORES], multiple_outputs=False, **IO_RETRIES)
    def monitor() -> Monitored:
        from cross_sell.monitoring import daily as monitoring

        with stage_run(MonitoringParams) as run:
            day = date.fromisoformat(run.params["day"]) if run.params["day"] else \
                run.run_started.date() - timedelta(days=1)
            result = run.done(monitoring.monitor(
                run, day, scoring_runs=recorded_scores(before=day + timedelta(days=2)),
                min_realized_roc_auc=run.params["min_realized_roc_auc"],
                min_realized_precision=run.params["min_realized_precision"],
                skew_thresholds=run.params["skew_thresholds"]))
            if tracking.configured():  # MLflow, when a tracking server is set: never fails the task
                from cross_sell.governance.tracking import log_monitoring
                from cross_sell.storage import objects

                daily = json.loads(objects.read_artifact(run.registry.s3, run.registry.bucket, result["daily"]))
                tracking.report(log_monitoring(daily=daily, airflow=tracking.airflow_ids()))
        for reason in result["alerts"]:
            alert(reason, "monitoring")
        return result

    @task(multiple_outputs=False, **IO_RETRIES)
    def report(result: Monitored) -> str:
        from cross_sell.monitoring import daily as monitoring

        with stage_run(MonitoringParams, monitor=result) as run:
            return run.done(monitoring.build_report(run.registry.s3, SETTINGS.s3_bucket, SETTINGS.s3_prefix,
                                                    today=result["daily"]))

    # The day's figures and the trend page: buttons on the tasks' pages in the UI.
    with_links(report(with_links(monitor(), MONITORED_DAY)), MONITORING_PAGE)


cross_sell_monitoring()
