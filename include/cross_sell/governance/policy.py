"""Deployment policy: the gates of promotion and rollback, set by whoever deploys, not by whoever triggers.

Read from the workers' environment (docker-compose.yaml's `x-airflow-common`, a Kubernetes secret...), which
no Airflow user can change: not a User, who may trigger any DAG with any conf, nor an Op, who may edit
connections and variables. A run's params may make a gate **stricter, never looser**: every task checks its
run's params against the policy first (`check`) and fails at once, without retry, on a param that loosens
it, naming the setting and its value. The policy in force is recorded in the decision, the signed manifest
and the champion's audit record.

| setting (CROSS_SELL_...) | default | gate |
| --- | --- | --- |
| REQUIRE_APPROVAL | false | a person approves each push (`require_approval` may only turn it on) |
| APPROVERS | anyone but the trigger | who may approve a push or a forced rollback |
| ALLOW_SELF_APPROVAL | false | may the user who triggered a run approve it (maker-checker) |
| MIN_ROC_AUC | 0.75 | the floor a first model must reach (`min_roc_auc` may only raise it) |
| PROMOTION_MARGIN | 0.002 | the gain a challenger needs (`promotion_margin` may only raise it) |
| MAX_EQUALIZED_ODDS_DIFFERENCE | 0.15 | the fairness cap (`max_equalized_odds_difference` may only lower it) |
| EXCLUDE_FEATURES | none | features no model may use (`exclude_features` may only add to them) |
| ALLOW_REPLACE_UNREADABLE_CHAMPION | false | may a run set `replace_unreadable_champion` |
| ROLLBACK_OPERATORS | nobody | who may trigger `cross_sell_rollback` (`force`: a second person approves) |
| ALLOWED_MODELS | any family | the model families a run may train (`model` must be one of them) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from ..errors import NotRetryable


class PolicyError(NotRetryable):
    """A run's params loosen the deployment policy, or a user acts outside it."""


def _names(value: str) -> tuple[str, ...]:
    """A comma-separated list ("Gender, Age") as a tuple of names, blanks dropped."""
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _flag(value: str | None, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise PolicyError(f"not a boolean: {value!r} (true or false)")


@dataclass(frozen=True)
class Policy:
    require_approval: bool = False
    approvers: tuple[str, ...] = ()  # empty: any user but the one who triggered the run
    allow_self_approval: bool = False
    min_roc_auc: float = 0.75
    promotion_margin: float = 0.002
    # On the real sample the models show 0.05-0.10 on Gender over 5 CV folds (benchmarks/README.md, "Fairness").
    max_equalized_odds_difference: float = 0.15
    exclude_features: tuple[str, ...] = ()
    allow_replace_unreadable_champion: bool = False
    rollback_operators: tuple[str, ...] = ()  # empty: nobody through Airflow (the CLI's break-glass remains)
    allowed_models: tuple[str, ...] = ()  # empty: any family of `cross_sell.model_families`

    ENV: ClassVar[dict[str, str]] = {
        "require_approval": "CROSS_SELL_REQUIRE_APPROVAL",
        "approvers": "CROSS_SELL_APPROVERS",
        "allow_self_approval": "CROSS_SELL_ALLOW_SELF_APPROVAL",
        "min_roc_auc": "CROSS_SELL_MIN_ROC_AUC",
        "promotion_margin": "CROSS_SELL_PROMOTION_MARGIN",
        "max_equalized_odds_difference": "CROSS_SELL_MAX_EQUALIZED_ODDS_DIFFERENCE",
        "exclude_features": "CROSS_SELL_EXCLUDE_FEATURES",
        "allow_replace_unreadable_champion": "CROSS_SELL_ALLOW_REPLACE_UNREADABLE_CHAMPION",
        "rollback_operators": "CROSS_SELL_ROLLBACK_OPERATORS",
        "allowed_models": "CROSS_SELL_ALLOWED_MODELS",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Policy":
        env = (os.environ if environ is None else environ).get
        default = cls()
        names = cls.ENV
        return cls(
            require_approval=_flag(env(names["require_approval"]), default.require_approval),
            approvers=_names(env(names["approvers"], "")),
            allow_self_approval=_flag(env(names["allow_self_approval"]), default.allow_self_approval),
            min_roc_auc=float(env(names["min_roc_auc"]) or default.min_roc_auc),
            promotion_margin=float(env(names["promotion_margin"]) or default.promotion_margin),
            max_equalized_odds_difference=float(env(names["max_equalized_odds_difference"])
                                                or default.max_equalized_odds_difference),
            exclude_features=_names(env(names["exclude_features"], "")),
            allow_replace_unreadable_champion=_flag(env(names["allow_replace_unreadable_champion"]),
                                                    default.allow_replace_unreadable_champion),
            rollback_operators=_names(env(names["rollback_operators"], "")),
            allowed_models=_names(env(names["allowed_models"], "")),
        )

    def record(self) -> dict[str, Any]:
        """The policy as JSON values, for the decision, the manifest and the audit record."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    # -- a run's params against the policy ----------------------------------------------------------------
    def loosened_by(self, params: Mapping[str, Any]) -> list[str]:
        """Each param of `params` that loosens a gate, worded with the setting and its value."""
        found = []

        def refuse(param: str, given: Any, field: str, shown: Any, why: str) -> None:
            found.append(f"{param}={given!r} {why} the deployment policy {self.ENV[field]}={shown}")

        if "require_approval" in params and self.require_approval and not params["require_approval"]:
            refuse("require_approval", params["require_approval"], "require_approval", "true", "switches off")
        if "min_roc_auc" in params and params["min_roc_auc"] < self.min_roc_auc:
            refuse("min_roc_auc", params["min_roc_auc"], "min_roc_auc", self.min_roc_auc, "is below")
        if "promotion_margin" in params and params["promotion_margin"] < self.promotion_margin:
            refuse("promotion_margin", params["promotion_margin"], "promotion_margin", self.promotion_margin,
                   "is below")
        cap = params.get("max_equalized_odds_difference")
        if cap is not None and cap > self.max_equalized_odds_difference:
            refuse("max_equalized_odds_difference", cap, "max_equalized_odds_difference",
                   self.max_equalized_odds_difference, "is above")
        if "exclude_features" in params:
            dropped = sorted(set(self.exclude_features) - set(params["exclude_features"] or ()))
            if dropped:
                refuse("exclude_features", params["exclude_features"], "exclude_features",
                       ",".join(self.exclude_features), f"leaves out {dropped} of")
        if params.get("replace_unreadable_champion") and not self.allow_replace_unreadable_champion:
            refuse("replace_unreadable_champion", True, "allow_replace_unreadable_champion", "false",
                   "is not allowed by")
        if "model" in params and self.allowed_models and params["model"] not in self.allowed_models:
            refuse("model", params["model"], "allowed_models", ",".join(self.allowed_models), "is not among")
        return found

    def check(self, params: Mapping[str, Any]) -> None:
        """PolicyError naming every param that loosens a gate (a run may only tighten them)."""
        loosened = self.loosened_by(params)
        if loosened:
            raise PolicyError("the run's params loosen the deployment policy, which a run may only tighten: "
                              + "; ".join(loosened))

    def tightened(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """`params` with each gate the stricter of the policy and the param (what a run is judged by, whatever
        defaults the DAG was parsed with)."""
        out = dict(params)
        if "require_approval" in params:
            out["require_approval"] = bool(params["require_approval"]) or self.require_approval
        if "min_roc_auc" in params:
            out["min_roc_auc"] = max(params["min_roc_auc"], self.min_roc_auc)
        if "promotion_margin" in params:
            out["promotion_margin"] = max(params["promotion_margin"], self.promotion_margin)
        if "max_equalized_odds_difference" in params:
            out["max_equalized_odds_difference"] = min(params["max_equalized_odds_difference"],
                                                       self.max_equalized_odds_difference)
        if "exclude_features" in params:
            given = list(params["exclude_features"] or ())
            out["exclude_features"] = given + [name for name in self.exclude_features if name not in given]
        if "replace_unreadable_champion" in params:
            out["replace_unreadable_champion"] = bool(params["replace_unreadable_champion"]) \
                and self.allow_replace_unreadable_champion
        if "model" in params and self.allowed_models and params["model"] not in self.allowed_models:
            out["model"] = self.allowed_models[0]  # a default the policy does not allow (a run's own is refused)
        return out

    # -- people -----------------------------------------------------------------------------------------
    def check_approver(self, approver: str, triggered_by: str | None) -> bool:
        """PolicyError unless `approver` may approve a run `triggered_by` (None: the scheduler); whether the
        approver is the one who triggered it (allowed only by policy)."""
        if self.approvers and approver not in self.approvers:
            raise PolicyError(f"{approver} is not an approver (CROSS_SELL_APPROVERS: {', '.join(self.approvers)})")
        own = triggered_by is not None and approver == triggered_by
        if own and not self.allow_self_approval:
            raise PolicyError(f"{approver} triggered this run and may not approve it too (maker-checker; "
                              "CROSS_SELL_ALLOW_SELF_APPROVAL=false)")
        return own

    def assignees(self, triggered_by: str | None) -> list[str]:
        """Who an approval request goes to: the approvers but the user who triggered the run (unless the policy
        allows self-approval). Empty with approvers set: PolicyError (nobody left to ask)."""
        left = [name for name in self.approvers if self.allow_self_approval or name != triggered_by]
        if self.approvers and not left:
            raise PolicyError(f"no approver left: {triggered_by} triggered this run and is the only one in "
                              "CROSS_SELL_APPROVERS (maker-checker); nothing can be approved")
        return left

    def check_rollback_operator(self, user: str | None, what: str = "roll the champion back") -> None:
        if not user or user not in self.rollback_operators:
            named = ", ".join(self.rollback_operators) or "nobody (unset)"
            raise PolicyError(f"{user or 'an unnamed user'} may not {what}: only the rollback operators may "
                              f"(CROSS_SELL_ROLLBACK_OPERATORS: {named})")
