"""The Assets the DAGs share: what training produces and scoring consumes."""

from __future__ import annotations

from airflow.sdk import Asset

from cross_sell.settings import Settings

_SETTINGS = Settings.from_env()
REGISTRY_ROOT = f"s3://{_SETTINGS.s3_bucket}/{_SETTINGS.s3_prefix}"

RAW_SNAPSHOT = Asset(name="cross_sell_raw_snapshot", uri=f"{REGISTRY_ROOT}/runs")
CHAMPION = Asset(name="cross_sell_champion", uri=f"{REGISTRY_ROOT}/champion.json")
SCORES = Asset(name="cross_sell_scores", uri=f"{REGISTRY_ROOT}/scores")
