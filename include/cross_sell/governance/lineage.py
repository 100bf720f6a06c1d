"""Where a registry version came from and where it went: `python -m cross_sell lineage VERSION`.

Upstream, from its signed manifest: the snapshot and splits (sha256, checked against the objects now),
the snapshot's validation verdict, the run, its params, code and library versions, the approver.
Downstream, from the bucket: the periods it served as champion (the signed audit trail), whether it is
the shadow, and every scoring run that used it with its campaign list. The same facts reach an
OpenLineage backend (Marquez) as events while the DAGs run; this command needs only S3.
"""

from __future__ import annotations

from typing import cast

from ..contracts import Artifact
from ..storage import objects
from ..storage.artifacts import RunArtifacts
from ..storage.objects import CustodyError
from ..storage.registry import ModelRegistry
from . import provenance

MAX_SCORING_RUNS = 1000  # summaries read at most (newest first)


def _verified(registry: ModelRegistry, artifact: dict | None) -> dict | None:
    """The recorded object with whether it still is the recorded bytes (retention or an erasure may have
    removed or rewritten it since: that is said, not raised)."""
    if not artifact:
        return None
    import tempfile
    from pathlib import Path

    try:
        with tempfile.TemporaryDirectory() as tmp:  # streamed to disk, hashed, bounded by the recorded size
            objects.download_artifact(registry.s3, registry.bucket, cast(Artifact, artifact), Path(tmp) / "object")
        state = "verified"
    except CustodyError as error:
        state = f"differs: {error}"
    except Exception as error:  # noqa: BLE001 - absent (retention), or unreadable: reported
        state = f"unavailable: {type(error).__name__}"
    return {**artifact, "uri": registry.uri(artifact["key"]), "now": state}


def upstream(registry: ModelRegistry, version: str, prefix: str) -> dict:
    manifest = registry.manifest(version)
    lineage = manifest.get("lineage", {})
    run = RunArtifacts(registry.s3, registry.bucket, prefix, manifest["run_id"])
    validation = lineage.get("validation")
    verdict = None
    if validation:
        try:
            summary = run.read_json(validation)
            verdict = {"success": summary.get("success"), "statistics": summary.get("statistics"),
                       "report": run.uri(summary["report_key"]) if summary.get("report_key") else None}
        except Exception as error:  # noqa: BLE001
            verdict = {"unavailable": f"{type(error).__name__}: {error}"}
    recorded = provenance.of_manifest(manifest)  # the one provenance record, as signed
    return {
        **{name: recorded[name] for name in provenance.WHENCE + provenance.WITH if name != "lineage"},
        "snapshot": _verified(registry, lineage.get("snapshot")),
        "splits": {name: _verified(registry, split) for name, split in lineage.get("splits", {}).items()},
        "validation": {**(_verified(registry, validation) or {}), "verdict": verdict} if validation else None,
        "params": {**{name: recorded[name] for name in provenance.HOW},
                   "max_equalized_odds_difference": manifest.get("max_equalized_odds_difference")},
        "decision_reason": manifest.get("decision_reason"),
        "replaced_champion": manifest.get("replaced_champion"),
        "approval": manifest.get("approval"),
    }


def champion_periods(registry: ModelRegistry, version: str) -> list[dict]:
    """Each stretch of the audit trail in which `version` was the champion: from, until (None: now), how."""
    history = registry.history()
    periods = []
    for record, following in zip(history, [*history[1:], None], strict=True):
        if record["version"] == version:
            periods.append({"from": record["updated_at"], "until": following["updated_at"] if following else None,
                            "sequence": record["sequence"], "action": record["action"], "by": record.get("by"),
                            "run_id": record.get("run_id")})
    return periods


def scoring_runs(registry: ModelRegistry, version: str, prefix: str) -> list[dict]:
    """Scoring runs whose summary names `version`, newest first, with their campaign list."""
    root = f"{prefix}/scores/"
    keys = []
    for page in registry.s3.get_paginator("list_objects_v2").paginate(Bucket=registry.bucket, Prefix=root):
        keys += [item["Key"] for item in page.get("Contents", []) if item["Key"].endswith("/summary.json")]
    found = []
    import json

    for key in sorted(keys, reverse=True)[:MAX_SCORING_RUNS]:
        body, _ = objects.read(registry.s3, registry.bucket, key)
        summary = json.loads(body)
        if summary.get("model_version") != version:
            continue
        folder = key.rsplit("/", 1)[0]
        campaign = f"{folder}/campaign.csv"
        try:
            registry.s3.head_object(Bucket=registry.bucket, Key=campaign)
            campaign_uri = registry.uri(campaign)
        except Exception:  # noqa: BLE001 - no campaign list (or removed by retention)
            campaign_uri = None
        found.append({"run": folder.rsplit("/", 1)[1], "scored_at": summary.get("scored_at"),
                      "rows": summary.get("rows"), "excluded": summary.get("excluded"),
                      "scores": registry.uri(f"{folder}/scores.parquet"), "campaign": campaign_uri})
    return found


def of_version(registry: ModelRegistry, version: str, prefix: str) -> dict:
    shadow = registry.shadow()
    return {
        "version": version,
        "upstream": upstream(registry, version, prefix),
        "downstream": {
            "champion_periods": champion_periods(registry, version),
            "shadow_now": bool(shadow and shadow.version == version),
            "scoring_runs": scoring_runs(registry, version, prefix),
        },
    }
