"""Erasure on request (GDPR art. 17): customers removed from every collection and every object version.

`erase(ids, ...)`, called by `python -m cross_sell erase` and the `cross_sell_erasure` DAG:

1. MongoDB: the customers leave `customers`, `customer_scores`, `customer_outcomes`, the consent and the
   contact history.
2. S3: every object that holds customer rows (`ROW_OBJECTS`: run snapshots and splits, scores, campaign
   lists, quarantine files), every version of it, is scanned a row group or a line at a time; a version
   that holds one of them is rewritten without their rows (the current one: a new version, then the old
   one deleted) or deleted (an older one). Memory stays that of one row group, whatever the file.
3. The suppression list gets their keyed hashes, so `load` and extraction cannot bring them back.
4. A write-once, signed **erasure receipt** (`<prefix>/erasure/receipts/<time>_<request>.json`) records
   the keyed hashes (never an id), what was removed where, each object's old and new sha256 (so an
   integrity check can tell erasure from tampering), who, when and why, and which model versions were
   trained on data that held them (a model is not unlearnt; its training data is what erasure reaches).

A dry run finds and counts everything and changes nothing.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import logging
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np

from . import clock, objects
from .contracts import Erased
from .errors import NotRetryable
from .memory import lean_allocators
from .suppression import digest

log = logging.getLogger(__name__)

# Objects that hold customer rows, by key under the prefix, and how their rows are read.
ROW_OBJECTS = (
    ("runs/*/raw/snapshot.parquet", "parquet"),
    ("runs/*/features/*.parquet", "parquet"),
    ("scores/*/scores.parquet", "parquet"),
    ("scores/*/campaign.parquet", "parquet"),
    ("scores/*/campaign.csv", "csv"),
    ("scores/*/quarantine.jsonl", "jsonl"),
)
RECEIPTS = "erasure/receipts"


class ErasureError(NotRetryable):
    """An erasure request that cannot be carried out as asked (no ids, no key, no signer...)."""


@dataclass
class Found:
    """One object version and the rows of the erased customers it held."""

    key: str
    version_id: str
    latest: bool
    old_sha256: str
    rows: int = 0
    removed: int = 0
    new_sha256: str | None = None
    action: str = "kept"  # "rewritten" | "deleted" (an older version) | "kept" (none of them in it)

    def record(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "latest"}


@dataclass
class Erasure:
    """What one request found and did; `receipt()` is what is kept of it."""

    request: str
    reason: str
    by: str
    hashes: list[str]
    dry_run: bool
    at: str = field(default_factory=lambda: clock.stamp())
    mongodb: dict = field(default_factory=dict)
    objects: list[Found] = field(default_factory=list)
    models: list[str] = field(default_factory=list)

    def receipt(self) -> dict:
        changed = [f.record() for f in self.objects if f.action != "kept"]
        return {"kind": "erasure_receipt", "request": self.request, "reason": self.reason, "by": self.by,
                "at": self.at, "dry_run": self.dry_run, "customers": len(self.hashes),
                "customer_hashes": sorted(self.hashes), "hash": "keyed BLAKE2b-128 of the id (erasure key)",
                "mongodb": self.mongodb, "objects": changed,
                "objects_scanned": len(self.objects), "models_trained_on_their_data": self.models}


def row_objects(s3, bucket: str, prefix: str) -> Iterable[tuple[str, str, list[dict]]]:
    """(key, format, every version) of every object under the prefix that holds customer rows; one listing
    of the versions per area, not one per object."""
    root = f"{prefix}/" if prefix else ""
    for area in ("runs/", "scores/"):
        versions: dict[str, list[dict]] = {}
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=root + area):
            for version in page.get("Versions", []):
                versions.setdefault(version["Key"], []).append(version)
        for key, found in versions.items():
            relative = key[len(root):]
            kind = next((kind for pattern, kind in ROW_OBJECTS if fnmatch.fnmatchcase(relative, pattern)), None)
            if kind is not None:
                yield key, kind, found


def _versions(s3, bucket: str, key: str) -> list[dict]:
    paginator = s3.get_paginator("list_object_versions")
    return [v for page in paginator.paginate(Bucket=bucket, Prefix=key) for v in page.get("Versions", [])
            if v["Key"] == key]


def _filter_parquet(source: Path, target: Path, ids: np.ndarray, write: bool) -> tuple[int, int]:
    """(rows, rows of `ids`) of a Parquet file, row group by row group; `write`: the others to `target`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(source)
    rows = removed = 0
    writer = pq.ParquetWriter(target, parquet.schema_arrow) if write else None
    try:
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group)
            hit = np.isin(table.column("id").to_numpy(zero_copy_only=False), ids)
            rows, removed = rows + table.num_rows, removed + int(hit.sum())
            if writer is not None:
                writer.write_table(table.filter(pa.array(~hit)) if hit.any() else table)
    finally:
        if writer is not None:
            writer.close()
    return rows, removed


def _filter_lines(source: Path, target: Path, ids: set[int], write: bool, kind: str) -> tuple[int, int]:
    """(rows, rows of `ids`) of a CSV (with an `id` column) or JSON-lines file, a line at a time; `write`:
    the others to `target`."""
    rows = removed = 0
    out = open(target, "w", newline="") if write else None
    try:
        with open(source, newline="") as handle:
            if kind == "csv":
                reader = csv.reader(handle)
                header = next(reader, None) or []
                writer = csv.writer(out) if out else None
                if writer and header:
                    writer.writerow(header)
                column = header.index("id") if "id" in header else None
                for record in reader:
                    rows += 1
                    cell = record[column].strip() if column is not None and len(record) > column else ""
                    if cell.isdigit() and int(cell) in ids:
                        removed += 1
                    elif writer:
                        writer.writerow(record)
            else:
                for line in handle:
                    if not line.strip():
                        continue
                    rows += 1
                    if json.loads(line).get("id") in ids:
                        removed += 1
                    elif out:
                        out.write(line)
    finally:
        if out:
            out.close()
    return rows, removed


def _scan_version(s3, bucket: str, version: dict, kind: str, ids: np.ndarray, id_set: set[int], tmp: Path,
                  rewrite: bool) -> tuple[Found, Path | None]:
    source, target = tmp / "source", tmp / "target"
    sha256, _ = objects.download(s3, bucket, version["Key"], source, max_bytes=version["Size"],
                                 VersionId=version["VersionId"])
    found = Found(version["Key"], version["VersionId"], version["IsLatest"], sha256)
    if kind == "parquet":
        found.rows, found.removed = _filter_parquet(source, target, ids, write=False)
        if found.removed and rewrite:
            _filter_parquet(source, target, ids, write=True)
    else:
        found.rows, found.removed = _filter_lines(source, target, id_set, write=False, kind=kind)
        if found.removed and rewrite:
            _filter_lines(source, target, id_set, write=True, kind=kind)
    return found, target if found.removed and rewrite else None


def erase(ids: Iterable[int], *, s3, bucket: str, prefix: str, collections: dict, erased, key: bytes | None,
          registry, request: str, reason: str, by: str, dry_run: bool = False, signer=None,
          lock_days: int = 0) -> Erasure:
    """Remove the customers `ids` everywhere (module doc); the `Erasure` with its receipt."""
    ids = np.unique(np.asarray([int(i) for i in ids], dtype=np.int64))
    if not len(ids):
        raise ErasureError("no customer ids to erase")
    if key is None:
        raise ErasureError("an erasure needs the erasure key (CROSS_SELL_ERASURE_KEY_FILE): the receipt and the "
                           "suppression list hold keyed hashes, never ids")
    if not reason.strip() or not by.strip():
        raise ErasureError("an erasure needs a reason and who asked for it")
    if not dry_run and signer is None:
        raise ErasureError("an erasure receipt is signed: give the model-signing private key")
    lean_allocators()  # every file is streamed: what a row group frees goes back
    id_set = set(ids.tolist())
    done = Erasure(request, reason, by, [digest(key, i) for i in ids], dry_run)
    query = {"_id": {"$in": ids.tolist()}}
    for name, collection in collections.items():  # MongoDB
        count = collection.count_documents(query)
        if count and not dry_run:
            count = collection.delete_many(query).deleted_count
        done.mongodb[name] = count
    snapshots_holding = set()
    with tempfile.TemporaryDirectory(prefix="erasure-") as tmp:  # S3, every version
        for object_key, kind, versions in row_objects(s3, bucket, prefix):
            for version in versions:
                found, rewritten = _scan_version(s3, bucket, version, kind, ids, id_set, Path(tmp),
                                                 rewrite=version["IsLatest"] and not dry_run)
                if found.removed:
                    if object_key.endswith("/raw/snapshot.parquet"):
                        snapshots_holding.add(object_key)
                    found.action = "rewritten" if version["IsLatest"] else "deleted"
                    if not dry_run:
                        if rewritten is not None:
                            objects.upload(s3, bucket, object_key, rewritten)
                            found.new_sha256 = objects.sha256_file(rewritten)
                        s3.delete_object(Bucket=bucket, Key=object_key, VersionId=version["VersionId"])
                done.objects.append(found)
    done.models = _models_trained_on(registry, snapshots_holding)
    if not dry_run:
        for hashed in done.hashes:  # the suppression list
            erased.replace_one({"_id": hashed}, {"_id": hashed, "erased_at": done.at, "request": request},
                               upsert=True)
        _write_receipt(s3, bucket, prefix, done, signer, lock_days)
    removed = sum(f.removed for f in done.objects)
    log.info("erasure %s%s: %s customers; MongoDB %s; %s rows in %s object versions (of %s scanned); models "
             "trained on their data: %s", request, " (dry run)" if dry_run else "", len(ids), done.mongodb,
             f"{removed:,}", sum(1 for f in done.objects if f.action != "kept"), len(done.objects),
             ", ".join(done.models) or "none")
    return done


def _models_trained_on(registry, snapshot_keys: set[str]) -> list[str]:
    """Registry versions whose signed manifest names one of these snapshots in its lineage."""
    if not snapshot_keys or registry is None:
        return []
    models = []
    for version in registry.versions():
        try:
            lineage = registry.manifest(version).get("lineage") or {}
        except NotRetryable:
            continue
        if (lineage.get("snapshot") or {}).get("key") in snapshot_keys:
            models.append(version)
    return models


def receipt_key(prefix: str, erasure: Erasure) -> str:
    stamp = erasure.at.replace(":", "").replace("-", "").replace("+0000", "Z")
    return objects.join_key(prefix, RECEIPTS, f"{stamp}_{erasure.request}.json")


def _write_receipt(s3, bucket: str, prefix: str, erasure: Erasure, signer, lock_days: int) -> str:
    """The receipt, signed and written once (If-None-Match, Object Lock when configured)."""
    import base64
    from datetime import timedelta

    from .registry import record_bytes

    receipt = erasure.receipt()
    body = json.dumps({"record": receipt, "signature": base64.b64encode(signer.sign(record_bytes(receipt))).decode()},
                      indent=2, sort_keys=True).encode()
    lock = {}
    if lock_days > 0:
        lock = {"ObjectLockMode": "COMPLIANCE",
                "ObjectLockRetainUntilDate": datetime.now(timezone.utc) + timedelta(days=lock_days)}
    key = receipt_key(prefix, erasure)
    objects.put(s3, bucket, key, body, "application/json", IfNoneMatch="*", **lock)
    return key


def read_ids(path: str | Path) -> list[int]:
    """Customer ids, one per line (blank lines and # comments ignored); refused with the line if not an id."""
    ids = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if not text.isdigit():
            raise ErasureError(f"{path}: line {number}: {text!r} is not a customer id (a whole number)")
        ids.append(int(text))
    return ids


REQUESTS = "erasure/requests"
MAX_REQUEST_BYTES = 16 * 1024 * 1024


def run_request(request_key: str, *, registry, collections: dict, erased, key: bytes | None, reason: str, by: str,
                dry_run: bool, signer, lock_days: int = 0) -> Erased:
    """The `cross_sell_erasure` DAG's stage: the ids of an erasure request (a text file put under
    `<prefix>/erasure/requests/`, so no id ever sits in Airflow's database), erased, then the request file
    deleted (every version) once the receipt is written. What it returns holds no id."""
    s3, bucket, prefix = registry.s3, registry.bucket, registry.prefix
    root = objects.folder(prefix, REQUESTS)
    if not request_key.startswith(root) or ".." in request_key:
        raise ErasureError(f"an erasure request is a file under {root}, not {request_key!r}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ids.txt"
        objects.download(s3, bucket, request_key, path, max_bytes=MAX_REQUEST_BYTES)
        ids = read_ids(path)
    done = erase(ids, s3=s3, bucket=bucket, prefix=prefix, collections=collections, erased=erased, key=key,
                 registry=registry, request=Path(request_key).stem, reason=reason, by=by, dry_run=dry_run,
                 signer=signer, lock_days=lock_days)
    if not dry_run:  # the ids themselves go too: only their hashes stay, in the receipt
        for version in _versions(s3, bucket, request_key):
            s3.delete_object(Bucket=bucket, Key=request_key, VersionId=version["VersionId"])
    changed = [f for f in done.objects if f.action != "kept"]
    return Erased(request=done.request, dry_run=dry_run, customers=len(done.hashes), mongodb=done.mongodb,
                  object_versions_changed=len(changed), rows_removed=sum(f.removed for f in changed),
                  receipt_key=None if dry_run else receipt_key(prefix, done),
                  models_trained_on_their_data=done.models)
