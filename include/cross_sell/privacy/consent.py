"""Marketing consent: who may be profiled and called.

A customer who objected (`customer_consent`: `{id, contact_allowed: false, updated_at}`, the latest
document per customer; CROSS_SELL_CONSENT_COLLECTION) is neither scored for marketing nor on any campaign
list; optionally, nor is one contacted in the last N days (`customer_contacts`: `{id, contacted_at}`; the
scoring DAG's `exclude_contacted_days`). Batch scoring leaves them out before anything is computed, counts
who was left out and why (the scoring summary and the task log), and `publish` removes earlier scores the
CRM could still read. Erased customers (the suppression list, `suppression`) are left out first, whatever
the collections say: a CRM writing one back, with contact allowed, does not bring them back; an objection
they had made is kept with their keyed hash.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .. import clock
from ..errors import NotRetryable

OPTED_OUT = "opted out of marketing"
CONTACTED = "contacted recently"
ERASED = "erased (suppression list)"


def excluded(consent, contacts=None, contacted_within_days: int | None = None,
             now: datetime | None = None) -> dict[int, str]:
    """Customer id -> why they are left out of scoring and campaigns."""
    reasons: dict[int, str] = {}
    for document in consent.find({"contact_allowed": False}, projection={"_id": True, "id": True}):
        reasons[_customer(document, consent)] = OPTED_OUT
    if contacts is not None and contacted_within_days:
        since = ((now or clock.now()) - timedelta(days=contacted_within_days)).isoformat()
        for document in contacts.find({"contacted_at": {"$gte": since}}, projection={"_id": True, "id": True}):
            reasons.setdefault(_customer(document, contacts), CONTACTED)
    return reasons


def _customer(document: dict, collection) -> int:
    """The customer a consent or contact document is about: its `id` (how a CRM writes it), else an integer
    `_id`; anything else is an error (an objection nobody can attribute must not be dropped silently)."""
    from .suppression import as_id

    for value in (document.get("id"), document.get("_id")):
        customer = as_id(value)
        if customer is not None:
            return customer
    raise NotRetryable(f"{getattr(collection, 'name', 'consent')}: a document names no customer (no integer `id`); "
                       "fix it so the choice it records can be honoured")


def record_consent(collection, customer_id: int, allowed: bool, updated_at: str | None = None) -> None:
    """One customer's current choice (the CRM writes these documents; this is their shape)."""
    stamp = updated_at or clock.stamp()
    collection.replace_one({"_id": int(customer_id)},
                           {"_id": int(customer_id), "id": int(customer_id), "contact_allowed": bool(allowed),
                            "updated_at": stamp}, upsert=True)
