"""Marketing consent: who may be profiled and called.

A customer who objected (`customer_consent`: `{id, contact_allowed: false, updated_at}`, the latest
document per customer; CROSS_SELL_CONSENT_COLLECTION) is neither scored for marketing nor on any campaign
list; optionally, nor is one contacted in the last N days (`customer_contacts`: `{id, contacted_at}`; the
scoring DAG's `exclude_contacted_days`). Batch scoring leaves them out before anything is computed, counts
who was left out and why (the scoring summary and the task log), and `publish` removes earlier scores the
CRM could still read.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from . import clock

OPTED_OUT = "opted out of marketing"
CONTACTED = "contacted recently"


def excluded(consent, contacts=None, contacted_within_days: int | None = None,
             now: datetime | None = None) -> dict[int, str]:
    """Customer id -> why they are left out of scoring and campaigns."""
    reasons: dict[int, str] = {}
    for document in consent.find({"contact_allowed": False}, projection={"_id": False, "id": True}):
        reasons[int(document["id"])] = OPTED_OUT
    if contacts is not None and contacted_within_days:
        since = ((now or clock.now()) - timedelta(days=contacted_within_days)).isoformat()
        for document in contacts.find({"contacted_at": {"$gte": since}}, projection={"_id": False, "id": True}):
            reasons.setdefault(int(document["id"]), CONTACTED)
    return reasons


def record_consent(collection, customer_id: int, allowed: bool, updated_at: str | None = None) -> None:
    """One customer's current choice (the CRM writes these documents; this is their shape)."""
    stamp = updated_at or clock.stamp()
    collection.replace_one({"_id": int(customer_id)},
                           {"_id": int(customer_id), "id": int(customer_id), "contact_allowed": bool(allowed),
                            "updated_at": stamp}, upsert=True)
