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


def recorded_scores(before: date, limit: int = 10, scanned: int = 500) -> list[Scored]:
    """The `Scored` records of the latest `limit` scoring runs whose SCORES event came before the start of
    `before` (UTC), newest first; the task must list SCORES among its inlets.

    Only events the scoring DAG's `publish` task emitted count (Airflow records their source; an event
    created through the REST API has none), each carrying the record as the `score` task of that very run
    sealed it; one record per run (a replayed copy counts once). Each file is then checked against the
    sha256 inside on read."""
    from airflow.sdk import get_current_context

    from cross_sell.governance.custody import Custody
    from cross_sell.storage.objects import CustodyError

    start = datetime.combine(before, time.min, tzinfo=timezone.utc).isoformat()
    events = get_current_context()["inlet_events"][SCORES].before(start).ascending(False).limit(scanned)
    custody, records, runs = Custody.from_env(), [], set()
    for event in events:
        if (event.source_dag_id, event.source_task_id) != ("cross_sell_scoring", "publish") \
                or not isinstance(event.extra, dict) or "scored" not in event.extra:
            continue  # not emitted by a scoring run (e.g. created through the REST API): not evidence
        try:
            record = custody.open(event.extra["scored"], "a SCORES Asset event's record", dag_id="cross_sell_scoring",
                                  run_id=event.source_run_id, task_id="score")
        except CustodyError as forged:  # not trusted, and not allowed to stop monitoring either
            log.warning("ignored: %s", forged)
            continue
        if event.source_run_id not in runs:
            runs.add(event.source_run_id)
            records.append(cast(Scored, record))
        if len(records) == limit:
            break
    return records
