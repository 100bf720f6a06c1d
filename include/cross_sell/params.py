"""Checks of a run's params that the DAG files' JSON schemas leave to the run: per-feature limits must name
features of the schema (the DAG files do not import schema.py, to stay cheap to parse). Every task of every
DAG runs `check` first (`cross_sell_airflow.stage.run_stage`), so a misspelt feature fails the first task
at once, naming the valid ones, instead of being ignored or failing late.
"""

from __future__ import annotations

from . import schema
from .errors import NotRetryable

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


def check(params: dict) -> None:
    for name in FEATURE_LIMITS:
        if name in params:
            check_feature_limits(params[name], name)
    if "exclude_features" in params:
        from .features import check_excluded

        try:
            check_excluded(params["exclude_features"] or ())
        except ValueError as error:
            raise ParamError(str(error)) from None
