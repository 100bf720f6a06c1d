"""The storage layout: every place the product keeps data, declared once, with what it holds about customers.

Erasure (`erasure`), retention (`retention`), the erasure DAG, the CLI's `erase` and docs/data-governance.md
all read this module; nothing else lists collections or S3 areas that hold customer data.

* `AREAS`: the S3 objects under `<prefix>/`, by key pattern (`fnmatch`, first match wins), each with what it
  holds and how erasure finds a customer in it (`how`): by the `id` column or field (`BY_ID`), by the
  customer's feature row (`BY_FEATURES`: serving samples carry no id, but 99.97 % of sampled rows are unique
  on the 10 features, so they are personal data), a request file of plaintext ids (`REQUEST`: deleted once
  handled, a dry run's too), or nothing about any one customer (`NO_CUSTOMER_DATA`: aggregates, models,
  records, keyed hashes). An object under the prefix that no pattern names is an error for erasure, never
  skipped: whatever holds customer data must be declared here first.
* `mongo_collections(settings)`: the MongoDB collections (their names are settings), each with what it holds
  and the fields a customer is matched by. Every collection with customer documents is matched by the
  business key `id` (the way a CRM writes `{id: 100547, ...}` with a generated `_id`) and by `_id` (the way
  the loader and `publish` key them).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import NotRetryable

# How erasure finds a customer in an S3 object.
BY_ID = "rows by id"
BY_FEATURES = "rows by feature values"
REQUEST = "plaintext ids"
NO_CUSTOMER_DATA = "none"
# Retention classes (`retention.Policy`): the areas the housekeeping DAG deletes by age.
RUNS, SCORES, SAMPLES, REPORTS = "runs", "scores", "serving_samples", "reports"
KEPT = "kept"
HANDLED = "until handled"


class UnknownArea(NotRetryable):
    """An object under the prefix that the layout does not declare: nobody can say whether it holds
    customer data, so erasure refuses to go on (declare it in `cross_sell.storage.layout` first)."""


@dataclass(frozen=True)
class Area:
    """S3 objects under the prefix whose key (relative to it) matches `pattern`."""

    pattern: str
    holds: str
    how: str  # BY_ID | BY_FEATURES | REQUEST | NO_CUSTOMER_DATA
    format: str | None  # how erasure reads a row-holding object: "parquet" | "csv" | "jsonl" | "text"
    retention: str  # the retention class (RUNS, SCORES, SAMPLES, REPORTS), KEPT or HANDLED

    @property
    def customer_data(self) -> bool:
        return self.how != NO_CUSTOMER_DATA


# The roots of the retention classes under the prefix (`retention` deletes by these).
RETENTION_ROOTS = {RUNS: "runs/", SCORES: "scores/", SAMPLES: "serving-samples/", REPORTS: "monitoring/daily/"}
REQUESTS = "erasure/requests"
RECEIPTS = "erasure/receipts"

_RUN_FILES = "validation, drift, the candidate model and its profile, evaluation, push records: aggregates"
AREAS: tuple[Area, ...] = (
    Area("runs/*/raw/snapshot.parquet", "customer rows with ids (the training snapshot)", BY_ID, "parquet", RUNS),
    Area("runs/*/features/*.parquet", "customer rows with ids (train, validation, test splits)", BY_ID, "parquet",
         RUNS),
    Area("runs/*/raw/snapshot.json", "counts, fingerprint, the snapshot's key and sha256", NO_CUSTOMER_DATA, None,
         RUNS),
    # Validation results, Data Docs and the validate log quote samples of failed expectations: `validation`
    # masks the samples of identifier and personal columns, so they hold no id and no row (erasure relies on it).
    Area("runs/*/validation/*", "validation results, Data Docs, drift: counts and samples of failed expectations, "
         "identifier and personal columns masked (`validation`)", NO_CUSTOMER_DATA, None, RUNS),
    Area("runs/*/model/*", "the candidate model; its profile is aggregates (bin counts)", NO_CUSTOMER_DATA, None, RUNS),
    Area("runs/*/evaluation/*", "metrics, fairness, calibration, decision, reports, model card: aggregates",
         NO_CUSTOMER_DATA, None, RUNS),
    Area("runs/*/push/*", "what push and shadow did (versions, keys)", NO_CUSTOMER_DATA, None, RUNS),
    Area("scores/*/scores.parquet", "id, probability, label, decile per customer", BY_ID, "parquet", SCORES),
    Area("scores/*/campaign.parquet", "the campaign list: rank, id, probability, decile", BY_ID, "parquet", SCORES),
    Area("scores/*/campaign.csv", "the campaign list: rank, id, probability, decile", BY_ID, "csv", SCORES),
    Area("scores/*/quarantine.jsonl", "rows that broke the contract, with ids and reasons", BY_ID, "jsonl", SCORES),
    Area("scores/*/summary.json", "counts, lift and gain per decile", NO_CUSTOMER_DATA, None, SCORES),
    Area("scores/*/timing.json", "how long each step took", NO_CUSTOMER_DATA, None, SCORES),
    Area("serving-samples/date=*/*.jsonl", "sampled request rows: the 10 features and the answers, no id",
         BY_FEATURES, "jsonl", SAMPLES),
    Area("monitoring/daily/*.json", "one day's skew, drift and realized figures: aggregates", NO_CUSTOMER_DATA, None,
         REPORTS),
    Area("monitoring/report.html", "the 30-day trend page: aggregates", NO_CUSTOMER_DATA, None, KEPT),
    Area("models/*/*", "registry versions: models, signed manifests, profiles and calibration (aggregates)",
         NO_CUSTOMER_DATA, None, KEPT),
    Area("champion.json", "the signed champion pointer", NO_CUSTOMER_DATA, None, KEPT),
    Area("shadow.json", "the signed shadow pointer", NO_CUSTOMER_DATA, None, KEPT),
    Area("audit/champion/*.json", "signed, write-once records of champion changes", NO_CUSTOMER_DATA, None, KEPT),
    Area("audit/retention/*.json", "what retention deleted: counts and run names", NO_CUSTOMER_DATA, None, KEPT),
    Area(f"{REQUESTS}/*", "an erasure request: plaintext ids", REQUEST, "text", HANDLED),
    Area(f"{RECEIPTS}/*.json", "signed, write-once erasure receipts: keyed hashes, counts, never an id",
         NO_CUSTOMER_DATA, None, KEPT),
)


def area_of(relative_key: str) -> Area:
    """The declared area of a key relative to the prefix; `UnknownArea` when none declares it."""
    for area in AREAS:
        if fnmatch.fnmatchcase(relative_key, area.pattern):
            return area
    raise UnknownArea(f"{relative_key!r} is in no area of the storage layout (cross_sell.storage.layout): nobody can "
                      "say whether it holds customer data; declare it there (or remove it) before erasing")


def relative(prefix: str, key: str) -> str:
    root = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    if not key.startswith(root):
        raise UnknownArea(f"{key!r} is not under the prefix {root!r}")
    return key[len(root):]


# -- MongoDB -----------------------------------------------------------------------------------------
ERASE = "deleted"
SUPPRESSION = "kept: keyed hashes"


@dataclass(frozen=True)
class MongoArea:
    """A MongoDB collection of the customers' database; its name is the setting `setting`."""

    setting: str
    holds: str
    action: str  # ERASE: the customer's documents are deleted | SUPPRESSION: the suppression list itself
    match: tuple[str, ...]  # the fields a customer is matched by (ERASE)
    features: bool = False  # holds the customer's feature row (read before deletion: serving samples)
    consent: bool = False  # holds the marketing choice (an opt-out is kept, hashed, in the suppression list)


MONGO: tuple[MongoArea, ...] = (
    MongoArea("mongo_collection", "the customer rows (id, the 10 features, the label)", ERASE, ("id", "_id"),
              features=True),
    MongoArea("scores_collection", "the latest score per customer, for the CRM", ERASE, ("id", "_id")),
    MongoArea("outcomes_collection", "what a contacted customer did (id, Response, observed_at)", ERASE,
              ("id", "_id")),
    MongoArea("consent_collection", "the marketing choice (id, contact_allowed, updated_at)", ERASE, ("id", "_id"),
              consent=True),
    MongoArea("contacts_collection", "who was called when (id, contacted_at)", ERASE, ("id", "_id")),
    MongoArea("erased_collection", "the suppression list: keyed hashes of erased ids and kept opt-outs", SUPPRESSION,
              ()),
)


@dataclass(frozen=True)
class Collection:
    """A collection of the layout by its configured name, and an open handle to it."""

    name: str
    area: MongoArea
    handle: Any


def mongo_collections(settings) -> dict[str, MongoArea]:
    """Configured collection name -> its declaration."""
    named = {getattr(settings, area.setting): area for area in MONGO}
    if len(named) != len(MONGO):
        raise NotRetryable("two of the customer collections are configured with the same name: "
                           + ", ".join(f"{a.setting}={getattr(settings, a.setting)}" for a in MONGO))
    return named


def erasure_collections(settings, open_collection: Callable[[str], Any]) -> list[Collection]:
    """Every collection erasure deletes a customer's documents from, opened with `open_collection(name)`."""
    return [Collection(name, area, open_collection(name)) for name, area in mongo_collections(settings).items()
            if area.action == ERASE]


# -- the docs' table -------------------------------------------------------------------------------
def markdown_table(settings) -> str:
    """The table of docs/data-governance.md ("What holds customer data"), made from the declarations."""
    lines = ["| where | holds | erasure finds a customer by | kept |", "| --- | --- | --- | --- |"]
    for name, collection in mongo_collections(settings).items():
        found = " and ".join(f"`{field}`" for field in collection.match) if collection.action == ERASE \
            else "its keyed hash"
        kept = "until erased" if collection.action == ERASE else "kept"
        lines.append(f"| `{name}` (MongoDB) | {collection.holds} | {found} | {kept} |")
    for area in AREAS:
        found = {BY_ID: "`id`", BY_FEATURES: "the feature row (read from MongoDB before deletion)",
                 REQUEST: "deleted once handled (a dry run's too)", NO_CUSTOMER_DATA: "holds none"}[area.how]
        kept = {KEPT: "kept", HANDLED: "until handled"}.get(area.retention, f"retention: {area.retention}")
        lines.append(f"| `{area.pattern}` | {area.holds} | {found} | {kept} |")
    return "\n".join(lines)
