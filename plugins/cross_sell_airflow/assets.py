"""The Assets the DAGs share: what training produces and scoring consumes."""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timezone
from typing import Any, cast

from airflow.sdk import Asset

from cross_sell.contracts import Scored
from cross_sell.settings import Settings

log = logging.getLogger(__name__)
_SETTINGS = Settings.from_env()
REGISTRY_ROOT = f"s3://{_SETTINGS.s3_bucket}/{_SETTINGS.s3_prefix}"
_DEFAULT = Settings()


def asset_name(base: str, settings: Settings = _SETTINGS) -> str:
    """The Asset's name: `base` where the registry is where it is by default, else `base` with its bucket and
    prefix. Airflow keeps only one active Asset per name and one per URI; the URI names the place, so a name
    that stayed while CROSS_SELL_S3_(BUCKET|PREFIX) moved made a second Asset of that name, inactive until the
    scheduler's next orphan sweep: the next run failed at once (AirflowInactiveAssetInInletOrOutletException).
    Name and place now change together, and a deployment that never moved keeps the names it always had."""
    if (settings.s3_bucket, settings.s3_prefix) == (_DEFAULT.s3_bucket, _DEFAULT.s3_prefix):
        return base
    return f"{base}@{settings.s3_bucket}/{settings.s3_prefix}"


RAW_SNAPSHOT = Asset(name=asset_name("cross_sell_raw_snapshot"), uri=f"{REGISTRY_ROOT}/runs")
CHAMPION = Asset(name=asset_name("cross_sell_champion"), uri=f"{REGISTRY_ROOT}/champion.json")
SCORES = Asset(name=asset_name("cross_sell_scores"), uri=f"{REGISTRY_ROOT}/scores")


def record_scores(scored: Scored | dict) -> None:
    """From inside the task that emits SCORES: keep the scoring run's record (its files' sha256) in the
    Asset event, in Airflow's database, where the monitoring DAG reads it back (`recorded_scores`)."""
    from airflow.sdk import get_current_context

    extra: dict[str, Any] = {"scored": scored}  # a TypedDict of JSON values
    get_current_context()["outlet_events"][SCORES].extra = extra


def recorded_scores(before: date, limit: int = 10) -> list[Scored]:
    """The `Scored` records of the latest scoring runs whose SCORES event came before the start of `before`
    (UTC), newest first; the task must list SCORES among its inlets."""
    from airflow.sdk import get_current_context

    start = datetime.combine(before, time.min, tzinfo=timezone.utc).isoformat()
    from cross_sell.custody import Custody

    events = get_current_context()["inlet_events"][SCORES].before(start).ascending(False).limit(limit)
    # Written by `record_scores` from the `Scored` record as the score task sealed it: an Asset event a User
    # created through the REST API carries no such seal and is refused. Each file is then checked against
    # the sha256 inside on read.
    from cross_sell.objects import CustodyError

    custody, records = Custody.from_env(), []
    for event in events:
        if not isinstance(event.extra, dict) or "scored" not in event.extra:
            continue
        try:
            records.append(cast(Scored, custody.open(event.extra["scored"], None, "a SCORES Asset event's record")))
        except CustodyError as forged:  # not trusted, and not allowed to stop monitoring either
            log.warning("ignored: %s", forged)
    return records
