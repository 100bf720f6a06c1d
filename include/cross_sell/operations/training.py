"""The training pipeline's stages as plain functions: S3 clients and documents in, typed records out.

The Airflow DAGs call these inside `cross_sell_airflow.stage.stage_run`, with clients built from their
connections; tests and benchmarks call them directly. Large data only moves through S3 under the run's
prefix (`RunArtifacts`); what each stage returns (`contracts`) is small enough for XCom. Every stage
rewrites the same keys when re-run, so clearing a task reproduces its result. A failure that retrying
cannot fix raises a `NotRetryable` (bad data, drift when told to fail, a broken signature).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from ..contracts import (
    ApprovalRequest,
    Artifact,
    Decision,
    DriftChecked,
    Extracted,
    Lineage,
    Pushed,
    RolledBack,
    Shadowed,
    Splits,
    Trained,
    Transformed,
    Validated,
)
from ..data import schema, snapshot
from ..errors import NotRetryable
from ..governance import approval, provenance
from ..model import evaluation, fairness, features, model_families, model_input, onnx_export, report, training
from ..model.onnx_model import OnnxModel
from ..monitoring import drift
from ..privacy.suppression import Suppression
from ..storage.artifacts import RunArtifacts
from ..storage.registry import Champion, ChampionChanged, IntegrityError, ModelRegistry, PointerError, RegistryError
from ..storage.signing import ManifestSigner, SignatureError

log = logging.getLogger(__name__)

RAW = ("raw", "snapshot.parquet")
SPLIT_ROW_GROUP = 50_000  # rows per row group of the split files


class Inconsistent(NotRetryable):
    """The records a task received are not about the same data or candidate: a task was re-run (cleared)
    without the tasks that judged its earlier result."""


def check_consistent(*, extracted: Extracted, transformed: Transformed | None = None, trained: Trained | None = None,
                     validated: Validated | None = None, drift: DriftChecked | None = None,
                     decision: Decision | None = None) -> None:
    """Inconsistent unless every record is about the one snapshot, its splits and one candidate: a decision
    judges exactly the trained candidate (by version and bytes), validation and drift checked the snapshot the
    splits and the candidate came from. Each record is sealed by its task; this binds them to each other."""
    def differ(what: str, one, other) -> None:
        if one != other:
            raise Inconsistent(f"{what} differ ({one} vs {other}): a task was re-run without the tasks after it; "
                               "clear it with its downstream tasks (nothing is pushed on mismatched records)")

    snapshot = extracted["snapshot"]
    if transformed is not None:
        differ("the extracted and the split snapshots", snapshot, transformed["snapshot"])
    if trained is not None:
        differ("the extracted snapshot and the candidate's training data", snapshot, trained["lineage"]["snapshot"])
        if transformed is not None:
            differ("the splits and the candidate's splits", transformed["splits"], trained["lineage"]["splits"])
    for name, record in (("validated", validated), ("drift-checked", drift)):
        if record is not None:
            differ(f"the extracted and the {name} snapshots", snapshot, record.get("snapshot"))
    if decision is not None and trained is not None:
        differ("the judged and the trained candidates", (decision["candidate_version"], decision["candidate_sha256"]),
               (trained["version"], trained["model"]["sha256"]))


def _read_snapshot(artifacts: RunArtifacts, snapshot_ref: Artifact, tmp: str):
    return snapshot.read(str(artifacts.download(snapshot_ref, Path(tmp) / "snapshot.parquet")))


def extract(documents: Iterable[dict], artifacts: RunArtifacts, chunk_rows: int = snapshot.CHUNK_ROWS,
            suppression: Suppression | None = None) -> Extracted:
    """Stream the customers into the run's snapshot; erased customers (`suppression`) are left out."""
    suppressed = [0]
    if suppression is not None:
        documents = suppression.filter(documents, suppressed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snapshot.parquet"
        stats = snapshot.write(documents, str(path), chunk_rows=chunk_rows)
        written = artifacts.upload_file(path, *RAW)
    result = Extracted(snapshot=written, rows=stats.rows, invalid_rows=stats.invalid_rows,
                       fingerprint=stats.fingerprint, suppressed=suppressed[0])
    if suppressed[0]:
        log.warning("left out %s erased customer(s) still in the collection (the suppression list)", suppressed[0])
    artifacts.put_json(result, "raw", "snapshot.json")
    log.info("extracted %s rows (%s with wrongly typed values) to %s, fingerprint %s, sha256 %s",
             stats.rows, stats.invalid_rows, artifacts.uri(written["key"]), stats.fingerprint, written["sha256"])
    return result


def validate(artifacts: RunArtifacts, snapshot_ref: Artifact, min_rows: int) -> Validated:
    """Validate the snapshot; the result JSON, the HTML report and GX's Data Docs are saved whatever
    the verdict. `validation/report.html` is self-contained (readable offline); GX's Data Docs load
    their styles from public CDNs."""
    from ..data.validation import DataValidationError, run_suite

    with tempfile.TemporaryDirectory() as tmp:
        frame = _read_snapshot(artifacts, snapshot_ref, tmp)
        outcome = run_suite(frame, min_rows=min_rows, docs_dir=Path(tmp) / "data_docs")
        result_key = artifacts.put_json(outcome.result, "validation", "result.json")["key"]
        docs_key = artifacts.upload_dir(Path(tmp) / "data_docs", "validation", "data_docs")
    data_docs_key, report_key = f"{docs_key}/index.html", artifacts.key("validation", "report.html")
    summary = {
        "success": outcome.success,
        "statistics": outcome.statistics,
        "failures": [{k: f[k] for k in ("expectation", "detail", "sample")} for f in outcome.failures],
        "result_key": result_key,
        "data_docs_key": data_docs_key,
        "report_key": report_key,
    }
    run = {"run_id": artifacts.run_id, "data_docs_uri": artifacts.uri(data_docs_key),
           "result_uri": artifacts.uri(result_key)}
    html = report.validation_report(summary, outcome.result, run)
    page = artifacts.put_bytes(html.encode(), "text/html", "validation", "report.html")
    saved = artifacts.put_json(summary, "validation", "summary.json")
    if not outcome.success:
        raise DataValidationError(
            f"raw snapshot {artifacts.uri(snapshot_ref['key'])} failed validation: {outcome.summary()}\n"
            f"report: {artifacts.uri(report_key)}\nresult: {artifacts.uri(result_key)}"
        )
    log.info("validation passed: %s; report at %s", outcome.summary(), artifacts.uri(report_key))
    return Validated(snapshot=snapshot_ref, success=outcome.success, result_key=result_key, report_key=report_key,
                     report=page, data_docs_key=data_docs_key, summary=saved)


def check_drift(artifacts: RunArtifacts, registry: ModelRegistry, snapshot_ref: Artifact,
                thresholds: dict | None = None, action: str = "warn") -> DriftChecked:
    """Compare the snapshot with the champion's training profile; raw distances are always saved.

    `action` "fail" raises DriftError when a feature crosses its threshold, "warn" only logs it.
    """
    if action not in ("warn", "fail"):
        raise NotRetryable(f"drift action must be 'warn' or 'fail', not {action!r}")
    drift.check_thresholds(thresholds)  # before anything else: a misspelt feature fails the run at once
    try:
        version, reference = drift.reference_profile(registry)
    except LookupError as missing:
        result = DriftChecked(snapshot=snapshot_ref, checked=False, reason=str(missing), drifted=[])
        artifacts.put_json(result, "validation", "drift.json")
        log.info("drift check skipped: %s", result["reason"])
        return result
    with tempfile.TemporaryDirectory() as tmp:
        frame = _read_snapshot(artifacts, snapshot_ref, tmp)
    found = drift.compare(reference, frame, thresholds)
    report_key = artifacts.key("validation", "drift.json")
    artifacts.put_json({"checked": True, "champion_version": version, "action": action, **found.as_dict(),
                        "report_key": report_key}, "validation", "drift.json")
    log.info("drift against champion %s's training data:\n%s", version, found.table())
    if found.drifted:
        message = (f"drift in {', '.join(found.drifted)} against champion {version} "
                   f"(report: {artifacts.uri(report_key)})")
        if action == "fail":
            raise drift.DriftError(message)
        log.warning("%s; continuing (drift action 'warn')", message)
    return DriftChecked(snapshot=snapshot_ref, checked=True, champion_version=version, drifted=found.drifted,
                        report_key=report_key,
                        max_distance=max((f.distance for f in found.features), default=0.0))


def transform(artifacts: RunArtifacts, snapshot_ref: Artifact, seed: int, validated: Validated) -> Transformed:
    """The snapshot validation passed, split by `seed`. Not checked again: `validated` is the validate task's
    sealed verdict on this very snapshot, and custody checks that these are the bytes it judged."""
    if not validated.get("success") or validated.get("snapshot") != snapshot_ref:
        raise NotRetryable("transform splits only the snapshot that validation passed (its verdict "
                           f"{validated.get('success')!r} is about {validated.get('snapshot')})")
    with tempfile.TemporaryDirectory() as tmp:
        frame = _read_snapshot(artifacts, snapshot_ref, tmp)[schema.column_names(schema.TRAINING)]
        typed = {name: str(dtype) for name, dtype in frame.dtypes.items()}
        if typed != {c.name: c.pandas_dtype for c in schema.columns(schema.TRAINING)}:  # a null would show here
            raise NotRetryable(f"the validated snapshot's columns are not the contract's types: {typed}")
        parts = features.split(frame, seed)
        written: dict[str, Artifact] = {}
        for name, part in parts.items():
            path = Path(tmp) / f"{name}.parquet"
            # Row groups of bounded size: whoever streams a split (erasure) holds one group, not the split.
            part.to_parquet(path, index=False, row_group_size=SPLIT_ROW_GROUP)
            written[name] = artifacts.upload_file(path, "features", f"{name}.parquet")
    rows = {name: len(part) for name, part in parts.items()}
    log.info("split %s rows into %s (seed %s)", len(frame), rows, seed)
    splits = Splits(train=written["train"], validation=written["validation"], test=written["test"])
    return Transformed(splits=splits, snapshot=snapshot_ref, rows=rows, seed=seed)


def _read_split(artifacts: RunArtifacts, split: Artifact, tmp: str):
    import pandas as pd

    return pd.read_parquet(artifacts.download(split, Path(tmp) / Path(split["key"]).name))


@dataclass(frozen=True)
class Candidate:
    """What training computes from the splits (`fit_candidate`), before anything is written."""

    fitted: Any  # the estimator, with its out-of-fold record (`fitted.oof_`)
    threshold: float  # from its out-of-fold predictions
    exported: onnx_export.Export  # the ONNX file that would serve, its parity with the estimator, or why none
    profile: dict  # the reference profile of the rows it was fitted on (drift, skew)


def fit_candidate(train_frame, validation_frame, test_frame, seed: int, excluded: tuple[str, ...],
                  family: str) -> Candidate:
    """The train stage's compute, no I/O: fit `family` on train + validation with the threshold of its
    out-of-fold predictions (`training.train`), convert it to ONNX and measure the conversion on the test
    split (used for nothing else), profile the rows it was fitted on."""
    fitted = training.train(train_frame, validation_frame, seed, excluded, family=family)
    threshold = training.threshold(fitted)
    return Candidate(fitted, threshold, onnx_export.export(fitted, threshold, model_input.from_frame(test_frame)),
                     drift.profile(_concat(train_frame, validation_frame)))


def train(artifacts: RunArtifacts, transformed: Transformed, seed: int, run_started: datetime,
          exclude_features: tuple[str, ...] | list[str] = (), model: str | None = None) -> Trained:
    """The candidate of family `model` (default `CROSS_SELL_MODEL`) from the run's splits (`fit_candidate`),
    written: the estimator, its ONNX file, its profile and training record. `exclude_features`: features the
    model must not use (recorded; the input it takes stays the same)."""
    excluded = features.check_excluded(exclude_features)
    family = model_families.get(model)
    splits = transformed["splits"]
    with tempfile.TemporaryDirectory() as tmp:
        train_frame, validation_frame, test_frame = (_read_split(artifacts, splits[name], tmp)
                                                     for name in ("train", "validation", "test"))
        candidate = fit_candidate(train_frame, validation_frame, test_frame, seed, excluded, family.name)
        path = Path(tmp) / "model.joblib"
        training.save(candidate.fitted, str(path))
        estimator = artifacts.upload_file(path, "model", "model.joblib")
    profile = artifacts.put_json(candidate.profile, "model", "profile.json")
    exported, threshold = candidate.exported, candidate.threshold
    onnx = None
    if exported.onnx is not None:
        onnx = artifacts.put_bytes(exported.onnx, "application/octet-stream", "model", "model.onnx")
    trained = Trained(
        model=estimator, onnx=onnx, profile=profile, onnx_parity=exported.parity, serving_problem=exported.problem,
        version=training.version_for(run_started, estimator["sha256"]), threshold=threshold,
        trained_at=run_started.isoformat(), lineage=Lineage(snapshot=transformed["snapshot"], splits=splits),
        seed=seed, excluded_features=list(excluded), model_family=family.name,
        training=training.record(candidate.fitted, family.name))
    oof = candidate.fitted.oof_["metrics"]
    artifacts.put_json({**trained, "estimator_params": family.params, "out_of_fold_metrics": oof},
                       "model", "training.json")
    log.info("trained %s (%s): threshold %.4f, out-of-fold roc_auc %.4f f1 %.4f on %s rows; ONNX %s",
             trained["version"], family.name, threshold, oof["roc_auc"], oof["f1"], oof["rows"],
             exported.problem or f"parity {exported.parity}")
    return trained


def _concat(*frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def _candidate(artifacts: RunArtifacts, trained: Trained):
    """The candidate as it would serve (ONNX); when it has no faithful ONNX file, the run's own
    estimator, only to report on it: the one pickle the pipeline loads is the file this run's train
    task wrote, checked against the sha256 train recorded (through XCom, not S3)."""
    onnx = trained.get("onnx")
    if onnx and not trained.get("serving_problem"):
        return evaluation.ServedClassifier(OnnxModel(artifacts.read(onnx), trained["threshold"]))
    import io

    import joblib

    return joblib.load(io.BytesIO(artifacts.read(trained["model"])))


def _baseline(registry: ModelRegistry, artifacts: RunArtifacts, trained: Trained):
    """(pointer etag, version to compare the candidate with, why that champion cannot be trusted) from one
    read of the pointer: (None, None, None) before the first push."""
    try:
        champion = registry.champion()
    except PointerError as unreadable:
        return unreadable.etag, None, str(unreadable)
    if champion is None:
        return None, None, None
    baseline = champion.version
    if champion.version == trained["version"] and champion.pointer.get("run_id") == artifacts.run_id:
        # This run already promoted its candidate (evaluate was cleared after push): judge it again
        # against the model it replaced, so the re-run reaches the decision the first run did.
        return champion.etag, champion.pointer.get("previous_version"), None
    return champion.etag, baseline, _downgrade(registry, champion)


def _downgrade(registry: ModelRegistry, champion: Champion) -> str | None:
    """Why the pointer cannot be trusted as the newest change, if a newer one is on record."""
    problems = registry.audit_problems(champion)
    for problem in problems:
        log.warning("champion pointer: %s", problem)
    downgrades = [p.message for p in problems if p.kind == "downgrade"]
    return downgrades[0] if downgrades else None


def judge_candidate(candidate, champion, test_frame, gate: evaluation.Gate, *, baseline: str | None,
                    distrust: str | None, serving_problem: str | None) -> tuple[dict, evaluation.Verdict, dict | None]:
    """The evaluate stage's compute, no I/O: both models' facts on the test split (metrics, fairness,
    calibration; `champion` None when there is none or it cannot be trusted, `distrust` saying why) and the
    gate's verdict. Raises UnreadableChampion when the gate fails closed; the third: what of an unreadable champion the
    candidate replaces on the floor alone, as the gate allowed (None: it does not)."""
    facts = {"candidate": report.model_facts(candidate, test_frame)}
    if champion is not None:
        facts["champion"] = report.model_facts(champion, test_frame)
    replaced = gate.replaceable(baseline, distrust)  # fails closed unless the gate allows it
    if replaced:
        log.warning("replacing an unreadable champion (replace_unreadable_champion): %s", distrust)
    verdict = gate.judge(facts["candidate"], facts.get("champion"), serving_problem, replaced)
    for override in verdict.overrides:
        log.warning(override)
    return facts, verdict, replaced


def evaluate(artifacts: RunArtifacts, registry: ModelRegistry, trained: Trained, test: Artifact,
             gate: evaluation.Gate, validation: Artifact | None = None) -> Decision:
    """Score candidate and champion, both as they serve (ONNX), on the same test split; judge them by the
    run's `gate`; report.

    The gate fails closed (`Gate.replaceable`): when a pointer exists, its champion must verify and be scored
    on this split, or this raises UnreadableChampion, unless the gate lets the candidate replace it on the
    floor alone, which the decision and the audit record then say."""
    etag, baseline, distrust = _baseline(registry, artifacts, trained)
    with tempfile.TemporaryDirectory() as tmp:
        test_frame = _read_split(artifacts, test, tmp)
    champion = None
    if baseline is not None and distrust is None:
        try:
            champion = evaluation.ServedClassifier(registry.served_model(baseline)[0])
        except (RegistryError, IntegrityError, SignatureError) as error:  # e.g. saved by an older release
            distrust = f"champion {baseline} cannot be scored here ({error})"
    serving_problem = trained.get("serving_problem") or (None if trained.get("onnx") else "no ONNX file")
    facts, verdict, replaced = judge_candidate(_candidate(artifacts, trained), champion, test_frame, gate,
                                               baseline=baseline, distrust=distrust, serving_problem=serving_problem)
    facts_ref = artifacts.put_json({k: report.public(v) for k, v in facts.items()}, "evaluation", "facts.json")
    decision = Decision(
        bless=verdict.bless, reason=verdict.reason, challenger=verdict.challenger,
        primary_metric=evaluation.PRIMARY_METRIC, min_roc_auc=gate.min_roc_auc, margin=gate.margin,
        candidate_version=trained["version"], candidate_sha256=trained["model"]["sha256"],
        candidate=facts["candidate"]["metrics"],
        onnx_parity=trained.get("onnx_parity"), champion_version=baseline, champion_etag=etag,
        champion=facts["champion"]["metrics"] if "champion" in facts else None, replaced_unreadable=replaced,
        facts=facts_ref, fairness={name: fairness.summary(fact["fairness"]) for name, fact in facts.items()},
        max_equalized_odds_difference=gate.max_equalized_odds_difference, policy=gate.policy,
        fairness_gated=[a.name for a in schema.PROTECTED_ATTRIBUTES if a.gated],
        excluded_features=trained.get("excluded_features", []), validation=validation,
        report_key=artifacts.key("evaluation", "report.html"),
        evaluation_key=artifacts.key("evaluation", "decision.json"))
    _save_evaluation(artifacts, decision, facts, validation)
    log.info("decision: %s (%s)", "BLESS" if verdict.bless else "keep champion", verdict.reason)
    log.info("evaluation report: %s", artifacts.uri(decision["report_key"]))
    return decision


def _save_evaluation(artifacts: RunArtifacts, decision: Decision, facts: dict, validation: Artifact | None) -> None:
    """The HTML report and decision.json under evaluation/ (facts.json is written by `evaluate`)."""
    html = report.evaluation_report(decision, facts, {
        "run_id": artifacts.run_id, "validation": artifacts.read_json(validation) if validation else None,
        "validation_href": "../validation/report.html",
        "validation_uri": artifacts.uri(artifacts.key("validation", "report.html"))})
    artifacts.put_bytes(html.encode(), "text/html", "evaluation", "report.html")
    artifacts.put_json(decision, "evaluation", "decision.json")


def manifest_for(artifacts: RunArtifacts, decision: Decision, trained: Trained, extracted: Extracted) -> dict:
    """What the registry records of a pushed version (the artifacts' sha256 are added by `publish`): its
    provenance (`provenance.record`, the one record lineage, reproduce and MLflow read), how it serves, and
    how it was judged."""
    return {
        **provenance.record(artifacts.run_id, artifacts.uri(artifacts.root), trained, extracted,
                            decision.get("validation")),
        "version": trained["version"],
        "threshold": trained["threshold"],
        "metrics": decision["candidate"],
        "onnx_parity": trained["onnx_parity"],
        "replaced_champion": decision["champion_version"],
        "replaced_champion_metrics": decision["champion"],
        "replaced_unreadable_champion": decision.get("replaced_unreadable"),
        "decision_reason": decision["reason"],
        "features": list(schema.FEATURES),
        "model_input": model_input.LAYOUT,
        "fairness": decision["fairness"]["candidate"],
        "max_equalized_odds_difference": decision.get("max_equalized_odds_difference"),
        # The deployment policy in force when it was judged (the gates a run could only tighten).
        "policy": decision.get("policy"),
    }


def _publish(artifacts: RunArtifacts, registry: ModelRegistry, decision: Decision, trained: Trained,
             extracted: Extracted, signer: ManifestSigner, approved: dict | None = None) -> None:
    """The candidate as a registry version: its files, every one checked against what the task that
    wrote it recorded, then the signed manifest (immutable; a retry writes the same)."""
    onnx = trained["onnx"]
    if onnx is None:  # evaluate never blesses nor shadows such a candidate
        raise NotRetryable(f"candidate {trained['version']} has no ONNX file to publish")
    _check_new_version(registry, trained["version"], artifacts.run_id)
    manifest = {**manifest_for(artifacts, decision, trained, extracted), "approval": approved}
    facts = artifacts.read_json(decision["facts"])["candidate"]
    files = {
        registry.ONNX: artifacts.read(onnx),
        registry.ESTIMATOR: artifacts.read(trained["model"]),
        "profile.json": artifacts.read(trained["profile"]),
        "model_card.md": report.model_card(manifest, facts).encode(),
        "model_card.html": report.model_card_html(manifest, facts).encode(),  # the same card, escaped HTML
    }
    if facts.get("calibration"):  # the test split's calibration: batch scoring's expected buy rates
        files["calibration.json"] = json.dumps(facts["calibration"]).encode()
    registry.publish(manifest, files, signer)


def _check_not_served(registry: ModelRegistry, version: str, run_id: str) -> None:
    """A training run promotes a new version: one that served as champion before is restored only by the
    rollback DAG (its operators, its rules), never by a training run's records replayed (this run's own
    retry of a push that did move the pointer excepted)."""
    if version not in registry.served_versions():
        return
    try:
        current = registry.champion()
    except PointerError:
        current = None
    if current is None or current.version != version or current.pointer.get("run_id") != run_id:
        raise NotRetryable(f"version {version} served as champion before: a training run promotes only a new "
                           "version (restoring one is cross_sell_rollback's)")


def _check_new_version(registry: ModelRegistry, version: str, run_id: str) -> None:
    """A training run publishes its own new version, or the one it published on an earlier try: never one
    that exists from another run (a replayed run's records would re-promote it, and overwrite its manifest)."""
    if version not in registry.versions():
        return
    try:
        published_by = registry.manifest(version).get("run_id")
    except (RegistryError, IntegrityError, SignatureError) as unreadable:
        raise NotRetryable(f"version {version} exists and cannot be verified ({unreadable}); not overwriting it") \
            from None
    if published_by != run_id:
        raise NotRetryable(f"version {version} was published by run {published_by!r}, not this run {run_id!r}: a "
                           "training run publishes only its own new version (restoring an old one is the rollback "
                           "DAG's)")


def describe_for_approval(artifacts: RunArtifacts, decision: Decision, trained: Trained, extracted: Extracted,
                          drift: DriftChecked | None, link_seconds: int) -> ApprovalRequest:
    """The approval request: its markdown body (`approval.request_body`), with links valid `link_seconds` to
    the evaluation report and to the model card the version would be published with (saved beside it), and
    its subject (the candidate's files: what a signed approval is bound to)."""
    facts = artifacts.read_json(decision["facts"])["candidate"]
    manifest = manifest_for(artifacts, decision, trained, extracted)
    artifacts.put_bytes(report.model_card(manifest, facts).encode(), "text/markdown", "evaluation", "model_card.md")
    artifacts.put_bytes(report.model_card_html(manifest, facts).encode(), "text/html", "evaluation",
                        "model_card.html")
    expires = max(60, min(int(link_seconds), 7 * 24 * 3600))  # S3 presigned URLs live at most 7 days

    def link(key: str) -> str:
        return artifacts.s3.generate_presigned_url("get_object", Params={"Bucket": artifacts.bucket, "Key": key},
                                                   ExpiresIn=expires)

    links = {"evaluation report": link(decision["report_key"]),
             "model card": link(artifacts.key("evaluation", "model_card.html")),  # rendered, not raw markdown
             "run artifacts": artifacts.uri(artifacts.root)}
    return ApprovalRequest(body=approval.request_body(decision, drift, links),
                           subject=approval.push_subject(artifacts.run_id, trained))


def push(artifacts: RunArtifacts, registry: ModelRegistry, decision: Decision, trained: Trained,
         extracted: Extracted, signer: ManifestSigner, approved: dict | None = None) -> Pushed:
    """Publish the blessed model's version (files, then the signed manifest), then move the champion
    pointer: only if it is still the pointer whose champion `evaluate` scored (its etag), last.
    `approved`: the verified approval record (`approval.approval_record`) when the run required one."""
    version = trained["version"]
    if not decision["bless"]:  # should_push skips the task; a task run by hand must not push either
        raise NotRetryable(f"candidate {version} was not blessed ({decision['reason']}): nothing is pushed")
    _check_not_served(registry, version, artifacts.run_id)
    _publish(artifacts, registry, decision, trained, extracted, signer, approved)
    note: dict = {"policy": decision.get("policy")}
    if decision.get("replaced_unreadable"):
        note["replaced_unreadable_champion"] = decision["replaced_unreadable"]
    if approved:
        note["approval"] = approved
    try:
        pointer = registry.set_champion(version, decision["champion_etag"], "promote", signer,
                                        run_id=artifacts.run_id, reason=decision["reason"],
                                        by=approved["approved_by"] if approved else f"run {artifacts.run_id}",
                                        note=note or None)
    except ChampionChanged as lost:
        log.warning("not promoted: %s", lost)
        result = Pushed(pushed=False, version=version, reason=str(lost))
    else:
        result = Pushed(pushed=True, version=version, previous_version=pointer["previous_version"],
                        model_uri=registry.uri(registry.model_key(version)),
                        pointer_uri=registry.uri(registry.pointer_key))
        log.info("champion is now %s at %s", version, result["model_uri"])
    artifacts.put_json(result, "push", "result.json")
    return result


def shadow(artifacts: RunArtifacts, registry: ModelRegistry, decision: Decision, trained: Trained,
           extracted: Extracted, signer: ManifestSigner) -> Shadowed:
    """A challenger becomes a registry version and the shadow: the service scores sampled requests with
    it beside the champion (`python -m cross_sell shadow report` compares them). The champion stays."""
    _publish(artifacts, registry, decision, trained, extracted, signer)
    pointer = registry.set_shadow(trained["version"], signer, reason=decision["reason"], run_id=artifacts.run_id)
    log.info("challenger %s is now in shadow beside the champion %s", trained["version"],
             decision["champion_version"])
    result = Shadowed(shadow=trained["version"], champion=decision["champion_version"], set_at=pointer["updated_at"])
    artifacts.put_json(result, "push", "shadow.json")
    return result


def rollback(clients, version: str, *, reason: str, by: str, run_id: str, force: bool = False,
             approved: dict | None = None) -> RolledBack:
    """The champion set back to `version` through the rollback DAG by `by`, one of the policy's rollback
    operators: a version the registry may restore without a second person (`ModelRegistry.rollback`), or,
    with `force`, any signed version once a second person approved it (`approved`: the verified approval
    record, bound to this run and version). Scoring follows the champion Asset."""
    registry, policy = clients.registry, clients.settings.policy
    policy.check_rollback_operator(by)
    if force and not approved:
        raise approval.NotApproved(f"a forced rollback to {version} needs a second person's approval; none")
    note = {"policy": policy.record(), **({"approval": approved} if approved else {})}
    record = registry.rollback(version, clients.signer, reason=reason, by=by, run_id=run_id, force=force, note=note)
    log.warning("champion rolled back to %s (was %s) by %s%s", version, record["previous_version"], by,
                f", approved by {approved['approved_by']}" if approved else "")
    return RolledBack(version=version, previous_version=record["previous_version"], sequence=record["sequence"],
                      by=by, forced=force)
