"""
### Vehicle-insurance cross-sell: training

`extract → validate + check_drift → transform → train → evaluate → (should_push) → [approve] → push`

* **extract** streams the MongoDB customers collection (projection, batches) into one Parquet snapshot
  under the run's S3 prefix: rows and a content fingerprint.
* **validate** runs the Great Expectations suite generated from `schema.py`; saves the result, a
  self-contained HTML report and GX's Data Docs; a failure stops the run without retry and lists every
  failed expectation.
* **check_drift** compares the snapshot with the champion's training profile (PSI / Jensen-Shannon for
  numbers, L-infinity for categories); distances are always saved; past a threshold it warns or fails
  (`drift_action`).
* **transform** makes the stratified, seeded train / validation / test split.
* **train** fits the `model` family's pipeline (HistGradientBoosting, LightGBM, or the mean of LightGBM and
  CatBoost; default CROSS_SELL_MODEL) on train + validation, with the F1-best threshold of its pooled
  5-fold out-of-fold predictions, converts it to one ONNX graph (what serves) and compares the two on the
  test split and on every value the serving schema admits.
* **evaluate** scores candidate and champion, both as they serve, on the same test split, with fairness
  per protected attribute (fairlearn); the decision with its reason and an HTML report (its address is
  in the log). A candidate past `max_equalized_odds_difference` on a gated attribute is never blessed.
* **approve**, only with `require_approval`: Airflow's human-in-the-loop ApprovalOperator shows a reviewer
  the decision, both models' metrics, fairness, drift and links to the report and model card; Approve
  pushes (the approver goes into the signed manifest and the audit record), Reject or no answer within
  the response timeout does not.
* **push**, only when blessed (and approved, when required): a new registry version with a signed
  manifest, then the champion pointer (a conditional write).
* **shadow**, only for a challenger (above the floor, a model of its own, not better by the margin): a
  registry version that the service scores sampled requests with beside the champion (`shadow.json`).

Every object a task hands to the next travels with its sha256 and size in the task's XCom record, and
the reader refuses an object that differs (the bucket changed between two tasks). When a champion
pointer exists, `evaluate` must verify and score its champion, or it fails (the gate fails closed) unless
`replace_unreadable_champion` is set.

Tasks that touch MongoDB or S3 retry with growing pauses; a failure that retrying cannot fix (bad
data, drift set to fail, a broken signature or hash) fails at once. Params: `min_roc_auc`,
`promotion_margin`, `min_rows`, `seed`, `drift_action`, `drift_thresholds`, `replace_unreadable_champion`,
`exclude_features`, `max_equalized_odds_difference`, `require_approval`, `model`.
Connections: `mongo_default`, `aws_default`, `cross_sell_signing` (the model-signing key; override the ids
with CROSS_SELL_*_CONN_ID).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from cross_sell.contracts import (
    ApprovalRequest,
    Decision,
    DriftChecked,
    Extracted,
    Pushed,
    Shadowed,
    Trained,
    Transformed,
    Validated,
)
from cross_sell.params import TrainingParams  # typing and the standard library only: cheap at parse time
from cross_sell.settings import Settings  # standard library only: cheap at parse time
from cross_sell_airflow import tracking
from cross_sell_airflow.alerts import alert
from cross_sell_airflow.approval import push_approval
from cross_sell_airflow.assets import CHAMPION, RAW_SNAPSHOT
from cross_sell_airflow.defaults import IO_RETRIES, cron, dag_defaults, dag_params
from cross_sell_airflow.links import (
    EVALUATION_REPORT,
    PUSHED_MODEL_CARD,
    RUN_MODEL_CARD,
    SHADOW_MODEL_CARD,
    VALIDATION_REPORT,
    with_links,
)
from cross_sell_airflow.stage import stage_run

SETTINGS = Settings.from_env()


# The tasks. Each imports its stage inside the body (never at parse time) and calls it with keywords:
# go-to-definition on `stages.validate` lands on the function that does the work.
@task(outlets=[RAW_SNAPSHOT], multiple_outputs=False, **IO_RETRIES)
def extract() -> Extracted:
    from cross_sell.operations import training as stages

    with stage_run(TrainingParams) as run:
        return run.done(stages.extract(run.customer_documents(), run.artifacts, suppression=run.suppression()))


@task(multiple_outputs=False, retries=0, execution_timeout=timedelta(minutes=15))
def validate(extracted: Extracted) -> Validated:
    from cross_sell.operations import training as stages

    with stage_run(TrainingParams, extract=extracted) as run:
        return run.done(stages.validate(run.artifacts, snapshot_ref=extracted["snapshot"],
                                        min_rows=run.params["min_rows"]))


@task(multiple_outputs=False, execution_timeout=timedelta(minutes=15), **IO_RETRIES)
def check_drift(extracted: Extracted) -> DriftChecked:
    from cross_sell.operations import training as stages

    with stage_run(TrainingParams, extract=extracted) as run:
        checked = run.done(stages.check_drift(run.artifacts, run.registry, snapshot_ref=extracted["snapshot"],
                                              thresholds=run.params["drift_thresholds"],
                                              action=run.params["drift_action"]))
    if checked.get("drifted"):  # drift_action "warn": the run goes on, and someone is told
        alert(f"drift in {', '.join(checked['drifted'])} against champion {checked.get('champion_version')} "
              f"(report: {checked.get('report_key')})", "drift_warning")
    return checked


@task(multiple_outputs=False, execution_timeout=timedelta(minutes=15), **IO_RETRIES)
def transform(extracted: Extracted, validated: Validated) -> Transformed:
    from cross_sell.operations import training as stages

    with stage_run(TrainingParams, extract=extracted, validate=validated) as run:
        return run.done(stages.transform(run.artifacts, snapshot_ref=extracted["snapshot"],
                                         seed=run.params["seed"], validated=validated))


@task(multiple_outputs=False, execution_timeout=timedelta(minutes=45), **IO_RETRIES)
def train(transformed: Transformed) -> Trained:
    from cross_sell.operations import training as stages

    with stage_run(TrainingParams, transform=transformed) as run:
        return run.done(stages.train(run.artifacts, transformed, seed=run.params["seed"],
                                     run_started=run.run_started,
                                     exclude_features=run.params["exclude_features"],
                                     model=run.params["model"]))


@task(multiple_outputs=False, execution_timeout=timedelta(minutes=15), **IO_RETRIES)
def evaluate(trained: Trained, transformed: Transformed, validated: Validated, extracted: Extracted,
             drift: DriftChecked) -> Decision:
    from cross_sell.model import evaluation
    from cross_sell.operations import training as stages

    with stage_run(TrainingParams, train=trained, transform=transformed, validate=validated, extract=extracted,
                   check_drift=drift) as run:
        stages.check_consistent(extracted=extracted, transformed=transformed, trained=trained, validated=validated,
                                drift=drift)
        gate = evaluation.Gate.for_run(run.settings.policy, run.params)  # the policy, tightened by the params
        decision = run.done(stages.evaluate(run.artifacts, run.registry, trained,
                                            test=transformed["splits"]["test"], gate=gate,
                                            validation=validated["summary"]))
        if tracking.configured():  # MLflow, when a tracking server is set: never fails the task
            from cross_sell.governance.tracking import track_evaluation

            tracking.report(track_evaluation(run.artifacts, trained, extracted, validated, drift, decision,
                                             params=run.params, airflow=tracking.airflow_ids()))
        return decision


@task.short_circuit(execution_timeout=timedelta(minutes=1))
def should_push(decision: Decision) -> bool:
    print(f"{'push' if decision['bless'] else 'skip push'}: {decision['reason']}")
    return decision["bless"]


@task.branch(execution_timeout=timedelta(minutes=1))
def route_push(**context) -> str:
    required = context["params"]["require_approval"] or SETTINGS.policy.require_approval
    return "describe_for_approval" if required else "push"


@task(execution_timeout=timedelta(minutes=10), **IO_RETRIES)
def describe_for_approval(decision: Decision, trained: Trained, extracted: Extracted,
                          drift: DriftChecked) -> ApprovalRequest:
    from cross_sell.operations import training as stages

    with stage_run(TrainingParams, evaluate=decision, train=trained, extract=extracted, check_drift=drift) as run:
        stages.check_consistent(extracted=extracted, trained=trained, drift=drift, decision=decision)
        return run.done(stages.describe_for_approval(
            run.artifacts, decision, trained, extracted, drift=drift,
            link_seconds=int(SETTINGS.approval_timeout_hours * 3600)))

# After the branch: runs with or without the approval task (skipped when none is required); a
# rejection skips it. It checks the answer itself: no signed approval of this very candidate, no push.
@task(outlets=[CHAMPION], multiple_outputs=False, execution_timeout=timedelta(minutes=15),
      trigger_rule="none_failed_min_one_success", **IO_RETRIES)
def push(decision: Decision, trained: Trained, extracted: Extracted, **context) -> Pushed:
    from cross_sell.governance import approval
    from cross_sell.operations import training as stages
    from cross_sell.storage.signing import ManifestVerifier

    with stage_run(TrainingParams, evaluate=decision, train=trained, extract=extracted) as run:
        stages.check_consistent(extracted=extracted, trained=trained, decision=decision)
        approved = approval.approval_record(run.params["require_approval"] or run.settings.policy.require_approval,
                                            context["ti"].xcom_pull(task_ids="approve"),
                                            approval.push_subject(run.run_id, trained), ManifestVerifier.from_env())
        pushed = run.done(stages.push(run.artifacts, run.registry, decision, trained, extracted, signer=run.signer,
                                      approved=approved))
        if pushed["pushed"] and tracking.configured():
            from cross_sell.governance.tracking import track_publication

            tracking.report(track_publication(run.registry, pushed["version"], run.run_id, "champion", approved),
                            alert_on_problem=False)  # evaluate alerted already if the server is down
        return pushed


@task.short_circuit(execution_timeout=timedelta(minutes=1))
def should_shadow(decision: Decision) -> bool:
    return decision["challenger"]


@task(multiple_outputs=False, execution_timeout=timedelta(minutes=15), **IO_RETRIES)
def shadow(decision: Decision, trained: Trained, extracted: Extracted) -> Shadowed:
    from cross_sell.operations import training as stages

    with stage_run(TrainingParams, evaluate=decision, train=trained, extract=extracted) as run:
        stages.check_consistent(extracted=extracted, trained=trained, decision=decision)
        shadowed = run.done(stages.shadow(run.artifacts, run.registry, decision, trained, extracted,
                                          signer=run.signer))
        if tracking.configured():
            from cross_sell.governance.tracking import track_publication

            tracking.report(track_publication(run.registry, shadowed["shadow"], run.run_id, "shadow"),
                            alert_on_problem=False)
        return shadowed


@dag(
    dag_id="cross_sell_training",
    schedule=cron(SETTINGS.schedule),
    doc_md=__doc__,
    tags=["cross-sell", "training"],
    **dag_defaults(timeout=timedelta(minutes=30)),
    params=dag_params("cross_sell_training", SETTINGS),
)
def cross_sell_training():
    # Each output is a button on its task's page in the UI (cross_sell_airflow.links).
    extracted = extract()
    validated = with_links(validate(extracted), VALIDATION_REPORT)
    drift = check_drift(extracted)
    transformed = transform(extracted, validated)  # splits only what validation passed
    drift >> transformed  # nothing runs on data that failed either
    trained = train(transformed)
    decision = with_links(evaluate(trained, transformed, validated, extracted, drift), EVALUATION_REPORT)
    pushed = with_links(push(decision, trained, extracted), PUSHED_MODEL_CARD)
    route = route_push()
    should_push(decision) >> route >> pushed
    described = with_links(describe_for_approval(decision, trained, extracted, drift), RUN_MODEL_CARD)
    # No links on the approval task itself (its form links both): working them out as it parks would delay its
    # exit, and an answer landing before the parked try has ended fails the resumed task on Airflow 3.3.2.
    route >> described >> push_approval(SETTINGS) >> pushed
    should_shadow(decision) >> with_links(shadow(decision, trained, extracted), SHADOW_MODEL_CARD)


cross_sell_training()
