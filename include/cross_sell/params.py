"""Checks of a run's params that the DAG files' JSON schemas leave to the run: per-feature limits must name
features of the schema (the DAG files do not import schema.py, to stay cheap to parse). Every task of every
DAG runs `check` first (`cross_sell_airflow.stage.stage_run`), so a misspelt feature fails the first task
at once, naming the valid ones, instead of being ignored or failing late.

Each DAG's params as a typed record (`TrainingParams`, ...): a task reads `run.params["min_rows"]` with
its type known, and a misspelt name is a type error. `FOR_DAG` ties each record to its DAG, and a test
checks that the DAG file's `Param`s and the record name the same keys.
"""

from __future__ import annotations

from typing import Literal, TypedDict

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
