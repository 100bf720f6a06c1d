"""A person approves each push (the training DAG's `require_approval`): what they read, and what is kept.

The DAG parks Airflow's human-in-the-loop `ApprovalOperator` between `evaluate` and `push`; its body is
`request_body` (markdown: the decision, both models' metrics, fairness, drift, links to the evaluation
report and model card). When the answer comes, the approval task takes it from Airflow's own record (what
Airflow resumes the task with; never XCom, which any User may write), checks the approver against the policy
(its approvers; not the user who triggered the run, unless the policy allows it) and signs an approval
record bound to the run and the candidate's files (`sign`). `push` takes only such a record whose signature
verifies and whose subject is its own candidate (`verified`): a task marked successful by hand, a forged
XCom, a timeout or a rejection never pushes. The record goes into the signed manifest, the model card and
the audit record. A forced rollback is approved the same way (`rollback_subject`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..errors import NotRetryable
from ..storage.registry import record_bytes
from ..storage.signing import SignatureError
from .policy import Policy

APPROVE = "Approve"  # the ApprovalOperator's options
REJECT = "Reject"
METRICS = ("roc_auc", "pr_auc", "f1", "precision", "recall")


class NotApproved(NotRetryable):
    """The push was to wait for a person's approval and has none."""


def _figure(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~])")


def text(value: Any) -> str:
    """A value shown in the markdown body as plain text: every markdown and HTML character escaped, one line
    (a reason may quote what a bucket writer put in a pointer; it must never become a link or markup)."""
    return _MARKDOWN.sub(r"\\\1", " ".join(str(value).split()))


def request_body(decision: Mapping[str, Any], drift: Mapping[str, Any] | None, links: dict[str, str]) -> str:
    """The approval request as markdown (the Airflow UI renders it on the task's Required Action)."""
    champion = decision.get("champion") or {}
    lines = [
        f"**Candidate {text(decision['candidate_version'])}** vs champion "
        f"{text(decision.get('champion_version') or 'none yet')}",
        "",
        f"**Decision: {'BLESS' if decision['bless'] else 'keep the champion'}.** {text(decision['reason'])}",
        "",
        "| metric | candidate | champion |",
        "|---|---|---|",
        *(f"| {name} | {_figure(decision['candidate'].get(name))} | {_figure(champion.get(name))} |"
          for name in METRICS),
        "",
        f"**Fairness** (cap: equalized-odds difference <= {decision.get('max_equalized_odds_difference')} on "
        f"{', '.join(decision.get('fairness_gated', [])) or 'nothing'}"
        + (f"; trained without {', '.join(decision['excluded_features'])}" if decision.get("excluded_features")
           else "") + ")",
        "",
        "| attribute | candidate parity ratio | candidate equalized-odds diff. | champion parity ratio | "
        "champion equalized-odds diff. |",
        "|---|---|---|---|---|",
    ]
    fairness = decision.get("fairness", {})
    for attribute, figures in fairness.get("candidate", {}).items():
        other = fairness.get("champion", {}).get(attribute, {})
        lines.append(f"| {attribute} | {_figure(figures['demographic_parity_ratio'])} | "
                     f"{_figure(figures['equalized_odds_difference'])} | "
                     f"{_figure(other.get('demographic_parity_ratio'))} | "
                     f"{_figure(other.get('equalized_odds_difference'))} |")
    lines += ["", f"**Drift:** {text(_drift_line(drift))}", ""]
    lines += [f"- [{name}]({url})" if url.startswith(("http://", "https://")) else f"- {name}: `{url}`"
              for name, url in links.items()]
    lines += ["", "Approve: the candidate becomes champion (you are recorded as its approver). Reject: nothing "
              "is pushed; say why in the comment."]
    return "\n".join(lines)


def _drift_line(drift: Mapping[str, Any] | None) -> str:
    if not drift:
        return "not checked"
    if not drift.get("checked"):
        return drift.get("reason") or "not checked"
    drifted = drift.get("drifted") or []
    return (f"{', '.join(drifted)} past their thresholds against champion {drift.get('champion_version')}"
            if drifted else f"no feature past its threshold against champion {drift.get('champion_version')}")


def push_subject(run_id: str, trained: Mapping[str, Any]) -> dict:
    """What a push approval approves: this run's candidate, by its version and its files' sha256."""
    onnx = trained.get("onnx") or {}
    return {"action": "push", "run_id": run_id, "version": trained["version"],
            "model_sha256": trained["model"]["sha256"], "onnx_sha256": onnx.get("sha256")}


def rollback_subject(run_id: str, version: str) -> dict:
    """What a forced-rollback approval approves: this rollback run's version."""
    return {"action": "forced_rollback", "run_id": run_id, "version": version}


def decided(response: Mapping[str, Any]) -> tuple[str | None, str | None, str]:
    """(chosen option, who chose it, comment) of Airflow's human-in-the-loop record; who is None for the
    timeout's default answer."""
    chosen = response.get("chosen_options") or []
    user = response.get("responded_by_user") or {}
    return (chosen[0] if len(chosen) == 1 else None, user.get("name") or None,
            str((response.get("params_input") or {}).get("comment") or ""))


def sign(subject: Mapping[str, Any], response: Mapping[str, Any], triggered_by: str | None, policy: Policy,
         signer) -> dict:
    """An approval as evidence: Airflow's own record of the answer (what Airflow resumed the approval task
    with, never XCom), checked against the policy's approvers and maker-checker rule, bound to `subject` and
    signed with the training side's key. NotApproved for anything but an explicit "Approve" by a person;
    PolicyError for an approver the policy does not allow."""
    chosen, user, comment = decided(response)
    if chosen != APPROVE or user is None:
        raise NotApproved(f"not approved by a person (answer {response.get('chosen_options')}, by "
                          f"{user or 'nobody: the timeout'})")
    own = policy.check_approver(user, triggered_by)
    responded_at = response.get("responded_at")
    record = {"kind": "approval", "subject": dict(subject), "chosen": chosen, "approved_by": user,
              "approver_id": str((response.get("responded_by_user") or {}).get("id", "")),
              "approved_at": responded_at.isoformat() if isinstance(responded_at, datetime) else str(responded_at),
              "comment": comment, "triggered_by": triggered_by, "self_approved": own,
              "approvers": list(policy.approvers), "source": "Airflow human-in-the-loop record"}
    signature = base64.b64encode(signer.sign(record_bytes(record))).decode()
    return {"record": record, "signature": signature}


def verified(signed: Any, subject: Mapping[str, Any], verifier) -> dict:
    """The approval record of `signed` (what `sign` returned), if its signature is the training side's key's
    and it approves exactly `subject`; NotApproved naming what is wrong otherwise (a forged XCom, a
    rejection, another run's or another candidate's approval)."""
    if not isinstance(signed, Mapping) or not isinstance(signed.get("record"), Mapping) \
            or not isinstance(signed.get("signature"), str):
        raise NotApproved("no signed approval (the approval task left none: was it rejected, timed out, or marked "
                          "successful by hand?)")
    if verifier is None:
        raise NotApproved("no public key (CROSS_SELL_SIGNING_PUBLIC_KEY) to verify the approval with")
    record = dict(signed["record"])
    try:
        verifier.verify(record_bytes(record), base64.b64decode(signed["signature"], validate=True), "the approval")
    except (ValueError, SignatureError) as error:
        raise NotApproved(f"the approval's signature does not verify ({error}): not an approval this pipeline "
                          "made from Airflow's record") from None
    if record.get("subject") != dict(subject):
        raise NotApproved(f"the approval approves {record.get('subject')}, not {dict(subject)}")
    if record.get("chosen") != APPROVE or not record.get("approved_by"):
        raise NotApproved(f"not approved (answer {record.get('chosen')!r})")
    return record


def approval_record(required: bool, signed: Any, subject: Mapping[str, Any], verifier) -> dict | None:
    """What the manifest and the audit record keep of a push's approval: None when none was required; when
    it was, the verified approval record (`verified`), or NotApproved."""
    if not required:
        return None
    return verified(signed, subject, verifier)
