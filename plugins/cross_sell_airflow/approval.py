"""The push approval: Airflow's human-in-the-loop `ApprovalOperator` (standard provider), as the training
DAG uses it when `require_approval` is on.

The reviewer answers in the UI (Browse -> Required Actions, or the task's page) or through the REST API
(`PATCH .../taskInstances/approve/-1/hitlDetails`), with an optional comment. "Approve" lets `push` run,
which records the approver in the signed manifest and the audit record; "Reject", or no answer within the
response timeout (the default answer is Reject), skips the push. Either way the log says who answered
what, and a timeout alerts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param

from cross_sell.settings import Settings


class PushApproval(ApprovalOperator):
    """ApprovalOperator whose outcome is logged (and a timeout alerted); `push` reads its answer."""

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        # Said before the operator acts on the answer: a rejection skips the push by raising (Airflow 3's
        # SkipMixin), so nothing after super() would run.
        if "chosen_options" in event:
            user = (event.get("responded_by_user") or {}).get("name")
            comment = (event.get("params_input") or {}).get("comment") or ""
            chosen = event["chosen_options"][0]
            if user is None:
                from cross_sell_airflow.alerts import alert

                self.log.warning("no answer within the response timeout: %s, nothing is pushed", chosen)
                alert("the push approval timed out (no answer): nothing is pushed", "approval_timeout")
            else:
                self.log.info("%s by %s%s", "approved" if chosen == self.APPROVE else "rejected", user,
                              f": {comment}" if comment else "")
        return super().execute_complete(context=context, event=event)


def push_approval(body, settings: Settings, **kwargs) -> PushApproval:
    """The approval task: `body` the request's markdown (an XComArg), the settings' timeout and approvers."""
    return PushApproval(
        task_id="approve",
        subject="Approve the new cross-sell champion?",
        body=body,
        defaults=PushApproval.REJECT,  # what a timeout answers: no push
        response_timeout=timedelta(hours=settings.approval_timeout_hours),
        assigned_users=[{"id": name, "name": name} for name in settings.approvers] or None,
        params={"comment": Param("", type="string", description="Why (recorded with your answer).")},
        **kwargs,
    )
