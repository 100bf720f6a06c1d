"""
### Vehicle-insurance cross-sell: roll the champion back

Triggered with params, never scheduled, by one of the deployment policy's rollback operators
(`CROSS_SELL_ROLLBACK_OPERATORS`; anyone else's run fails at its first task): `version` (a registry
version to serve again), `reason` (why: recorded as data), `force` (a version outside what may be restored
alone: one that never served as champion, the current shadow, one whose training data retention has
deleted, or one trained on customers erased since).

* **approve_forced_rollback**, only with `force`: a second person (one of `CROSS_SELL_APPROVERS`, never
  the user who triggered the run) approves it in the UI's Required Actions or through the REST API; the
  answer, read from Airflow's own record, becomes a signed approval bound to this run and version.
  Reject, or no answer within the response timeout, and nothing changes.
* **rollback** moves the signed champion pointer to `version` (a conditional write) and records the change
  in the write-once audit trail with the run's triggering user as `by` (and the second person, with
  `force`), and the policy in force. Its outlet is the champion Asset, so the scoring DAG runs at once
  and `customer_scores` (the CRM's list) comes from the restored model.

A refused version fails the task with the reason and changes nothing; the service follows the pointer by
itself. The CLI's `python -m cross_sell champion rollback` is the break-glass path when Airflow is down
(it needs the private signing key itself). Connections: `aws_default`, `cross_sell_signing`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from cross_sell.contracts import RolledBack
from cross_sell.params import RollbackParams
from cross_sell.settings import Settings  # standard library only: cheap at parse time
from cross_sell_airflow.approval import rollback_approval
from cross_sell_airflow.assets import CHAMPION
from cross_sell_airflow.defaults import IO_RETRIES, dag_defaults, dag_params
from cross_sell_airflow.links import RESTORED_MODEL_CARD, with_links
from cross_sell_airflow.stage import stage_run

SETTINGS = Settings.from_env()


@task.branch(execution_timeout=timedelta(minutes=1))
def route_rollback(**context) -> str:
    return "approve_forced_rollback" if context["params"]["force"] else "rollback"


# After the branch: runs with or without the approval task (skipped when not forced); a rejection skips it.
@task(outlets=[CHAMPION], multiple_outputs=False, execution_timeout=timedelta(minutes=10),
      trigger_rule="none_failed_min_one_success", **IO_RETRIES)
def rollback(**context) -> RolledBack:
    from cross_sell.governance import approval
    from cross_sell.operations import training as stages
    from cross_sell.storage.signing import ManifestVerifier

    with stage_run(RollbackParams) as run:
        version, force = run.params["version"], run.params["force"]
        approved = None
        if force:  # only a signed approval of this run and version, made from Airflow's record of the answer
            approved = approval.verified(context["ti"].xcom_pull(task_ids="approve_forced_rollback"),
                                         approval.rollback_subject(run.run_id, version), ManifestVerifier.from_env())
        return run.done(stages.rollback(run, version, reason=run.params["reason"], by=run.triggered_by,
                                        run_id=run.run_id, force=force, approved=approved))


@task(execution_timeout=timedelta(minutes=1))
def check_operator(**context) -> None:
    """Before anyone is asked to approve anything: only the policy's rollback operators may roll back."""
    from airflow.sdk.exceptions import AirflowFailException

    from cross_sell.governance.policy import PolicyError

    try:
        SETTINGS.policy.check_rollback_operator(getattr(context["dag_run"], "triggering_user_name", None))
    except PolicyError as refused:
        raise AirflowFailException(str(refused)) from None


@dag(
    dag_id="cross_sell_rollback",
    schedule=None,
    doc_md=__doc__,
    tags=["cross-sell", "model-governance"],
    **dag_defaults(timeout=timedelta(minutes=30)),
    params=dag_params("cross_sell_rollback", SETTINGS),
)
def cross_sell_rollback():
    restored = with_links(rollback(), RESTORED_MODEL_CARD)
    route = route_rollback()
    check_operator() >> route >> restored
    route >> rollback_approval(SETTINGS) >> restored


cross_sell_rollback()
