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

from . import clock, objects
from .artifacts import safe_run_id
from .contracts import Retained

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
    for name, area, days in (("scores", "scores/", policy.scores_days),
                             ("serving-samples", "serving-samples/", policy.samples_days),
                             ("reports", "monitoring/daily/", policy.reports_days)):
        rules.append({"ID": f"cross-sell-{name}", "Status": "Enabled", "Filter": {"Prefix": _root(prefix, area)},
                      "Expiration": {"Days": int(days)},
                      "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_DAYS}})
    # Runs: the current versions are the housekeeping DAG's (a kept model's training data stays).
    rules.append({"ID": "cross-sell-runs-older-versions", "Status": "Enabled",
                  "Filter": {"Prefix": _root(prefix, "runs/")},
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

    def summary(self) -> dict:
        by_class: dict[str, dict] = {}
        for d in self.deletions:
            entry = by_class.setdefault(d.data_class, {"units": [], "object_versions": 0, "bytes": 0})
            entry["units"].append(d.unit)
            entry["object_versions"] += len(d.versions)
            entry["bytes"] += d.bytes
        return {"delete": by_class, "kept_because": self.kept}


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


def protected_runs(registry, keep_versions: int) -> dict[str, str]:
    """Run folders (safe run ids) a kept model was trained on: the champion's, the shadow's and those of the
    last `keep_versions` registry versions."""
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


def plan(s3, bucket: str, prefix: str, registry, policy: Policy, now: datetime | None = None) -> Plan:
    """What retention deletes now (nothing is deleted here)."""
    now = now or clock.now()
    kept = {}
    deletions = []
    protected = protected_runs(registry, policy.keep_versions)
    for run, entry in sorted(_folders(s3, bucket, _root(prefix, "runs/")).items()):
        if now - entry["first"] <= timedelta(days=policy.runs_days):
            continue
        if run in protected:
            kept[f"runs/{run}"] = f"trained {protected[run]}"
            continue
        deletions.append(Deletion("runs", run, f"older than {policy.runs_days:g} days and no kept model's data",
                                  entry["versions"], entry["bytes"]))
    scoring = _folders(s3, bucket, _root(prefix, "scores/"))
    newest = max(scoring, key=lambda run: scoring[run]["last"], default=None)
    for run, entry in sorted(scoring.items()):
        if now - entry["first"] <= timedelta(days=policy.scores_days):
            continue
        if run == newest:
            kept[f"scores/{run}"] = "the latest scoring run (monitoring joins outcomes with it)"
            continue
        deletions.append(Deletion("scores", run, f"older than {policy.scores_days:g} days", entry["versions"],
                                  entry["bytes"]))
    for area, data_class, days in (("serving-samples/", "serving_samples", policy.samples_days),
                                   ("monitoring/daily/", "reports", policy.reports_days)):
        for unit, entry in sorted(_folders(s3, bucket, _root(prefix, area)).items()):
            if now - entry["first"] > timedelta(days=days):
                deletions.append(Deletion(data_class, unit, f"older than {days:g} days", entry["versions"],
                                          entry["bytes"]))
    return Plan(deletions, kept)


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
                    delete=record["delete"], kept_because=record["kept_because"], record_key=key)


def run(registry, policy: Policy, by: str, dry_run: bool = False) -> Retained:
    """The `cross_sell_housekeeping` DAG's stage: plan, then (unless a dry run) apply."""
    planned = plan(registry.s3, registry.bucket, registry.prefix, registry, policy)
    summary = planned.summary()
    log.info("retention plan: %s", json.dumps(summary, default=str))
    if dry_run:
        return Retained(dry_run=True, delete=summary["delete"], kept_because=summary["kept_because"])
    return apply(registry.s3, registry.bucket, registry.prefix, planned, by)
