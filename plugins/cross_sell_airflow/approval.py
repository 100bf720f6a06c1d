"""A person's approval as evidence: Airflow's human-in-the-loop `ApprovalOperator` (standard provider), as the
training DAG (each push, when the policy or the run requires it) and the rollback DAG (a forced rollback)
use it.

The reviewer answers in the UI (Browse -> Required Actions, or the task's page) or through the REST API
(`PATCH .../taskInstances/<task>/-1/hitlDetails`), with an optional comment. Only the policy's approvers are
assigned (Airflow answers anyone else with 403), never the user who triggered the run unless the policy
allows it. When the answer comes, Airflow resumes the task with its record of it (written by Airflow's HITL
endpoint for the assigned users only; no XCom, conf or clear reaches it); the task checks it against the
policy again and returns an approval record bound to the run and its subject (the candidate's files, or the
rollback's version), **signed** with the training side's key (`cross_sell.governance.approval.sign`). The task that
acts (`push`, `rollback`) accepts nothing else: an XCom a User writes cannot carry that signature. "Reject",
or no answer within the response timeout (the default answer is Reject), skips what follows. Either way the
log says who answered what, and a timeout alerts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param

from cross_sell.settings import Settings

Subject = Callable[[Any], tuple[dict, str | None]]  # context -> (what is approved, verified body or None)
SUBJECT_KEY = "approval_subject"  # the XCom (sealed by the approval task) of what the reviewer was shown


class SignedApproval(ApprovalOperator):
    """ApprovalOperator that hands on a signed approval record made from Airflow's record of the answer."""

    def __init__(self, *, approved: Subject, settings: Settings, second_person: bool = False, **kwargs):
        super().__init__(**kwargs)
        self._subject = approved  # what is approved: the subject the signed record is bound to
        # A second person, always (a forced rollback): never the user who triggered the run, whatever the policy.
        self._policy = replace(settings.policy, allow_self_approval=False) if second_person else settings.policy
        self._settings = settings

    @staticmethod
    def _custody():
        from cross_sell.governance.custody import Custody

        return Custody.from_env()

    def _triggered_by(self, context) -> str | None:
        return getattr(context["dag_run"], "triggering_user_name", None) or None

    def execute(self, context):
        from airflow.sdk.exceptions import AirflowFailException

        from cross_sell.errors import NotRetryable

        policy = self._policy
        try:
            subject, body = self._subject(context)  # a sealed body (the push's) is checked before anyone reads it
        except NotRetryable as refused:
            raise AirflowFailException(f"{type(refused).__name__}: {refused}") from None
        if body is not None:
            self.body = body
        # What the reviewer is shown now is what an answer approves, whatever is re-run meanwhile: kept
        # sealed by this task, read back when the answer comes.
        context["ti"].xcom_push(key=SUBJECT_KEY, value=self._custody().seal(
            {"subject": subject}, context["ti"].dag_id, context["run_id"], self.task_id))
        try:  # Airflow answers 403 to anyone else who responds
            self.assigned_users = [{"id": name, "name": name} for name in policy.assignees(self._triggered_by(context))]
        except NotRetryable as refused:
            raise AirflowFailException(str(refused)) from None
        self.assigned_users = self.assigned_users or None  # none named: any user (but see `approval.sign`)
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from cross_sell.errors import NotRetryable
        from cross_sell.governance import approval
        from cross_sell_airflow.hooks import manifest_signer

        if "error" in event:  # e.g. the scheduler's timeout sweep: the operator decides
            return super().execute_complete(context=context, event=event)
        # Airflow resumes the task with its record of the answer, which only Airflow's HITL endpoint writes
        # (for the assigned users) and no XCom or conf can reach: the evidence signed below.
        response = event
        chosen, user, comment = approval.decided(response)
        if user is None:
            from cross_sell_airflow.alerts import alert

            self.log.warning("no answer within the response timeout: %s, nothing is approved", chosen)
            alert(f"the approval ({self.task_id}) timed out (no answer): nothing is done", "approval_timeout")
        else:
            self.log.info("%s by %s%s", "approved" if chosen == self.APPROVE else "rejected", user,
                          f": {comment!r}" if comment else "")
        # Said before the operator acts on the answer: a rejection skips what follows by raising (Airflow 3's
        # SkipMixin), so nothing after super() would run then.
        answered = super().execute_complete(context=context, event=event)
        if chosen != self.APPROVE:
            return answered
        try:
            subject = self._custody().open(
                context["ti"].xcom_pull(task_ids=self.task_id, key=SUBJECT_KEY), "the request the reviewer was shown",
                dag_id=context["ti"].dag_id, run_id=context["run_id"], task_id=self.task_id)["subject"]
            signed = approval.sign(subject, response, self._triggered_by(context), self._policy,
                                   manifest_signer(self._settings))
        except NotRetryable as refused:
            raise AirflowFailException(f"{type(refused).__name__}: {refused}") from None
        self.log.info("signed approval of %s by %s", subject, user)
        return signed


def _push_subject(context) -> tuple[dict, str]:
    """The push's subject and the request's body, from `describe_for_approval`'s sealed record."""
    from cross_sell.governance.custody import Custody

    sealed = context["ti"].xcom_pull(task_ids="describe_for_approval")
    described = Custody.from_env().open(sealed, "the approval request", dag_id=context["ti"].dag_id,
                                        run_id=context["run_id"], task_id="describe_for_approval")
    return described["subject"], described["body"]


def _rollback_subject(context) -> tuple[dict, None]:
    from cross_sell.governance import approval

    return approval.rollback_subject(context["run_id"], context["params"]["version"]), None


def _options(settings: Settings, subject: str, body: str, **kwargs) -> dict:
    return {"subject": subject, "body": body, "settings": settings,
            "defaults": SignedApproval.REJECT,  # what a timeout answers: nothing is approved
            "response_timeout": timedelta(hours=settings.approval_timeout_hours),
            "params": {"comment": Param("", type="string", description="Why (recorded with your answer).")},
            **kwargs}


def push_approval(settings: Settings, **kwargs) -> SignedApproval:
    """The training DAG's approval task (`approve`): its body is `describe_for_approval`'s sealed request."""
    return SignedApproval(task_id="approve", approved=_push_subject, **_options(
        settings, "Approve the new cross-sell champion?",
        "(the request is read from describe_for_approval, checked, when the task runs)", **kwargs))


def rollback_approval(settings: Settings, **kwargs) -> SignedApproval:
    """The rollback DAG's second person for a forced rollback (`approve_forced_rollback`)."""
    return SignedApproval(task_id="approve_forced_rollback", approved=_rollback_subject, second_person=True, **_options(
        settings, "Approve a forced rollback of the cross-sell champion?",
        "A rollback to version **{{ params.version }}** was triggered with `force`: the version is outside what "
        "may be restored without a second person (it never served as champion, is the current shadow, its "
        "training data is gone, or it was trained on customers erased since). Its reason is in the run's conf "
        "(the run's page). Approve: the champion is set back to it, with you recorded as the second person.",
        **kwargs))
