"""
### Vehicle-insurance cross-sell: roll the champion back

Triggered with params, never scheduled: `version` (a registry version that served as champion before),
`reason` (why: recorded), `force` (also a version that never served, or the current shadow: a person
decided so, and the audit record says it was forced).

* **rollback** moves the signed champion pointer to `version` (a conditional write) and records the change
  in the write-once audit trail with the run's triggering user as `by`. Its outlet is the champion Asset,
  so the scoring DAG runs at once and `customer_scores` (the CRM's list) comes from the restored model.

A refused version fails the task with the reason and changes nothing; the service follows the pointer by
itself. The CLI's `python -m cross_sell champion rollback` is the break-glass path when Airflow is down.
Connections: `aws_default`, `cross_sell_signing`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, task

from cross_sell.contracts import RolledBack
from cross_sell.params import RollbackParams
from cross_sell_airflow.assets import CHAMPION
from cross_sell_airflow.defaults import IO_RETRIES, dag_defaults
from cross_sell_airflow.stage import stage_run


@dag(
    dag_id="cross_sell_rollback",
    schedule=None,
    doc_md=__doc__,
    tags=["cross-sell", "model-governance"],
    **dag_defaults(timeout=timedelta(minutes=30)),
    params={
        "version": Param(type="string", minLength=1, pattern=r"^[A-Za-z0-9._-]+$",
                         description="The registry version to serve again (python -m cross_sell champion history)."),
        "reason": Param(type="string", minLength=3, description="Why (recorded in the audit trail)."),
        "force": Param(False, type="boolean",
                       description="Also a version that never served as champion, or the current shadow."),
    },
)
def cross_sell_rollback():
    @task(outlets=[CHAMPION], multiple_outputs=False, execution_timeout=timedelta(minutes=10), **IO_RETRIES)
    def rollback() -> RolledBack:
        from cross_sell import stages

        with stage_run(RollbackParams) as run:
            return run.done(stages.rollback(run.registry, run.params["version"], signer=run.signer,
                                            reason=run.params["reason"], by=run.triggered_by, run_id=run.run_id,
                                            force=run.params["force"]))

    rollback()


cross_sell_rollback()
