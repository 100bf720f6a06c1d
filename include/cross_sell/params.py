"""Checks of a run's params that the DAG files' JSON schemas leave to the run: per-feature limits must name
features of the schema (the DAG files do not import schema.py, to stay cheap to parse). Every task of every
DAG runs `check` first (`cross_sell_airflow.stage.stage_run`), so a misspelt feature fails the first task
at once, naming the valid ones, instead of being ignored or failing late.

Each DAG's params as a typed record (`TrainingParams`, ...): a task reads `run.params["min_rows"]` with
its type known, and a misspelt name is a type error. `FOR_DAG` ties each record to its DAG, and a test
checks that the DAG's params and the record name the same keys.

Each param is declared once, in `declared(dag_id, settings)`: its default, its JSON-schema bounds and its
description. The DAG files build their `params=` from it (`cross_sell_airflow.defaults.dag_params`); the
gates' defaults are the deployment policy's (a run may tighten them, never loosen).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from .data import schema
from .errors import NotRetryable


class TrainingParams(TypedDict):
    min_roc_auc: float
    promotion_margin: float
    min_rows: int
    seed: int
    drift_action: Literal["warn", "fail"]
    drift_thresholds: dict[str, float]
    replace_unreadable_champion: bool
    exclude_features: list[str]
    max_equalized_odds_difference: float
    require_approval: bool
    model: str  # a family of `cross_sell.model_families` (default CROSS_SELL_MODEL; the policy may restrict it)


class ScoringParams(TypedDict):
    model: str  # "champion" or a registry version
    campaign_top_share: float
    campaign_top_n: int | None
    batch_rows: int
    exclude_contacted_days: int | None


class MonitoringParams(TypedDict):
    day: str | None  # YYYY-MM-DD; None: the day before the run
    min_realized_roc_auc: float  # alert limits on the day's outcomes (not the training gate `min_roc_auc`)
    min_realized_precision: float
    skew_thresholds: dict[str, float]


class RollbackParams(TypedDict):
    version: str
    reason: str
    force: bool


class ErasureParams(TypedDict):
    request: str  # the ids file's key under <prefix>/erasure/requests/
    reason: str
    dry_run: bool


class HousekeepingParams(TypedDict):
    dry_run: bool


FOR_DAG: dict[str, type] = {
    "cross_sell_training": TrainingParams,
    "cross_sell_scoring": ScoringParams,
    "cross_sell_monitoring": MonitoringParams,
    "cross_sell_rollback": RollbackParams,
    "cross_sell_erasure": ErasureParams,
    "cross_sell_housekeeping": HousekeepingParams,
}

NO_DEFAULT = object()  # a param the person triggering the run must give


@dataclass(frozen=True)
class Declared:
    """One param: its default (or `NO_DEFAULT`), its JSON schema (type, bounds) and what it means."""

    default: Any
    description: str
    schema: dict[str, Any] = field(default_factory=dict)


def _allowed(models: tuple[str, ...]) -> str:
    return f" (here: {', '.join(models)})" if models else ""


def _training(settings) -> dict[str, Declared]:
    from .model.model_families import FAMILIES

    policy = settings.policy
    return {
        "min_roc_auc": Declared(policy.min_roc_auc, "ROC-AUC a first model must reach to become champion (policy: "
                                f"at least {policy.min_roc_auc}, CROSS_SELL_MIN_ROC_AUC).",
                                {"type": "number", "minimum": 0.5, "maximum": 1.0}),
        "promotion_margin": Declared(policy.promotion_margin, "ROC-AUC gain a challenger needs over the champion "
                                     f"(policy: at least {policy.promotion_margin}, CROSS_SELL_PROMOTION_MARGIN).",
                                     {"type": "number", "minimum": 0.0, "maximum": 0.2}),
        "min_rows": Declared(1000, "Fewest rows a snapshot may have.", {"type": "integer", "minimum": 100}),
        "seed": Declared(42, "Seed of the split and the estimator.", {"type": "integer", "minimum": 0}),
        "drift_action": Declared("warn", "What a feature drifting past its threshold does to the run.",
                                 {"type": "string", "enum": ["warn", "fail"]}),
        "drift_thresholds": Declared({}, 'Per-feature drift limits, e.g. {"Age": 0.1} (PSI for numeric features, '
                                     "L-infinity for categorical; defaults 0.2 / 0.1).",
                                     {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}}),
        "replace_unreadable_champion": Declared(
            False, "Let the candidate replace a champion that cannot be verified or scored, on the floor alone "
                   "(recorded in the decision and the audit record); only where the policy allows it "
                   "(CROSS_SELL_ALLOW_REPLACE_UNREADABLE_CHAMPION). Off: evaluate fails closed.", {"type": "boolean"}),
        "exclude_features": Declared(list(policy.exclude_features), 'Features the model must not use, e.g. '
                                     '["Gender"] (its input stays the same; recorded in the manifest); the '
                                     "policy's (CROSS_SELL_EXCLUDE_FEATURES) always among them.",
                                     {"type": "array", "items": {"type": "string"}}),
        "max_equalized_odds_difference": Declared(
            policy.max_equalized_odds_difference, "Largest equalized-odds difference a blessed candidate may show "
            f"on a gated protected attribute (Gender); policy: at most {policy.max_equalized_odds_difference}, "
            "CROSS_SELL_MAX_EQUALIZED_ODDS_DIFFERENCE.", {"type": "number", "minimum": 0.0, "maximum": 1.0}),
        "require_approval": Declared(policy.require_approval, "A person approves the push (human-in-the-loop task "
                                     "'approve'); on whenever the policy says so (CROSS_SELL_REQUIRE_APPROVAL).",
                                     {"type": "boolean"}),
        "model": Declared(settings.model, "Model family: hgb, lightgbm or lightgbm_catboost (their mean, one ONNX "
                          "graph); default CROSS_SELL_MODEL. The policy's CROSS_SELL_ALLOWED_MODELS (when set) lists "
                          f"the families a run may choose{_allowed(policy.allowed_models)}.",
                          {"type": "string", "enum": list(FAMILIES)}),
    }


def _scoring(settings) -> dict[str, Declared]:
    return {
        "model": Declared("champion", '"champion", or a registry version to score with.', {"type": "string"}),
        "campaign_top_share": Declared(0.1, "Share of the customers on the campaign list (highest first).",
                                       {"type": "number", "exclusiveMinimum": 0, "maximum": 1}),
        "campaign_top_n": Declared(None, "If set, exactly this many customers instead of a share.",
                                   {"type": ["null", "integer"], "minimum": 1}),
        "batch_rows": Declared(100_000, "Customers per batch: memory grows with this, not with the base.",
                               {"type": "integer", "minimum": 1_000, "maximum": 1_000_000}),
        "exclude_contacted_days": Declared(None, "Also leave out customers contacted in the last N days "
                                           "(customer_contacts); those who objected are always left out.",
                                           {"type": ["null", "integer"], "minimum": 1}),
    }


def _monitoring(settings) -> dict[str, Declared]:
    return {
        "day": Declared(None, "The day to monitor (YYYY-MM-DD); empty: the day before the run.",
                        {"type": ["null", "string"], "format": "date"}),
        "min_realized_roc_auc": Declared(0.75, "Realized ROC-AUC below this alerts.",
                                         {"type": "number", "minimum": 0.5, "maximum": 1.0}),
        "min_realized_precision": Declared(0.2, "Realized precision at the model's threshold below this alerts.",
                                           {"type": "number", "minimum": 0.0, "maximum": 1.0}),
        "skew_thresholds": Declared({}, 'Per-feature skew limits, e.g. {"Age": 0.1} (a feature name the model '
                                    "does not have fails the run at once).",
                                    {"type": "object", "additionalProperties": {"type": "number", "minimum": 0}}),
    }


def _rollback(settings) -> dict[str, Declared]:
    return {
        "version": Declared(NO_DEFAULT, "The registry version to serve again (python -m cross_sell champion "
                            "history).", {"type": "string", "minLength": 1, "maxLength": 100,
                                          "pattern": r"^[A-Za-z0-9._-]+$"}),
        "reason": Declared(NO_DEFAULT, "Why (recorded in the audit trail as data; shown escaped).",
                           {"type": "string", "minLength": 3, "maxLength": 500}),
        "force": Declared(False, "A version outside what may be restored alone (never served, the shadow, its "
                          "training data gone, trained on customers erased since): a second person approves it "
                          "first.", {"type": "boolean"}),
    }


def _erasure(settings) -> dict[str, Declared]:
    return {
        "request": Declared(NO_DEFAULT, "The ids file's key, e.g. vehicle-insurance/erasure/requests/ticket-4711.txt",
                            {"type": "string", "minLength": 1, "pattern": r"^[A-Za-z0-9._/-]+$"}),
        "reason": Declared(NO_DEFAULT, "Why (e.g. the ticket of the data subject's request).",
                           {"type": "string", "minLength": 3}),
        "dry_run": Declared(False, "Find and count everything; change nothing.", {"type": "boolean"}),
    }


def _housekeeping(settings) -> dict[str, Declared]:
    return {"dry_run": Declared(False, "Plan only: log what would go, delete nothing.", {"type": "boolean"})}


_DECLARATIONS = {"cross_sell_training": _training, "cross_sell_scoring": _scoring,
                 "cross_sell_monitoring": _monitoring, "cross_sell_rollback": _rollback,
                 "cross_sell_erasure": _erasure, "cross_sell_housekeeping": _housekeeping}


def declared(dag_id: str, settings) -> dict[str, Declared]:
    """The params of `dag_id` as this deployment declares them (`settings`: its policy and default model)."""
    return _DECLARATIONS[dag_id](settings)


FEATURE_LIMITS = ("drift_thresholds", "skew_thresholds")  # params that map a feature to its limit


class ParamError(NotRetryable):
    """A param the run cannot honour: the message names it and what it may be."""


def check_feature_limits(limits: dict | None, what: str) -> dict:
    """`limits` if every key is a feature and every limit a number >= 0; ParamError naming the offending
    keys and the valid ones otherwise."""
    limits = limits or {}
    unknown = sorted(set(limits) - set(schema.FEATURES))
    if unknown:
        raise ParamError(f"{what}: unknown feature(s) {unknown}; valid: {', '.join(schema.FEATURES)}")
    bad = {k: v for k, v in limits.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0}
    if bad:
        raise ParamError(f"{what}: limits must be numbers >= 0, got {bad}")
    return limits


def check(params) -> None:
    """Raise ParamError for a per-feature limit or an excluded feature the schema does not have."""
    for name in FEATURE_LIMITS:
        if name in params:
            check_feature_limits(params[name], name)
    if "exclude_features" in params:
        from .model.features import check_excluded

        try:
            check_excluded(params["exclude_features"] or ())
        except ValueError as error:
            raise ParamError(str(error)) from None


def under_policy(record: type, params: dict, conf: dict, policy, user: str | None) -> dict:
    """The run's params as the deployment policy lets it have them (`governance.policy`), or PolicyError:
    a training run's conf may only tighten the gates (each is judged by the stricter of policy and param);
    scoring with another model than the champion writes the CRM's scores from it, so only the policy's
    rollback operators may (the same people who may choose what serves)."""
    if record is TrainingParams:
        policy.check(conf)
        return policy.tightened(params)
    if record is ScoringParams and params.get("model", "champion") != "champion":
        policy.check_rollback_operator(user, what=f"score the customers with {params['model']!r} instead of the "
                                                  "champion")
    return params
