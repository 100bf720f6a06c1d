"""Retention: how long each class of data is kept, declared once (`Policy`, from the settings) and enforced
twice.

* runs, `runs/<run>/` (snapshot, splits, the candidate's files, reports): `retention_runs_days`, and for as
  long as the champion, the shadow or one of the last `retention_keep_versions` registry versions was
  trained on it (those models stay reproducible);
* scores, `scores/<run>/` (scores, campaign lists, quarantine files): `retention_scores_days`; the latest
  scoring run always (monitoring joins outcomes with it);
* serving samples, `serving-samples/date=<day>/`: `retention_samples_days`;
* reports, `monitoring/daily/<day>.json`: `retention_reports_days`;
* kept for good: `models/`, `audit/`, `erasure/receipts/`, the pointers, `monitoring/report.html`.

The areas are `cross_sell.storage.layout`'s. Which versions stay restorable is one rule (`restorable`): served as
champion before, not the current shadow, its training run still kept here (so `reproduce` works), and not
trained on customers erased since. A run is deleted only by the same test that rule uses, and
`ModelRegistry.rollback` refuses (without `force`) a version the rule does not keep, naming why.

1. **S3 lifecycle rules** (`lifecycle_rules`; `minio-init` installs them, docs/data-governance.md gives them
   for AWS): scores, serving samples and reports expire by age; every older (noncurrent) version of
   anything under the four classes goes a day after it was replaced; expired delete markers are removed.
2. **The `cross_sell_housekeeping` DAG** (daily) and `python -m cross_sell retention plan|apply`, for what a
   lifecycle rule cannot express: a run is deleted (every version) only once no kept model was trained
   on it, and the newest scoring run is kept. Deleting needs the housekeeping user's rights
   (docker/minio/housekeeping-policy.json); the training side can never delete. Each `apply` leaves a
   record under `audit/retention/` (counts and run names, no customer data).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .. import clock
from ..contracts import Retained
from ..storage import layout, objects
from ..storage.artifacts import safe_run_id

log = logging.getLogger(__name__)

NONCURRENT_DAYS = 1  # an older version of a retained object (rewritten by erasure, or overwritten)


@dataclass(frozen=True)
class Policy:
    runs_days: float = 90
    scores_days: float = 90
    samples_days: float = 30
    reports_days: float = 400
    keep_versions: int = 3

    @classmethod
    def from_settings(cls, settings) -> "Policy":
        return cls(settings.retention_runs_days, settings.retention_scores_days, settings.retention_samples_days,
                   settings.retention_reports_days, settings.retention_keep_versions)


def _root(prefix: str, area: str) -> str:
    return objects.folder(prefix, area)


def lifecycle_rules(policy: Policy, prefix: str) -> dict:
    """The bucket lifecycle configuration (S3 / MinIO JSON) that enforces what an age alone can decide."""
    rules = []
    for name, area, days in (("scores", layout.RETENTION_ROOTS[layout.SCORES], policy.scores_days),
                             ("serving-samples", layout.RETENTION_ROOTS[layout.SAMPLES], policy.samples_days),
                             ("reports", layout.RETENTION_ROOTS[layout.REPORTS], policy.reports_days)):
        rules.append({"ID": f"cross-sell-{name}", "Status": "Enabled", "Filter": {"Prefix": _root(prefix, area)},
                      "Expiration": {"Days": int(days)},
                      "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_DAYS}})
    # Runs: the current versions are the housekeeping DAG's (a kept model's training data stays).
    rules.append({"ID": "cross-sell-runs-older-versions", "Status": "Enabled",
                  "Filter": {"Prefix": _root(prefix, layout.RETENTION_ROOTS[layout.RUNS])},
                  "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_DAYS}})
    rules.append({"ID": "cross-sell-expired-delete-markers", "Status": "Enabled",
                  "Filter": {"Prefix": _root(prefix, "")}, "Expiration": {"ExpiredObjectDeleteMarker": True}})
    return {"Rules": rules}


@dataclass
class Deletion:
    """One unit to delete (a run's folder, a day of samples, a monitoring day) and why."""

    data_class: str
    unit: str
    reason: str
    versions: list[dict] = field(default_factory=list)  # {"Key", "VersionId"}, delete markers included
    bytes: int = 0


@dataclass
class Plan:
    deletions: list[Deletion]
    kept: dict[str, str]  # protected unit -> why
    restorable: dict[str, str] = field(default_factory=dict)  # versions a rollback may restore -> why

    def summary(self) -> dict:
        by_class: dict[str, dict] = {}
        for d in self.deletions:
            entry = by_class.setdefault(d.data_class, {"units": [], "object_versions": 0, "bytes": 0})
            entry["units"].append(d.unit)
            entry["object_versions"] += len(d.versions)
            entry["bytes"] += d.bytes
        return {"delete": by_class, "kept_because": self.kept, "restorable": self.restorable}


def _folders(s3, bucket: str, root: str) -> dict[str, dict]:
    """Each folder (or file) directly under `root`: every version and delete marker in it, its oldest and
    newest modification time and size."""
    found: dict[str, dict] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=root):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            unit = item["Key"][len(root):].split("/", 1)[0]
            entry = found.setdefault(unit, {"versions": [], "first": item["LastModified"],
                                            "last": item["LastModified"], "bytes": 0})
            entry["versions"].append({"Key": item["Key"], "VersionId": item["VersionId"]})
            entry["first"] = min(entry["first"], item["LastModified"])
            entry["last"] = max(entry["last"], item["LastModified"])
            entry["bytes"] += item.get("Size", 0)
    return found


@dataclass
class Restorable:
    """The one rule of which versions stay restorable (`restorable`), and the runs retention keeps."""

    versions: dict[str, str]  # version a rollback may restore without `force` -> why
    refused: dict[str, str]  # version that served (or is named) but may not be restored -> why not
    runs: dict[str, str]  # run folder a kept model was trained on -> which (retention keeps it whatever its age)


def _protected(registry, keep_versions: int) -> dict[str, str]:
    """Run folders (safe run ids) of the champion, the shadow and the last `keep_versions` registry versions."""
    why: dict[str, list[str]] = {}

    def protect(version: str | None, role: str) -> None:
        if not version:
            return
        manifest = registry.manifest(version)  # verified: a planted manifest protects nothing
        run = manifest.get("run_id")
        if run:
            why.setdefault(safe_run_id(run), []).append(f"{role} {version}")

    champion = registry.champion()
    protect(champion.version if champion else None, "the champion")
    shadow = registry.shadow()
    protect(shadow.version if shadow else None, "the shadow")
    for version in registry.versions()[-keep_versions:] if keep_versions > 0 else []:
        protect(version, "a recent version,")
    return {run: "; ".join(roles) for run, roles in why.items()}


def protected_runs(registry, keep_versions: int) -> dict[str, str]:
    """Run folders (safe run ids) a kept model was trained on: the champion's, the shadow's and those of the
    last `keep_versions` registry versions."""
    return _protected(registry, keep_versions)


def _run_kept(entry: dict | None, run: str, protected: dict[str, str], policy: Policy, now: datetime) -> str | None:
    """Why retention keeps a run folder now (None: it deletes it, or it is gone). The one test `plan` and
    `restorable` share."""
    if entry is None:
        return None
    if run in protected:
        return f"trained {protected[run]}"
    if now - entry["first"] <= timedelta(days=policy.runs_days):
        return f"younger than {policy.runs_days:g} days"
    return None


def _data_problem(s3, bucket: str, lineage: dict) -> str | None:
    """What is wrong with a version's recorded training data in the bucket (None: the recorded sizes)."""
    from botocore.exceptions import ClientError

    recorded = [lineage["snapshot"], *(lineage.get("splits") or {}).values()]
    for artifact in recorded:
        try:
            size = s3.head_object(Bucket=bucket, Key=artifact["key"])["ContentLength"]
        except ClientError:
            return f"has lost its training data {artifact['key']}"
        if size != artifact["bytes"]:
            return (f"has training data ({artifact['key']}) that is no longer the recorded bytes (rewritten by an "
                    "erasure, or changed): `reproduce` would fail")
    return None


def restorable(registry, policy: Policy, now: datetime | None = None,
               runs: dict[str, dict] | None = None) -> Restorable:
    """Which versions stay restorable: a version that served as champion before, is not the current champion
    or shadow, whose training run retention still keeps (so `reproduce` works: its snapshot and splits are
    the recorded bytes), and that was not trained on customers erased since (an erasure receipt names it).
    Retention keeps the runs of every such version (they are kept by the same test, `_run_kept`), and
    `ModelRegistry.rollback` refuses, without `force`, any other, naming why. `runs`: the run folders
    (`_folders`), when the caller has listed them."""
    from ..storage.registry import RegistryError
    from ..storage.signing import SignatureError
    from . import receipts

    now = now or clock.now()
    s3, bucket, prefix = registry.s3, registry.bucket, registry.prefix
    if runs is None:
        runs = _folders(s3, bucket, _root(prefix, layout.RETENTION_ROOTS[layout.RUNS]))
    protected = _protected(registry, policy.keep_versions)
    champion, shadow = registry.champion(), registry.shadow()
    records, _ = receipts.verified(s3, bucket, prefix, registry.verifier)  # the daily check reports the others
    erased_from = receipts.models_erased_from(records)
    versions: dict[str, str] = {}
    refused: dict[str, str] = {}
    for version in sorted(registry.served_versions()):
        if champion is not None and version == champion.version:
            refused[version] = "is the current champion"
            continue
        if shadow is not None and version == shadow.version:
            refused[version] = "is the current shadow (a challenger that did not win its comparison)"
            continue
        if version in erased_from:
            refused[version] = (f"was trained on customers erased since (erasure receipt {erased_from[version]}): "
                                "its training data no longer holds them")
            continue
        try:
            manifest = registry.manifest(version)
        except (RegistryError, SignatureError) as error:
            refused[version] = f"has a manifest that cannot be verified ({error})"
            continue
        lineage, run = manifest.get("lineage") or {}, manifest.get("run_id")
        if not run or not lineage.get("snapshot"):
            refused[version] = "records no training run and data in its manifest: it cannot be reproduced"
            continue
        unit = safe_run_id(run)
        kept = _run_kept(runs.get(unit), unit, protected, policy, now)
        if kept is None:
            refused[version] = (f"has lost its training run runs/{unit}" if unit not in runs else
                                f"has a training run (runs/{unit}) older than {policy.runs_days:g} days that no "
                                "kept model needs: retention deletes it")
            continue
        problem = _data_problem(s3, bucket, lineage)
        if problem:
            refused[version] = problem
            continue
        versions[version] = f"served as champion; its run runs/{unit} is kept ({kept})"
    return Restorable(versions, refused, protected)


def plan(s3, bucket: str, prefix: str, registry, policy: Policy, now: datetime | None = None) -> Plan:
    """What retention deletes now (nothing is deleted here). A run goes only when `restorable`'s test
    (`_run_kept`) says so: no version that stays restorable loses its training data."""
    now = now or clock.now()
    kept = {}
    deletions = []
    folders = _folders(s3, bucket, _root(prefix, layout.RETENTION_ROOTS[layout.RUNS]))
    rule = restorable(registry, policy, now, folders)
    for run, entry in sorted(folders.items()):
        why = _run_kept(entry, run, rule.runs, policy, now)
        if why is None:
            deletions.append(Deletion("runs", run, f"older than {policy.runs_days:g} days and no kept model's data",
                                      entry["versions"], entry["bytes"]))
        elif run in rule.runs and now - entry["first"] > timedelta(days=policy.runs_days):
            kept[f"runs/{run}"] = why
    scoring = _folders(s3, bucket, _root(prefix, layout.RETENTION_ROOTS[layout.SCORES]))
    newest = max(scoring, key=lambda run: scoring[run]["last"], default=None)
    for run, entry in sorted(scoring.items()):
        if now - entry["first"] <= timedelta(days=policy.scores_days):
            continue
        if run == newest:
            kept[f"scores/{run}"] = "the latest scoring run (monitoring joins outcomes with it)"
            continue
        deletions.append(Deletion("scores", run, f"older than {policy.scores_days:g} days", entry["versions"],
                                  entry["bytes"]))
    for data_class, days in ((layout.SAMPLES, policy.samples_days), (layout.REPORTS, policy.reports_days)):
        for unit, entry in sorted(_folders(s3, bucket, _root(prefix, layout.RETENTION_ROOTS[data_class])).items()):
            if now - entry["first"] > timedelta(days=days):
                deletions.append(Deletion(data_class, unit, f"older than {days:g} days", entry["versions"],
                                          entry["bytes"]))
    return Plan(deletions, kept, rule.versions)


def apply(s3, bucket: str, prefix: str, planned: Plan, by: str) -> Retained:
    """Delete every version planned, then record what went under audit/retention/. One request per version:
    a policy that allows deleting only under some prefixes (the housekeeping user's) is judged per object
    that way everywhere, where moto judges a multi-object delete against the bucket."""
    deleted = 0
    for version in (v for d in planned.deletions for v in d.versions):
        s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
        deleted += 1
    at = clock.now()
    record = {"kind": "retention", "at": at.isoformat(timespec="seconds"), "by": by,
              "deleted_object_versions": deleted, **planned.summary()}
    key = objects.join_key(prefix, "audit", "retention", f"{at:%Y%m%dT%H%M%S%fZ}.json")
    objects.put(s3, bucket, key, json.dumps(record, indent=2, default=str).encode(), "application/json",
                IfNoneMatch="*")
    log.info("retention: deleted %s object versions (%s); record %s", f"{deleted:,}",
             {k: len(v["units"]) for k, v in record["delete"].items()}, key)
    return Retained(kind="retention", at=record["at"], by=by, deleted_object_versions=deleted,
                    delete=record["delete"], kept_because=record["kept_because"], restorable=record["restorable"],
                    record_key=key)


def planned(clients) -> dict:
    """The `retention plan` operation: the deployment's policy and what it would delete now (nothing is)."""
    registry, policy = clients.housekeeping_registry, Policy.from_settings(clients.settings)
    found = plan(registry.s3, registry.bucket, registry.prefix, registry, policy)
    return {"policy": policy.__dict__, **found.summary()}


def run(clients, by: str, dry_run: bool = False) -> Retained:
    """The retention operation (the `cross_sell_housekeeping` DAG and `python -m cross_sell retention apply`):
    the deployment's policy planned through the housekeeping user's registry (`cross_sell.clients.Clients`),
    then, unless a dry run, applied."""
    registry, policy = clients.housekeeping_registry, Policy.from_settings(clients.settings)
    planned = plan(registry.s3, registry.bucket, registry.prefix, registry, policy)
    summary = planned.summary()
    log.info("retention plan: %s", json.dumps(summary, default=str))
    if dry_run:
        return Retained(dry_run=True, delete=summary["delete"], kept_because=summary["kept_because"],
                        restorable=summary["restorable"])
    return apply(registry.s3, registry.bucket, registry.prefix, planned, by)
