"""
### Vehicle-insurance cross-sell: weekly training

`extract → validate + check_drift → transform → train → evaluate → (should_push) → push`

* **extract** streams the MongoDB customers collection into a Parquet snapshot under the run's S3 prefix.
* **validate** runs the Great Expectations suite generated from the schema; a failure stops the run
  (no retry) and the log lists every failed expectation. Result JSON and Data Docs stay with the run.
* **check_drift** compares the snapshot with the champion's training profile (PSI / Jensen-Shannon for
  numeric features, L-infinity for categorical ones); the distances are always logged and saved, and
  crossing a threshold warns or fails the run (`drift_action`).
* **transform / train** split (stratified, seeded), fit one scikit-learn estimator, tune its threshold.
* **evaluate** scores candidate and current champion on the same test split and writes the HTML
  evaluation report (its S3 address is in the task log).
* **push** runs only when the candidate is blessed: new registry version (model, manifest, training
  profile, model card), then the champion pointer.

Params: `min_roc_auc` (floor for a first model), `promotion_margin` (ROC-AUC a challenger must gain),
`min_rows`, `seed`, `drift_action` (`warn` | `fail`), `drift_thresholds` (per-feature limits).
Connections: `mongo_default`, `aws_default` (override with CROSS_SELL_*_CONN_ID).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

from cross_sell.settings import Settings  # standard library only: cheap at parse time

SETTINGS = Settings.from_env()
REGISTRY_ROOT = f"s3://{SETTINGS.s3_bucket}/{SETTINGS.s3_prefix}"
RAW_SNAPSHOT = Asset(name="cross_sell_raw_snapshot", uri=f"{REGISTRY_ROOT}/runs")
CHAMPION = Asset(name="cross_sell_champion", uri=f"{REGISTRY_ROOT}/champion.json")

# Tasks that talk to MongoDB or S3 retry transient faults with growing pauses.
IO_RETRIES = {
    "retries": 3,
    "retry_delay": timedelta(seconds=SETTINGS.retry_delay_seconds),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
}


def _context() -> tuple[dict, str, object]:
    context = get_current_context()
    return context["params"], context["run_id"], context["dag_run"]


@dag(
    dag_id="cross_sell_training",
    schedule=SETTINGS.schedule,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cross-sell", "training"],
    default_args={"owner": "ml-platform", "retries": 0, "execution_timeout": timedelta(minutes=30)},
    params={
        "min_roc_auc": Param(0.75, type="number", minimum=0.5, maximum=1.0,
                             description="ROC-AUC a first model must reach to become champion."),
        "promotion_margin": Param(0.002, type="number", minimum=0.0, maximum=0.2,
                                  description="ROC-AUC gain a challenger needs over the champion."),
        "min_rows": Param(1000, type="integer", minimum=100, description="Fewest rows a snapshot may have."),
        "seed": Param(42, type="integer", minimum=0, description="Seed of the split and the estimator."),
        "drift_action": Param("warn", type="string", enum=["warn", "fail"],
                              description="What a feature drifting past its threshold does to the run."),
        "drift_thresholds": Param({}, type="object",
                                  description='Per-feature drift limits, e.g. {"Age": 0.1} (PSI for numeric '
                                              'features, L-infinity for categorical; defaults 0.2 / 0.1).'),
    },
)
def cross_sell_training():
    @task(outlets=[RAW_SNAPSHOT], execution_timeout=timedelta(minutes=30), **IO_RETRIES)
    def extract() -> dict:
        from cross_sell import pipeline
        from cross_sell_airflow.hooks import customer_documents, run_artifacts

        _, run_id, _ = _context()
        return pipeline.extract(customer_documents(SETTINGS), run_artifacts(SETTINGS, run_id))

    @task(retries=0, execution_timeout=timedelta(minutes=15))
    def validate(extracted: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from cross_sell import pipeline
        from cross_sell.validation import DataValidationError
        from cross_sell_airflow.hooks import run_artifacts

        params, run_id, _ = _context()
        try:
            return pipeline.validate(run_artifacts(SETTINGS, run_id), extracted["raw_key"], params["min_rows"])
        except DataValidationError as failure:
            raise AirflowFailException(str(failure)) from None  # bad data: retrying cannot help

    @task(execution_timeout=timedelta(minutes=15), **IO_RETRIES)
    def check_drift(extracted: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from cross_sell import pipeline
        from cross_sell.drift import DriftError
        from cross_sell_airflow.hooks import model_registry, run_artifacts

        params, run_id, _ = _context()
        try:
            return pipeline.check_drift(run_artifacts(SETTINGS, run_id), model_registry(SETTINGS),
                                        extracted["raw_key"], params["drift_thresholds"], params["drift_action"])
        except (DriftError, ValueError) as failure:
            raise AirflowFailException(str(failure)) from None  # drifted data or bad params: retrying cannot help

    @task(execution_timeout=timedelta(minutes=15), **IO_RETRIES)
    def transform(extracted: dict) -> dict:
        from cross_sell import pipeline
        from cross_sell_airflow.hooks import run_artifacts

        params, run_id, _ = _context()
        return pipeline.transform(run_artifacts(SETTINGS, run_id), extracted["raw_key"], params["seed"])

    @task(execution_timeout=timedelta(minutes=45), **IO_RETRIES)
    def train(transformed: dict) -> dict:
        from cross_sell import pipeline
        from cross_sell_airflow.hooks import run_artifacts

        params, run_id, dag_run = _context()
        return pipeline.train(run_artifacts(SETTINGS, run_id), transformed["split_keys"], params["seed"],
                              run_started=dag_run.run_after)

    @task(execution_timeout=timedelta(minutes=15), **IO_RETRIES)
    def evaluate(trained: dict, transformed: dict) -> dict:
        from cross_sell import pipeline
        from cross_sell_airflow.hooks import model_registry, run_artifacts

        params, run_id, _ = _context()
        return pipeline.evaluate(run_artifacts(SETTINGS, run_id), model_registry(SETTINGS), trained,
                                 transformed["split_keys"]["test"], params["min_roc_auc"],
                                 params["promotion_margin"])

    @task.short_circuit(execution_timeout=timedelta(minutes=1))
    def should_push(decision: dict) -> bool:
        print(f"{'push' if decision['bless'] else 'skip push'}: {decision['reason']}")
        return decision["bless"]

    @task(outlets=[CHAMPION], execution_timeout=timedelta(minutes=15), **IO_RETRIES)
    def push(decision: dict, trained: dict, extracted: dict) -> dict:
        from cross_sell import pipeline
        from cross_sell_airflow.hooks import manifest_signer, model_registry, run_artifacts

        _, run_id, _ = _context()
        return pipeline.push(run_artifacts(SETTINGS, run_id), model_registry(SETTINGS), decision, trained,
                             extracted, manifest_signer(SETTINGS))

    extracted = extract()
    transformed = transform(extracted)
    [validate(extracted), check_drift(extracted)] >> transformed  # nothing runs on data that failed either
    trained = train(transformed)
    decision = evaluate(trained, transformed)
    should_push(decision) >> push(decision, trained, extracted)


cross_sell_training()
