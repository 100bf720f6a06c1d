"""Erasure on request (GDPR art. 17): customers removed from every place the storage layout declares.

`erase(ids, ...)`, called through `erase_ids(clients, ...)` by `python -m cross_sell erase` and the
`cross_sell_erasure` DAG alike, works from
`cross_sell.storage.layout` (the one list of every place that holds customer data):

1. Before anything changes: every object under the prefix is listed (every version) and must belong to a
   declared area (`layout.UnknownArea` otherwise); every customer collection is checked for documents
   without an `id` (whose they are cannot be told: an error, not a skip); the customers' feature rows are
   read from the customers collection (serving samples carry no id: they are found by these rows) and
   their marketing objections from the consent collection.
2. The suppression list gets their keyed hashes first (with `opted_out` for those who objected), so a load,
   an extraction or a scoring run meanwhile already leaves them out.
3. MongoDB: their documents leave every customer collection, matched by the business key `id` and by `_id`
   (a CRM writes `{id: 100547, ...}` with a generated `_id`; the loader and `publish` key on `_id`).
4. S3: every version of every object that holds customer rows is scanned a row group or a line at a time:
   by `id` (snapshots, splits, scores, campaign lists, quarantine files) or by feature row (serving
   samples); a version that holds one of them is rewritten without their rows (the current one: a new
   version, then the old one deleted) or deleted (an older one). Memory stays that of one row group.
5. Everything is scanned again: the receipt's counts of what is left come from that re-scan, not from what
   the steps above believe they did.
6. A numbered, write-once, signed **erasure receipt** (`receipts`) records the keyed hashes (never an id),
   what was found, removed and is left where, each object version's old and new sha256, who, when and why,
   and the model versions trained on data that held them. If anything is left, the receipt says so and the
   erasure fails after writing it.

A dry run finds and counts everything and changes nothing in MongoDB or the data; the DAG's dry run still
deletes its request file (plaintext ids are never left behind).
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import clock
from ..contracts import Erased
from ..data import schema
from ..errors import NotRetryable
from ..memory import lean_allocators
from ..storage import layout, objects
from . import receipts
from .suppression import as_id, digest, read_key
from .suppression import name_receipt as _name_receipt
from .suppression import record as _suppress

log = logging.getLogger(__name__)

RECEIPTS = layout.RECEIPTS
REQUESTS = layout.REQUESTS
MAX_REQUEST_BYTES = 16 * 1024 * 1024


class ErasureError(NotRetryable):
    """An erasure request that cannot be carried out as asked (no ids, no key, no signer, an undeclared
    object, a document whose customer cannot be told...), or one that left data behind."""


def feature_row(row: Mapping) -> tuple | None:
    """A customer's 10 feature values in a form the service's samples and MongoDB's documents share
    (numbers as floats, categories as text); None when one is missing."""
    values: list[float | str] = []
    for name in schema.FEATURES:
        value = row.get(name)
        if value is None or isinstance(value, (dict, list)):
            return None
        if isinstance(value, (bool, int, float, np.integer, np.floating)):
            values.append(float(value))
        else:
            values.append(str(value))
    return tuple(values)


@dataclass
class Targets:
    """What identifies the erased customers in the data: their ids and their feature rows."""

    ids: np.ndarray
    rows: set[tuple] = field(default_factory=set)

    def __post_init__(self):
        self.id_set = set(self.ids.tolist())


@dataclass
class Found:
    """One object version and the rows of the erased customers it held."""

    key: str
    version_id: str
    latest: bool
    old_sha256: str
    matched_by: str
    rows: int = 0
    removed: int = 0
    new_sha256: str | None = None
    action: str = "kept"  # "rewritten" | "deleted" (an older version) | "kept" (none of them in it)

    def record(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "latest"}


@dataclass
class Erasure:
    """What one request found, did and left; `receipt()` is what is kept of it."""

    request: str
    reason: str
    by: str
    hashes: list[str]
    dry_run: bool
    at: str = field(default_factory=lambda: clock.stamp())
    mongodb: dict = field(default_factory=dict)  # collection -> {"found", "deleted", "left"}
    objects: list[Found] = field(default_factory=list)
    left_objects: list[dict] = field(default_factory=list)  # the re-scan: versions still holding their rows
    samples: dict = field(default_factory=dict)
    opted_out: int = 0
    models: list[str] = field(default_factory=list)
    receipt_key: str | None = None
    sequence: int | None = None

    @property
    def left(self) -> int:
        return sum(c["left"] for c in self.mongodb.values()) + sum(o["rows"] for o in self.left_objects)

    @property
    def complete(self) -> bool:
        return not self.dry_run and self.left == 0

    def receipt(self) -> dict:
        changed = [f.record() for f in self.objects if f.action != "kept"]
        return {"kind": receipts.KIND, "request": self.request, "reason": self.reason, "by": self.by,
                "at": self.at, "dry_run": self.dry_run, "customers": len(self.hashes),
                "customer_hashes": sorted(self.hashes), "hash": "keyed BLAKE2b-128 of the id (erasure key)",
                "opted_out_kept": self.opted_out, "mongodb": self.mongodb, "objects": changed,
                "objects_scanned": len(self.objects), "serving_samples": self.samples,
                "left": {"total": self.left, "mongodb": {k: v["left"] for k, v in self.mongodb.items()},
                         "object_versions": self.left_objects},
                "complete": self.complete, "counted": "left: a re-scan of every place after the erasure",
                "models_trained_on_their_data": self.models}


# -- S3 ------------------------------------------------------------------------------------------------
def customer_objects(s3, bucket: str, prefix: str) -> list[tuple[str, layout.Area, list[dict]]]:
    """(key, area, every version) of every object under the prefix whose area holds customer rows; every
    key must belong to a declared area (`layout.UnknownArea`)."""
    versions: dict[str, list[dict]] = {}
    root = objects.folder(prefix) if prefix else ""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=root):
        for version in page.get("Versions", []):
            versions.setdefault(version["Key"], []).append(version)
    found = []
    for key, held in sorted(versions.items()):
        area = layout.area_of(layout.relative(prefix, key))
        if area.how in (layout.BY_ID, layout.BY_FEATURES):
            found.append((key, area, held))
    return found


def _id_hits(values: np.ndarray, targets: Targets) -> np.ndarray:
    if values.dtype.kind in "iu":
        return np.isin(values, targets.ids)
    if values.dtype.kind == "f":
        return np.isin(values, targets.ids.astype(np.float64))
    return np.fromiter((as_id(v) in targets.id_set for v in values), dtype=bool, count=len(values))


def _filter_parquet(source: Path, target: Path, targets: Targets, write: bool, key: str) -> tuple[int, int]:
    """(rows, rows of the erased customers) of a Parquet file, row group by row group; `write`: the others
    to `target`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(source)
    if schema.KEY not in parquet.schema_arrow.names:
        raise ErasureError(f"{key}: no `{schema.KEY}` column, but the layout says it holds rows by id")
    rows = removed = 0
    writer = pq.ParquetWriter(target, parquet.schema_arrow) if write else None
    try:
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group)
            hit = _id_hits(table.column(schema.KEY).to_numpy(zero_copy_only=False), targets)
            rows, removed = rows + table.num_rows, removed + int(hit.sum())
            if writer is not None:
                writer.write_table(table.filter(pa.array(~hit)) if hit.any() else table)
    finally:
        if writer is not None:
            writer.close()
    return rows, removed


def _filter_csv(source: Path, target: Path, targets: Targets, write: bool, key: str) -> tuple[int, int]:
    rows = removed = 0
    with open(source, newline="") as handle, (open(target, "w", newline="") if write else _Null()) as out:
        reader = csv.reader(handle)
        header = next(reader, None) or []
        if schema.KEY not in header:
            raise ErasureError(f"{key}: no `{schema.KEY}` column, but the layout says it holds rows by id")
        column = header.index(schema.KEY)
        writer = csv.writer(out) if write else None
        if writer:
            writer.writerow(header)
        for record in reader:
            rows += 1
            if len(record) > column and as_id(record[column]) in targets.id_set:
                removed += 1
            elif writer:
                writer.writerow(record)
    return rows, removed


def _filter_jsonl(source: Path, target: Path, targets: Targets, write: bool, key: str,
                  how: str) -> tuple[int, int]:
    rows = removed = 0
    with open(source) as handle, (open(target, "w") if write else _Null()) as out:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            rows += 1
            try:
                row = json.loads(line)
            except ValueError:
                raise ErasureError(f"{key}: line {number} is not JSON; cannot tell whose row it is") from None
            if not isinstance(row, dict):
                raise ErasureError(f"{key}: line {number} is not a JSON object; cannot tell whose row it is")
            if how == layout.BY_ID:
                hit = as_id(row.get(schema.KEY)) in targets.id_set or \
                    as_id((row.get("document") or {}).get(schema.KEY)) in targets.id_set
            else:
                hit = feature_row(row) in targets.rows
            if hit:
                removed += 1
            elif write:
                out.write(line if line.endswith("\n") else line + "\n")
    return rows, removed


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _filter(area: layout.Area, source: Path, target: Path, targets: Targets, write: bool,
            key: str) -> tuple[int, int]:
    if area.format == "parquet":
        return _filter_parquet(source, target, targets, write, key)
    if area.format == "csv":
        return _filter_csv(source, target, targets, write, key)
    if area.format == "jsonl":
        return _filter_jsonl(source, target, targets, write, key, area.how)
    raise ErasureError(f"{key}: the layout names no way to read {area.format!r} rows")


def _unreadable() -> tuple[type[Exception], ...]:
    import pyarrow as pa

    return (pa.ArrowException, csv.Error, json.JSONDecodeError, UnicodeDecodeError, ValueError)


UNREADABLE = _unreadable()  # what reading a row-holding file may raise when its bytes are no such file


def _scan(s3, bucket: str, prefix: str, targets: Targets, tmp: Path, change: bool) -> list[Found]:
    """Every version of every row-holding object, scanned; `change`: the versions holding their rows are
    rewritten (the current one) or deleted (older ones)."""
    done = []
    source, target = tmp / "source", tmp / "target"
    for key, area, versions in customer_objects(s3, bucket, prefix):
        if area.how == layout.BY_FEATURES and not targets.rows:
            continue  # no feature row to look for (the receipt counts the customers without one)
        for version in versions:
            sha256, _ = objects.download(s3, bucket, key, source, max_bytes=version["Size"],
                                         VersionId=version["VersionId"])
            found = Found(key, version["VersionId"], version["IsLatest"], sha256, area.how)
            try:
                found.rows, found.removed = _filter(area, source, target, targets, write=False, key=key)
            except UNREADABLE as error:
                if version["IsLatest"]:  # what serves as the current data cannot be read: a person must look
                    raise ErasureError(f"{key}: the current version cannot be read as {area.format} ({error}); "
                                       "whether it holds the customers cannot be told") from None
                # An older version nobody can read (planted, or corrupted) cannot be shown to hold none of
                # them: it goes, as retention's rule for older versions would take it a day later.
                found.action = "deleted (unreadable)"
                if change:
                    s3.delete_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
                done.append(found)
                continue
            if found.removed:
                found.action = "rewritten" if version["IsLatest"] else "deleted"
                if change:
                    if version["IsLatest"]:
                        _filter(area, source, target, targets, write=True, key=key)
                        objects.upload(s3, bucket, key, target)
                        found.new_sha256 = objects.sha256_file(target)
                    s3.delete_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
            done.append(found)
    return done


def _versions(s3, bucket: str, key: str) -> list[dict]:
    paginator = s3.get_paginator("list_object_versions")
    return [v for page in paginator.paginate(Bucket=bucket, Prefix=key)
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []) if v["Key"] == key]


# -- MongoDB -------------------------------------------------------------------------------------------
def _documents(collection: layout.Collection, ids: np.ndarray, projection: dict | None = None) -> Iterator[dict]:
    """The documents of the customers `ids`, however their id is written: by number (MongoDB compares 21 and
    21.0 alike), and every document whose id is text read through `as_id` (" 21", "021", "21.0"...)."""
    wanted = set(ids.tolist())
    fields = {"_id": True, **{name: True for name in collection.area.match}, **(projection or {})}
    numbers = {"$or": [{name: {"$in": ids.tolist()}} for name in collection.area.match]}
    seen = set()
    for document in collection.handle.find(numbers, projection=fields):
        seen.add(document["_id"])
        yield document
    texts = {"$or": [{name: {"$type": "string"}} for name in collection.area.match]}
    for document in collection.handle.find(texts, projection=fields):
        if document["_id"] not in seen and any(as_id(document.get(name)) in wanted for name in collection.area.match):
            yield document


_NOT_WHOLE_NUMBERS = ("double", "decimal", "string", "object", "array", "bool", "null", "date", "objectId", "binData",
                      "regex", "timestamp", "javascript", "symbol", "minKey", "maxKey")


def _names_a_customer(value) -> bool:
    """Whether `_documents` finds a document by this `id`: an id however written (`as_id`), or an array of
    numbers (MongoDB matches an array by its elements)."""
    if isinstance(value, list):
        return bool(value) and all(not isinstance(v, str) and as_id(v) is not None for v in value)
    return as_id(value) is not None


def _check_shape(collection: layout.Collection) -> None:
    """Every document names its customer: one without `id`, or with an `id` that is no id ("abc"), cannot be
    erased by it (an error, not a skip)."""
    if schema.KEY not in collection.area.match:
        return
    if collection.handle.find_one({schema.KEY: {"$exists": False}}, projection={"_id": True}) is not None:
        raise ErasureError(f"{collection.name}: a document has no `{schema.KEY}` field, so whose it is cannot be "
                           f"told; give every document of {collection.name} its customer's `{schema.KEY}` (or remove "
                           "it) and run the erasure again")
    # Whole numbers are ids; anything else must read as one (21.0, " 21", [21]): an object, a boolean, a
    # fraction, null or text that is no id would never be matched, so the erasure stops instead of missing it.
    # (One $type clause each: servers differ in what else they accept there.)
    others = {"$or": [{schema.KEY: {"$type": kind}} for kind in _NOT_WHOLE_NUMBERS]}
    for document in collection.handle.find(others, projection={schema.KEY: True}):
        if not _names_a_customer(document.get(schema.KEY)):
            raise ErasureError(f"{collection.name}: a document's `{schema.KEY}` is no customer id (a "
                               f"{type(document[schema.KEY]).__name__}), so whose it is cannot be told; correct it "
                               "(or remove the document) and run the erasure again")


def _count(collection: layout.Collection, ids: np.ndarray) -> int:
    return sum(1 for _ in _documents(collection, ids))


def _delete(collection: layout.Collection, ids: np.ndarray, chunk: int = 1_000) -> int:
    """Delete the customers' documents, each by its `_id` (found by `_documents`): a filtered delete_many
    on another field reports deletions that `nx-27017` (the local stand-in) does not make; the re-scan
    would catch it, this does not need it."""
    from pymongo import DeleteOne

    found = [d["_id"] for d in _documents(collection, ids)]
    deleted = 0
    for start in range(0, len(found), chunk):
        result = collection.handle.bulk_write([DeleteOne({"_id": _id}) for _id in found[start:start + chunk]],
                                              ordered=False)
        deleted += result.deleted_count
    return deleted


def _read_before(collections: list[layout.Collection], ids: np.ndarray) -> tuple[set[tuple], set[int], int]:
    """(the customers' feature rows, the ids of those who objected to marketing, customers with a row)."""
    rows: set[tuple] = set()
    with_rows: set[int] = set()
    objected: set[int] = set()
    for collection in collections:
        if collection.area.features:
            wanted = {name: True for name in (schema.KEY, *schema.FEATURES)}
            for document in _documents(collection, ids, wanted):
                row = feature_row(document)
                customer = as_id(document.get(schema.KEY, document.get("_id")))
                if row is not None and customer is not None:
                    rows.add(row)
                    with_rows.add(customer)
        if collection.area.consent:
            for document in _documents(collection, ids, {schema.KEY: True, "contact_allowed": True}):
                if document.get("contact_allowed") is not True:  # "no", or anything but a clear yes
                    customer = as_id(document.get(schema.KEY, document.get("_id")))
                    if customer is not None:
                        objected.add(customer)
    return rows, objected, len(with_rows)


# -- the erasure ---------------------------------------------------------------------------------------
def erase(ids: Iterable[int], *, s3, bucket: str, prefix: str, collections: list[layout.Collection], erased,
          key: bytes | None, registry, request: str, reason: str, by: str, dry_run: bool = False, signer=None,
          lock_days: int = 0) -> Erasure:
    """Remove the customers `ids` everywhere (module doc); the `Erasure` with its receipt. `collections`:
    `layout.erasure_collections(settings, open)`; raises ErasureError after writing the receipt when the
    re-scan still finds their data."""
    ids = np.unique(np.asarray([int(i) for i in ids], dtype=np.int64))
    if not len(ids):
        raise ErasureError("no customer ids to erase")
    if key is None and not dry_run:
        raise ErasureError("an erasure needs the erasure key (CROSS_SELL_ERASURE_KEY_FILE): the receipt and the "
                           "suppression list hold keyed hashes, never ids. Make one with `python -m cross_sell "
                           "erasure-key secrets/erasure.key` and set CROSS_SELL_ERASURE_KEY_FILE to it")
    if key is None:  # a dry run keeps no hash: a throwaway key counts just as well
        import secrets

        key = secrets.token_bytes(32)
        log.info("dry run without an erasure key: counting with a throwaway key (nothing is kept)")
    if not reason.strip() or not by.strip():
        raise ErasureError("an erasure needs a reason and who asked for it")
    if not dry_run and signer is None:
        raise ErasureError("an erasure receipt is signed: give the model-signing private key")
    if not dry_run and erased is None:
        raise ErasureError("an erasure puts the customers on the suppression list: give its collection")
    lean_allocators()  # every file is streamed: what a row group frees goes back
    done = Erasure(request, reason, by, [digest(key, i) for i in ids], dry_run)
    by_id = {int(i): h for i, h in zip(ids.tolist(), done.hashes, strict=True)}
    # 1. Nothing changes until every place is known and every document can be told apart.
    customer_objects(s3, bucket, prefix)
    for collection in collections:
        _check_shape(collection)
    rows, objected, with_rows = _read_before(collections, ids)
    targets = Targets(ids, rows)
    done.opted_out = len(objected)
    for collection in collections:
        done.mongodb[collection.name] = {"found": _count(collection, ids), "deleted": 0, "left": 0}
    if not dry_run:  # 2. the suppression list first
        _suppress(erased, done.hashes, done.at, request, {by_id[i] for i in objected if i in by_id})
        for collection in collections:  # 3. MongoDB
            done.mongodb[collection.name]["deleted"] = _delete(collection, ids)
    with tempfile.TemporaryDirectory(prefix="erasure-") as tmp:
        done.objects = _scan(s3, bucket, prefix, targets, Path(tmp), change=not dry_run)  # 4. S3, every version
        # 5. The re-scan: what is left (in a dry run, what was found).
        for collection in collections:
            done.mongodb[collection.name]["left"] = _count(collection, ids)
        again = _scan(s3, bucket, prefix, targets, Path(tmp), change=False) if not dry_run else done.objects
    done.left_objects = [{"key": f.key, "version_id": f.version_id, "rows": f.removed} for f in again if f.removed]
    done.samples = {"customers_with_feature_rows": with_rows, "customers_without": len(ids) - with_rows,
                    "rows_found": sum(f.removed for f in done.objects if f.matched_by == layout.BY_FEATURES),
                    "rows_left": sum(f.removed for f in again if f.matched_by == layout.BY_FEATURES)}
    snapshots = {f.key for f in done.objects if f.removed and f.key.endswith("/raw/snapshot.parquet")}
    done.models = _models_trained_on(registry, snapshots)
    if not dry_run:  # 6. the receipt, then each hash names it
        done.receipt_key, written = receipts.write(s3, bucket, prefix, done.receipt(), signer, lock_days)
        done.sequence = written["sequence"]
        _name_receipt(erased, done.hashes, done.sequence)
    removed = sum(f.removed for f in done.objects)
    log.info("erasure %s%s: %s customers; MongoDB %s; %s rows in %s object versions (of %s scanned); serving "
             "samples %s; opt-outs kept %s; left after the re-scan: %s; models trained on their data: %s; "
             "receipt %s", request, " (dry run)" if dry_run else "", len(ids), done.mongodb, f"{removed:,}",
             sum(1 for f in done.objects if f.action != "kept"), len(done.objects), done.samples, done.opted_out,
             done.left, ", ".join(done.models) or "none", done.receipt_key or "none (dry run)")
    if not dry_run and done.left:
        raise ErasureError(f"erasure {request}: {done.left:,} documents or rows of the customers are still there "
                           f"after it (receipt {done.receipt_key} records where); run the request again")
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


def read_ids(path: str | Path) -> list[int]:
    """Customer ids, one per line (blank lines and # comments ignored); refused with the line number if not
    an id (the text itself is not repeated: it may be someone's id)."""
    ids = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if not text.isdigit():
            raise ErasureError(f"{path}: line {number} is not a customer id (a whole number)")
        ids.append(int(text))
    return ids


def erase_ids(clients, ids: Iterable[int], *, request: str, reason: str, by: str, dry_run: bool) -> Erasure:
    """The erasure operation (`python -m cross_sell erase` and, through `run_request`, the DAG): `erase` with
    what `clients` (`cross_sell.clients.Clients`) reach as the erasure role: the housekeeping user's S3 (who
    may delete), MongoDB's erasure connection for every collection the layout declares, the signing key
    (not needed for a dry run, which writes no receipt)."""
    settings = clients.settings
    conn = settings.erasure_mongo_conn_id
    registry = clients.housekeeping_registry
    return erase(ids, s3=registry.s3, bucket=registry.bucket, prefix=registry.prefix,
                 collections=layout.erasure_collections(settings,
                                                        lambda name: clients.collection(name, conn, written=True)),
                 erased=clients.collection(settings.erased_collection, conn), key=read_key(settings.erasure_key_file),
                 registry=registry, request=request, reason=reason, by=by, dry_run=dry_run,
                 signer=None if dry_run else clients.signer, lock_days=settings.audit_lock_days)


def run_request(clients, request_key: str, *, reason: str, by: str, dry_run: bool) -> Erased:
    """The `cross_sell_erasure` DAG's stage: the ids of an erasure request (a text file put under
    `<prefix>/erasure/requests/`, so no id ever sits in Airflow's database), erased (`erase_ids`), then the
    request file deleted (every version) once the receipt is written, or once a dry run has counted. What it
    returns holds no id."""
    registry = clients.housekeeping_registry
    s3, bucket, prefix = registry.s3, registry.bucket, registry.prefix
    root = objects.folder(prefix, REQUESTS)
    if not request_key.startswith(root) or ".." in request_key:
        raise ErasureError(f"an erasure request is a file under {root}, not {request_key!r}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "ids.txt"
            objects.download(s3, bucket, request_key, path, max_bytes=MAX_REQUEST_BYTES)
            ids = read_ids(path)
        done = erase_ids(clients, ids, request=Path(request_key).stem, reason=reason, by=by, dry_run=dry_run)
    except Exception:
        # A dry run that failed, whatever stopped it (a bad line, an object nobody can place), leaves no
        # plaintext ids behind either; a real erasure that failed keeps its request for the retry.
        if dry_run:
            _delete_request(s3, bucket, request_key)
        raise
    # The ids themselves go too, a dry run's as well: only their hashes stay, in the receipt.
    _delete_request(s3, bucket, request_key)
    changed = [f for f in done.objects if f.action != "kept"]
    return Erased(request=done.request, dry_run=dry_run, customers=len(done.hashes),
                  mongodb={name: counts["found" if dry_run else "deleted"] for name, counts in done.mongodb.items()},
                  object_versions_changed=len(changed), rows_removed=sum(f.removed for f in changed),
                  receipt_key=done.receipt_key, models_trained_on_their_data=done.models, left=done.left,
                  request_deleted=True)


def _delete_request(s3, bucket: str, request_key: str) -> None:
    for version in _versions(s3, bucket, request_key):
        s3.delete_object(Bucket=bucket, Key=request_key, VersionId=version["VersionId"])
