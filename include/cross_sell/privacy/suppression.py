"""Erased customers stay erased: the suppression list.

Erasure (`erasure.erase`) removes a customer everywhere and records a keyed hash of the id, never the id,
in the `erased_customers` collection (CROSS_SELL_ERASED_COLLECTION). The loader and extraction hash every
id they see with the same secret key and drop those on the list, so a later `load` of an old file or a
later extraction cannot bring an erased customer back. The hash is keyed BLAKE2b (a MAC: without the key
nobody can test an id against the list; ids are small integers, an unkeyed hash would be reversed by
trying them all). The key is a secret file (CROSS_SELL_ERASURE_KEY_FILE) of whoever loads, extracts,
scores or erases; with erased customers on the list and no key, loading, extraction and scoring refuse to run.

Each record is `{_id: <keyed hash>, erased_at, request, opted_out, receipt}`: `opted_out` keeps a marketing
objection (the consent "no") after the consent document itself is erased (scoring leaves every erased
customer out in any case), and `receipt` names the erasure receipt that lists the hash (`receipts`: a receipt
deleted from the bucket is found by that).
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import NotRetryable

KEY_BYTES = 32


class ErasureKeyMissing(NotRetryable):
    """Customers have been erased, but there is no key to recognise them by."""


def make_key(path: str | os.PathLike, replace: bool = False) -> Path:
    """A new secret key file (mode 600), for CROSS_SELL_ERASURE_KEY_FILE; an existing one is replaced only
    when asked (every erased customer's hash would then be unrecognisable)."""
    path = Path(path)
    if path.exists() and not replace:
        raise FileExistsError(f"{path} exists (--force replaces it: every erased customer's hash would then "
                              "be unrecognisable)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(secrets.token_bytes(KEY_BYTES))
    return path


def read_key(path: str | os.PathLike | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def as_id(value) -> int | None:
    """A customer id however a writer stored it: an int, an integral float, or text that reads as one
    (" 21", "021", "+21", "21.0", "2.1e1"); None when it is no id. Erasure, the suppression list and scoring
    all match customers through this one rule, so no written form of an id escapes one and not the others."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 40:
            return None
        try:
            return int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                return None
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return int(number) if math.isfinite(number) and number.is_integer() and abs(number) < 2**53 else None
    return None


def digest(key: bytes, customer_id: int) -> str:
    """The keyed hash of one customer id (what receipts and the suppression list hold)."""
    return hashlib.blake2b(str(int(customer_id)).encode(), key=key, digest_size=16).hexdigest()


class Suppression:
    """The erased customers' hashes, and the key to test ids against them."""

    def __init__(self, key: bytes | None, hashes: set[str]):
        if hashes and key is None:
            raise ErasureKeyMissing(f"{len(hashes):,} customers have been erased, but no erasure key is set "
                                    "(CROSS_SELL_ERASURE_KEY_FILE) to keep them out; refusing to go on")
        self.key, self.hashes = key, hashes

    @classmethod
    def from_collection(cls, collection, key: bytes | None) -> "Suppression":
        return cls(key, {document["_id"] for document in collection.find({}, projection={"_id": True})})

    def __bool__(self) -> bool:
        return bool(self.hashes)

    def erased(self, customer_id) -> bool:
        if not self.hashes or self.key is None:
            return False
        customer = as_id(customer_id)
        return customer is not None and digest(self.key, customer) in self.hashes

    def filter(self, documents: Iterable[dict], counter: list[int], field: str = "id") -> Iterator[dict]:
        """`documents` without the erased customers; `counter[0]` counts those left out."""
        if not self.hashes:  # nobody erased: nothing to hash
            yield from documents
            return
        for document in documents:
            if self.erased(document.get(field)):
                counter[0] += 1
            else:
                yield document


def record(collection, hashes: Iterable[str], erased_at: str, request: str, opted_out: set[str]) -> None:
    """Put erased customers on the list (before anything of theirs is deleted: a load, extraction or scoring
    running meanwhile leaves them out already). An objection recorded earlier stays."""
    for hashed in hashes:
        update: dict = {"erased_at": erased_at, "request": request}
        if hashed in opted_out:
            update["opted_out"] = True
        collection.update_one({"_id": hashed}, {"$set": update}, upsert=True)


def name_receipt(collection, hashes: Iterable[str], sequence: int) -> None:
    """Each hash's record names the receipt that lists it."""
    for hashed in hashes:
        collection.update_one({"_id": hashed}, {"$set": {"receipt": sequence}})
