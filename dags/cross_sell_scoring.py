"""
### Vehicle-insurance cross-sell: scoring every customer

`score → campaign + publish`

Runs when `cross_sell_training` pushes a new champion (the `cross_sell_champion` Asset) and daily
(`CROSS_SELL_SCORING_CRON`), or when triggered with params.

* **score** leaves out every erased customer (the suppression list's keyed hashes, whatever the
  collections hold: a CRM writing one back does not bring them back), every customer who objected to
  marketing (`customer_consent`; and, with `exclude_contacted_days`, those contacted recently), counting
  who and why (the summary's `excluded`), streams the others from
  MongoDB in batches, checks each against the schema's scoring
  environment (the id and the serving features; rows that fail go to `quarantine.jsonl` with their
  reasons and are counted, never scored), scores the rest with the champion through the service's own
  path (signed ONNX file, ONNX Runtime), and writes `scores/<run id>/scores.parquet` (id, probability,
  label, decile, model version, scored-at) and the lift/gain per decile (`summary.json`, and the log).
* **campaign** ranks the customers to call first, the top `campaign_top_n` or the top
  `campaign_top_share`: `campaign.csv` and `campaign.parquet`, with expected buyers per call from the
  champion's test-split calibration.
* **publish** upserts one document per customer into the MongoDB collection `customer_scores`
  (`CROSS_SELL_SCORES_COLLECTION`), keyed on the customer id, for the CRM; outlet Asset
  `cross_sell_scores`.

Each task checks the files it reads against the sha256 the task that wrote them recorded in XCom
(scores replaced between `score` and `publish` are refused). A re-run of a run rewrites the same keys
and upserts the same documents.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import AssetOrTimeSchedule, dag, task

from cross_sell.contracts import Campaign, Published, Scored
from cross_sell.params import ScoringParams  # typing and the standard library only: cheap at parse time
from cross_sell.settings import Settings  # standard library only: cheap at parse time
from cross_sell_airflow import tracking
from cross_sell_airflow.assets import CHAMPION, SCORES, record_scores
from cross_sell_airflow.defaults import IO_RETRIES, cron, dag_defaults, dag_params
from cross_sell_airflow.links import CAMPAIGN, LIFT_TABLE, QUARANTINE, with_links
from cross_sell_airflow.links import SCORES as SCORES_FILE
from cross_sell_airflow.stage import stage_run

SETTINGS = Settings.from_env()
SCHEDULE = AssetOrTimeSchedule(timetable=cron(SETTINGS.scoring_cron), assets=CHAMPION) if SETTINGS.scoring_cron \
    else CHAMPION


@dag(
    dag_id="cross_sell_scoring",
    schedule=SCHEDULE,
    doc_md=__doc__,
    tags=["cross-sell", "scoring"],
    **dag_defaults(timeout=timedelta(hours=2)),
    params=dag_params("cross_sell_scoring", SETTINGS),
)
def cross_sell_scoring():
    @task(multiple_outputs=False, **IO_RETRIES)
    def score() -> Scored:
        from cross_sell.scoring import batch as scoring

        with stage_run(ScoringParams) as run:  # the run's clients: the scoring role's connections
            scored = run.done(scoring.score_customers(
                run, run.scores_artifacts, model=run.params["model"], scored_at=run.run_started,
                batch_rows=run.params["batch_rows"], exclude_contacted_days=run.params["exclude_contacted_days"]))
            if tracking.configured():  # MLflow, when a tracking server is set: never fails the task
                from cross_sell.governance.tracking import log_scoring

                tracking.report(log_scoring(summary=run.scores_artifacts.read_json(scored["summary"]),
                                            params=run.params, airflow=tracking.airflow_ids()))
            return scored

    @task(multiple_outputs=False, **IO_RETRIES)
    def campaign(scored: Scored) -> Campaign:
        from cross_sell.scoring import batch as scoring

        with stage_run(ScoringParams, score=scored) as run:
            return run.done(scoring.campaign(run.scores_artifacts, scored, top_share=run.params["campaign_top_share"],
                                             top_n=run.params["campaign_top_n"]))

    @task(outlets=[SCORES], multiple_outputs=False, **IO_RETRIES)
    def publish(scored: Scored) -> Published:
        from cross_sell.scoring import batch as scoring

        with stage_run(ScoringParams, score=scored) as run:
            published = run.done(scoring.publish_scores(run, run.scores_artifacts, scored))
        # Monitoring reads these scores back: the record as `score` sealed it, its files' sha256 inside.
        record_scores(run.sealed_inputs[0])
        return published

    scored = with_links(score(), SCORES_FILE, LIFT_TABLE, QUARANTINE)  # buttons on the task's page in the UI
    [with_links(campaign(scored), CAMPAIGN), publish(scored)]


cross_sell_scoring()
