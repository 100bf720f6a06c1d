"""
### Vehicle-insurance cross-sell: erasure on request (GDPR art. 17)

Triggered with params, never scheduled: `request` names a text file of customer ids (one per line) put
under `<prefix>/erasure/requests/` (so no id is kept in Airflow's database), `reason` says why, `dry_run`
only counts.

* **erase** works from the storage layout (`cross_sell.storage.layout`, every place that holds customer data): adds
  their keyed hashes to the suppression list first (`load`, extraction and scoring leave them out from now
  on; an opt-out is kept with the hash); removes their documents from every customer collection, matched by
  `id` and `_id`; rewrites every version of every object that holds their rows (snapshots, splits, scores,
  campaign lists, quarantine files by id; serving samples by their feature rows, read before deletion)
  without them, a row group at a time; scans everything again and writes a numbered, signed, write-once
  erasure receipt (`erasure/receipts/`: the hashes, never the ids; what was found, removed and is left
  where; old and new sha256; who, when, why; the model versions trained on data that held them); deletes
  the request file (a dry run's too). If the re-scan finds anything left, the receipt says so and the task
  fails.

The run's triggering user is recorded as who asked. Connections: the housekeeping user's S3 connection
(CROSS_SELL_HOUSEKEEPING_AWS_CONN_ID) and MongoDB's erasure user (CROSS_SELL_ERASURE_MONGO_CONN_ID).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from cross_sell.contracts import Erased
from cross_sell.params import ErasureParams  # typing and the standard library only: cheap at parse time
from cross_sell_airflow.defaults import dag_defaults, dag_params
from cross_sell_airflow.links import ERASURE_RECEIPT, with_links
from cross_sell_airflow.stage import stage_run


@dag(
    dag_id="cross_sell_erasure",
    schedule=None,
    doc_md=__doc__,
    tags=["cross-sell", "data-governance"],
    **dag_defaults(timeout=timedelta(hours=6)),
    params=dag_params("cross_sell_erasure"),
)
def cross_sell_erasure():
    # No automatic retry: a try that failed half-way has changed things its receipt would not show; a person
    # triggers the request again (the new receipt records what was still left) after reading the log.
    @task(multiple_outputs=False, retries=0)
    def erase() -> Erased:
        from cross_sell.privacy import erasure

        with stage_run(ErasureParams) as run:  # the run's clients: the erasure role's connections
            return run.done(erasure.run_request(run, run.params["request"], reason=run.params["reason"],
                                                by=run.triggered_by, dry_run=run.params["dry_run"]))

    with_links(erase(), ERASURE_RECEIPT)


cross_sell_erasure()
