"""A person approves each push (the training DAG's `require_approval`): what they read, and what is kept.

The DAG parks Airflow's human-in-the-loop `ApprovalOperator` between `evaluate` and `push`; its body is
`request_body` (markdown: the decision, both models' metrics, fairness, drift, links to the evaluation
report and model card). `push` then takes only an explicit "Approve" by a named user (`approval_record`):
a task marked successful by hand, a timeout or a rejection never pushes. The record goes into the signed
manifest and the champion's audit record.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .errors import NotRetryable

APPROVE = "Approve"  # the ApprovalOperator's options
REJECT = "Reject"
METRICS = ("roc_auc", "pr_auc", "f1", "precision", "recall")


class NotApproved(NotRetryable):
    """The push was to wait for a person's approval and has none."""


def _figure(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def request_body(decision: Mapping[str, Any], drift: Mapping[str, Any] | None, links: dict[str, str]) -> str:
    """The approval request as markdown (the Airflow UI renders it on the task's Required Action)."""
    champion = decision.get("champion") or {}
    lines = [
        f"**Candidate `{decision['candidate_version']}`** vs champion "
        f"`{decision.get('champion_version') or 'none yet'}`",
        "",
        f"**Decision: {'BLESS' if decision['bless'] else 'keep the champion'}.** {decision['reason']}",
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
    lines += ["", f"**Drift:** {_drift_line(drift)}", ""]
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


def approval_record(required: bool, response: dict | None) -> dict | None:
    """What the manifest and the audit record keep of the approval: None when none was required; when it
    was, the approver, the time and the comment of an explicit "Approve", or NotApproved."""
    if not required:
        return None
    if not response:
        raise NotApproved("this run requires approval, and the approval task left no answer (was it marked "
                          "successful by hand?): nothing is pushed")
    user = response.get("responded_by_user") or {}
    if response.get("chosen_options") != [APPROVE] or not user.get("name"):
        raise NotApproved(f"not approved by a person (answer {response.get('chosen_options')}, by "
                          f"{user.get('name') or 'nobody: the timeout'}): nothing is pushed")
    comment = (response.get("params_input") or {}).get("comment") or ""
    responded_at = response.get("responded_at")
    return {"approved_by": user["name"], "approver_id": str(user.get("id", "")),
            "approved_at": responded_at.isoformat() if isinstance(responded_at, datetime) else str(responded_at),
            "comment": comment}
