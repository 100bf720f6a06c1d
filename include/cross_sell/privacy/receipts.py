"""Erasure receipts as evidence: numbered, signed, written once, and checked.

A receipt is `<prefix>/erasure/receipts/<sequence>.json` (`{"record": {...}, "signature": ...}`, signed with
the model-signing key), its sequence one above the highest ever written (deleted or hidden ones included),
put with If-None-Match and, when `CROSS_SELL_AUDIT_LOCK_DAYS` > 0, under S3 Object Lock (COMPLIANCE), the
protection of the champion audit records. The suppression list (MongoDB, out of a bucket writer's reach)
names each erased hash's receipt, so deleting even the newest receipt is found.

`problems` (the monitoring DAG's daily check and `python -m cross_sell erase --verify`) finds a receipt that
is missing (a gap in the sequence, or named by the suppression list and absent), hidden by a delete marker,
written more than once, not signed by the training side's key, stored under another receipt's key, or that
records an erasure that left data behind. The texts hold counts and keys, never an id or a hash.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta, timezone

from ..errors import NotRetryable
from ..storage import objects
from ..storage.layout import RECEIPTS

KIND = "erasure_receipt"
NAME = re.compile(r"(\d{12})\.json")
MAX_RECEIPT_BYTES = 32 * 1024 * 1024  # a receipt lists every erased hash and every object version changed
ATTEMPTS = 20  # sequence numbers tried when racing writers take the next ones


def root(prefix: str) -> str:
    return objects.folder(prefix, RECEIPTS)


def key_of(prefix: str, sequence: int) -> str:
    return objects.join_key(prefix, RECEIPTS, f"{sequence:012d}.json")


def _versions(s3, bucket: str, prefix: str) -> tuple[dict[str, list[dict]], list[dict]]:
    """(key -> its versions, delete markers) under the receipts folder."""
    versions: dict[str, list[dict]] = {}
    markers: list[dict] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=root(prefix)):
        for version in page.get("Versions", []):
            versions.setdefault(version["Key"], []).append(version)
        markers += page.get("DeleteMarkers", [])
    return versions, markers


def _sequence(key: str) -> int | None:
    found = NAME.fullmatch(key.rsplit("/", 1)[-1])
    return int(found.group(1)) if found else None


def next_sequence(s3, bucket: str, prefix: str) -> int:
    """One above the highest sequence ever written: every version and delete marker counts, so a receipt
    hidden or deleted in a versioned bucket is never silently replaced by the next one."""
    versions, markers = _versions(s3, bucket, prefix)
    numbers = [_sequence(key) for key in [*versions, *(m["Key"] for m in markers)]]
    return max((n for n in numbers if n is not None), default=0) + 1


def _precondition_failed(error) -> bool:
    response = getattr(error, "response", {}) or {}
    code = response.get("Error", {}).get("Code", "")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412)


def write(s3, bucket: str, prefix: str, record: dict, signer, lock_days: int = 0) -> tuple[str, dict]:
    """Sign and write `record` as the next receipt, once; (its key, the record with its sequence)."""
    from botocore.exceptions import ClientError

    from ..storage.registry import record_bytes

    lock = {}
    if lock_days > 0:
        lock = {"ObjectLockMode": "COMPLIANCE",
                "ObjectLockRetainUntilDate": datetime.now(timezone.utc) + timedelta(days=lock_days)}
    sequence = next_sequence(s3, bucket, prefix)
    for _ in range(ATTEMPTS):
        signed = {**record, "kind": KIND, "sequence": sequence}
        body = json.dumps({"record": signed, "signature": base64.b64encode(signer.sign(record_bytes(signed))).decode()},
                          indent=2, sort_keys=True).encode()
        key = key_of(prefix, sequence)
        try:
            objects.put(s3, bucket, key, body, "application/json", IfNoneMatch="*", **lock)
            return key, signed
        except ClientError as error:
            if not _precondition_failed(error):
                raise
            sequence += 1  # another erasure took this number
    raise NotRetryable(f"could not write an erasure receipt under {root(prefix)}: {ATTEMPTS} sequence numbers taken")


def read(s3, bucket: str, key: str, verifier, version_id: str | None = None) -> dict:
    """A receipt's record, only once its signature verifies and it is stored under its own sequence's key;
    NotRetryable naming the key otherwise."""
    from ..storage.registry import record_bytes
    from ..storage.signing import SignatureError

    extra = {"VersionId": version_id} if version_id else {}
    try:
        body, _ = objects.read(s3, bucket, key, MAX_RECEIPT_BYTES, **extra)
        document = json.loads(body)
        record = document["record"]
        signature = base64.b64decode(document["signature"], validate=True)
    except (ValueError, TypeError, KeyError, objects.TooLarge) as error:
        raise NotRetryable(f"{key} is not a signed erasure receipt ({type(error).__name__})") from None
    if verifier is None:
        raise NotRetryable(f"{key}: no public key to verify receipts with (set CROSS_SELL_SIGNING_PUBLIC_KEY)")
    try:
        verifier.verify(record_bytes(record), signature, key)
    except SignatureError:
        raise NotRetryable(f"{key} is not signed by the training side's key (changed outside the project)") from None
    if not isinstance(record, dict) or record.get("kind") != KIND or record.get("sequence") != _sequence(key):
        raise NotRetryable(f"{key} holds a signed record of another kind or sequence (a receipt copied over "
                           "another)")
    return record


def verified(s3, bucket: str, prefix: str, verifier) -> tuple[dict[int, dict], list[str]]:
    """(sequence -> record of every current receipt that verifies, problems of the others)."""
    records: dict[int, dict] = {}
    problems: list[str] = []
    versions, _ = _versions(s3, bucket, prefix)
    for key, found in sorted(versions.items()):
        if not any(v["IsLatest"] for v in found):
            continue  # hidden by a delete marker: `problems` reports it
        sequence = _sequence(key)
        if sequence is None:
            problems.append(f"{key} is not named as a receipt (<sequence>.json)")
            continue
        try:
            records[sequence] = read(s3, bucket, key, verifier)
        except NotRetryable as error:
            problems.append(str(error))
    return records, problems


def problems(s3, bucket: str, prefix: str, verifier, erased=None) -> list[str]:
    """Everything wrong with the receipts (module doc). `erased`: the suppression list's collection, whose
    records name their receipts (None: the bucket alone is checked)."""
    return check(s3, bucket, prefix, verifier, erased)[1]


def check(s3, bucket: str, prefix: str, verifier, erased=None) -> tuple[dict[int, dict], list[str]]:
    """(sequence -> verified receipt, `problems`)."""
    versions, markers = _versions(s3, bucket, prefix)
    found = [f"{m['Key']} is hidden by a delete marker (version {m.get('VersionId')}, {m.get('LastModified')}): "
             "an erasure receipt was deleted" for m in markers]
    found += [f"{key} was written {len(v)} times (receipts are written once): overwritten"
              for key, v in sorted(versions.items()) if len(v) > 1]
    records, unreadable = verified(s3, bucket, prefix, verifier)
    found += unreadable
    numbered = {n for n in (_sequence(k) for k in [*versions, *(m["Key"] for m in markers)]) if n is not None}
    highest = max(numbered, default=0)
    found += [f"{key_of(prefix, n)} is missing: receipts are numbered 1 to {highest} without gaps"
              for n in range(1, highest + 1) if n not in numbered]
    for sequence, record in sorted(records.items()):
        if record.get("complete") is False:
            found.append(f"{key_of(prefix, sequence)} records an erasure that left customer data behind "
                         f"({record.get('left', {}).get('total', '?')} rows or documents): run it again")
    if erased is not None:
        found += _cross_check(prefix, records, erased)
    return records, found


def _cross_check(prefix: str, records: dict[int, dict], erased) -> list[str]:
    """The suppression list against the receipts: each erased hash's receipt exists and lists it."""
    hashes = {sequence: set(record.get("customer_hashes") or []) for sequence, record in records.items()}
    unlisted: dict[int | None, int] = {}
    for document in erased.find({}, projection={"_id": True, "receipt": True}):
        sequence = document.get("receipt")
        sequence = sequence if isinstance(sequence, int) else None
        if sequence not in hashes or document["_id"] not in hashes[sequence]:
            unlisted[sequence] = unlisted.get(sequence, 0) + 1
    found = []
    for sequence, count in sorted(unlisted.items(), key=lambda item: str(item[0])):
        if sequence is None:
            found.append(f"{count:,} erased customer(s) on the suppression list name no receipt: an erasure "
                         "that did not finish writing one")
        elif sequence not in hashes:
            found.append(f"{count:,} erased customer(s) on the suppression list name receipt {sequence}, which is "
                         f"missing or not verified ({key_of(prefix, sequence)})")
        else:
            found.append(f"{count:,} erased customer(s) on the suppression list name receipt {sequence}, which does "
                         "not list them (replaced by another receipt?)")
    return found


def models_erased_from(records: dict[int, dict]) -> dict[str, int]:
    """Model version -> the first receipt that erased customers it was trained on."""
    models: dict[str, int] = {}
    for sequence, record in sorted(records.items()):
        for version in record.get("models_trained_on_their_data") or []:
            models.setdefault(version, sequence)
    return models


def verify(clients) -> dict:
    """The `erase --verify` operation: every receipt checked (`check`), against the suppression list too."""
    registry, settings = clients.registry, clients.settings
    records, found = check(registry.s3, settings.s3_bucket, settings.s3_prefix, registry.verifier,
                           clients.collection(settings.erased_collection))
    return {"receipts_verified": len(records), "problems": found}
