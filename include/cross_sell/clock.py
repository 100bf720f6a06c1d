"""The one clock of the project's records: UTC, ISO 8601. Tests that need another time pass it in."""

from __future__ import annotations

from datetime import datetime, timezone


def now() -> datetime:
    return datetime.now(timezone.utc)


def stamp(timespec: str = "seconds") -> str:
    """Now as ISO 8601 in UTC, e.g. 2026-12-02T19:40:00+00:00 (records, reports, /model)."""
    return now().isoformat(timespec=timespec)
