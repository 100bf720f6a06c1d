"""The training pipeline's stages as plain functions: S3 clients and documents in, typed records out.

The Airflow DAG calls these through `cross_sell_airflow.stage.run_stage`, with clients built from its
connections; tests and benchmarks call them directly. Large data only moves through S3 under the run's
prefix (`RunArtifacts`); what each stage returns (`contracts`) is small enough for XCom. Every stage
rewrites the same keys when re-run, so clearing a task reproduces its result. A failure that retrying
cannot fix raises a `NotRetryable` (bad data, drift when told to fail, a broken signature).
"""

from __future__ import annotations

import json
import logging
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Iterable

from . import drift, evaluation, features, model_input, onnx_export, provenance, report, schema, snapshot, training
from .artifacts import RunArtifacts
from .contracts import Decision, DriftChecked, Extracted, Pushed, SplitKeys, Trained, Transformed, Validated
from .errors import NotRetryable
from .onnx_model import OnnxModel
from .registry import ChampionChanged, IntegrityError, ModelRegistry, RegistryError, sha256_bytes
from .signing import ManifestSigner, SignatureError

log = logging.getLogger(__name__)

RAW = ("raw", "snapshot.parquet")


def extract(documents: Iterable[dict], artifacts: RunArtifacts, chunk_rows: int = snapshot.CHUNK_ROWS) -> Extracted:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snapshot.parquet"
        stats = snapshot.write(documents, str(path), chunk_rows=chunk_rows)
        key = artifacts.upload_file(path, *RAW)
    result = Extracted(raw_key=key, **stats.as_dict())
    artifacts.put_json(result, "raw", "snapshot.json")
    log.info("extracted %s rows (%s with wrongly typed values) to %s, fingerprint %s",
             stats.rows, stats.invalid_rows, artifacts.uri(key), stats.fingerprint)
    return result


def validate(artifacts: RunArtifacts, raw_key: str, min_rows: int) -> Validated:
    """Validate the snapshot; the result JSON, the HTML report and GX's Data Docs are saved whatever
    the verdict. `validation/report.html` is self-contained (readable offline); GX's Data Docs load
    their styles from public CDNs."""
    from .validation import DataValidationError, run_suite

    with tempfile.TemporaryDirectory() as tmp:
        frame = snapshot.read(str(artifacts.download(raw_key, Path(tmp) / "snapshot.parquet")))
        outcome = run_suite(frame, min_rows=min_rows, docs_dir=Path(tmp) / "data_docs")
        result_key = artifacts.put_json(outcome.result, "validation", "result.json")
        docs_key = artifacts.upload_dir(Path(tmp) / "data_docs", "validation", "data_docs")
    summary = {
        "success": outcome.success,
        "statistics": outcome.statistics,
        "failures": [{k: f[k] for k in ("expectation", "detail")} for f in outcome.failures],
        "result_key": result_key,
        "data_docs_key": f"{docs_key}/index.html",
    }
    run = {"run_id": artifacts.run_id, "data_docs_uri": artifacts.uri(summary["data_docs_key"])}
    html = report.validation_report(summary, outcome.result, run)
    summary["report_key"] = artifacts.put_bytes(html.encode(), "text/html", "validation", "report.html")
    artifacts.put_json(summary, "validation", "summary.json")
    if not outcome.success:
        raise DataValidationError(
            f"raw snapshot {artifacts.uri(raw_key)} failed validation: {outcome.summary()}\n"
            f"report: {artifacts.uri(summary['report_key'])}\nresult: {artifacts.uri(result_key)}"
        )
    log.info("validation passed: %s; report at %s", outcome.summary(), artifacts.uri(summary["report_key"]))
    return Validated(**{k: summary[k] for k in Validated.__annotations__})


def check_drift(artifacts: RunArtifacts, registry: ModelRegistry, raw_key: str, thresholds: dict | None = None,
                action: str = "warn") -> DriftChecked:
    """Compare the snapshot with the champion's training profile; raw distances are always saved.

    `action` "fail" raises DriftError when a feature crosses its threshold, "warn" only logs it.
    """
    if action not in ("warn", "fail"):
        raise NotRetryable(f"drift action must be 'warn' or 'fail', not {action!r}")
    try:
        version, reference = drift.reference_profile(registry)
    except LookupError as missing:
        result = DriftChecked(checked=False, reason=str(missing), drifted=[])
        artifacts.put_json(result, "validation", "drift.json")
        log.info("drift check skipped: %s", result["reason"])
        return result
    with tempfile.TemporaryDirectory() as tmp:
        frame = snapshot.read(str(artifacts.download(raw_key, Path(tmp) / "snapshot.parquet")))
    found = drift.compare(reference, frame, thresholds)
    result = {"checked": True, "champion_version": version, "action": action, **found.as_dict()}
    result["report_key"] = artifacts.put_json(result, "validation", "drift.json")
    log.info("drift against champion %s's training data:\n%s", version, found.table())
    if found.drifted:
        message = (f"drift in {', '.join(found.drifted)} against champion {version} "
                   f"(report: {artifacts.uri(result['report_key'])})")
        if action == "fail":
            raise drift.DriftError(message)
        log.warning("%s; continuing (drift action 'warn')", message)
    return DriftChecked(**{k: result[k] for k in ("checked", "champion_version", "drifted", "report_key")})


def transform(artifacts: RunArtifacts, raw_key: str, seed: int) -> Transformed:
    with tempfile.TemporaryDirectory() as tmp:
        raw = snapshot.read(str(artifacts.download(raw_key, Path(tmp) / "snapshot.parquet")))
        frame, problems = schema.validate_frame(raw, schema.TRAINING)
        if problems:  # validation ran first, so this only trips if the two ever disagree
            raise NotRetryable(f"snapshot breaks the schema after validation: {problems[:5]}")
        parts = features.split(frame, seed)
        keys = {}
        for name, part in parts.items():
            path = Path(tmp) / f"{name}.parquet"
            part.to_parquet(path, index=False)
            keys[name] = artifacts.upload_file(path, "features", f"{name}.parquet")
    rows = {name: len(part) for name, part in parts.items()}
    log.info("split %s rows into %s (seed %s)", len(frame), rows, seed)
    return Transformed(split_keys=SplitKeys(**keys), rows=rows, seed=seed)


def _read_split(artifacts: RunArtifacts, key: str, tmp: str):
    import pandas as pd

    return pd.read_parquet(artifacts.download(key, Path(tmp) / Path(key).name))


def train(artifacts: RunArtifacts, split_keys: SplitKeys, seed: int, run_started: datetime) -> Trained:
    """Fit the candidate, convert it to ONNX (what serves) and measure the conversion on the test split."""
    with tempfile.TemporaryDirectory() as tmp:
        train_frame = _read_split(artifacts, split_keys["train"], tmp)
        validation_frame = _read_split(artifacts, split_keys["validation"], tmp)
        test_frame = _read_split(artifacts, split_keys["test"], tmp)  # for the ONNX parity check only
        model = training.train(train_frame, validation_frame, seed)
        path = Path(tmp) / "model.joblib"
        sha256 = training.save(model, str(path))
        model_key = artifacts.upload_file(path, "model", "model.joblib")
        threshold = training.threshold(model)
        exported = onnx_export.export(model, threshold, model_input.from_frame(test_frame))
        validation_metrics = evaluation.score(model, validation_frame)
        profile_key = artifacts.put_json(drift.profile(train_frame), "model", "profile.json")
    info = {
        "model_key": model_key,
        "profile_key": profile_key,
        "sha256": sha256,
        "onnx_key": None,
        "onnx_sha256": None,
        "onnx_parity": exported.parity,
        "serving_problem": exported.problem,
        "version": training.version_for(run_started, sha256),
        "threshold": threshold,
        "trained_at": run_started.isoformat(),
        "seed": seed,
        "estimator_params": training.ESTIMATOR_PARAMS,
        "validation_metrics": validation_metrics,
    }
    if exported.onnx is not None:
        info["onnx_key"] = artifacts.put_bytes(exported.onnx, "application/octet-stream", "model", "model.onnx")
        info["onnx_sha256"] = sha256_bytes(exported.onnx)
    artifacts.put_json(info, "model", "training.json")
    log.info("trained %s: threshold %.4f, validation roc_auc %.4f; ONNX %s", info["version"], threshold,
             validation_metrics["roc_auc"], exported.problem or f"parity {exported.parity}")
    return Trained(**{k: info[k] for k in Trained.__annotations__})


def _run_file(artifacts: RunArtifacts, key: str, sha256: str) -> bytes:
    """A file this run's train task wrote, refused if it is not the file whose sha256 train returned
    (through XCom, not S3)."""
    body = artifacts.s3.get_object(Bucket=artifacts.bucket, Key=key)["Body"].read()
    if sha256_bytes(body) != sha256:
        raise IntegrityError(f"{key} changed since training")
    return body


def _candidate(artifacts: RunArtifacts, trained: Trained):
    """The candidate as it would serve (ONNX); when it has no faithful ONNX file, the run's own
    estimator, only to report on it: the one pickle the pipeline loads is the file this run's train
    task wrote, checked against the sha256 train returned."""
    if trained.get("onnx_key") and not trained.get("serving_problem"):
        onnx = _run_file(artifacts, trained["onnx_key"], trained["onnx_sha256"])
        return evaluation.ServedClassifier(OnnxModel(onnx, trained["threshold"]))
    import io

    import joblib

    return joblib.load(io.BytesIO(_run_file(artifacts, trained["model_key"], trained["sha256"])))


def _baseline(registry: ModelRegistry, artifacts: RunArtifacts, trained: Trained):
    """The champion pointer (None before the first push) and the version to compare the candidate with."""
    champion = registry.champion()
    baseline = champion.version if champion else None
    if champion and champion.version == trained["version"] and champion.pointer.get("run_id") == artifacts.run_id:
        # This run already promoted its candidate (evaluate was cleared after push): judge it again
        # against the model it replaced, so the re-run reaches the decision the first run did.
        baseline = champion.pointer.get("previous_version")
    return champion, baseline


def evaluate(artifacts: RunArtifacts, registry: ModelRegistry, trained: Trained, test_key: str,
             min_roc_auc: float, margin: float) -> Decision:
    """Score candidate and champion, both as they serve (ONNX), on the same test split; decide; report."""
    champion, baseline = _baseline(registry, artifacts, trained)
    with tempfile.TemporaryDirectory() as tmp:
        test = _read_split(artifacts, test_key, tmp)
    facts, unscorable = _score(artifacts, registry, trained, baseline, test)
    bless, reason = _decide(facts, trained, unscorable, min_roc_auc, margin)
    candidate, incumbent = facts["candidate"]["metrics"], facts.get("champion", {}).get("metrics")
    # A challenger: faithful, above the floor, a model of its own (not the champion's twin), yet not
    # better by the margin. It can be scored in shadow; promotion stays this rule's.
    challenger = (not bless and incumbent is not None and not trained.get("serving_problem")
                  and candidate[evaluation.PRIMARY_METRIC] >= min_roc_auc and candidate != incumbent)
    decision = Decision(
        bless=bless, reason=reason, challenger=challenger, primary_metric=evaluation.PRIMARY_METRIC,
        min_roc_auc=min_roc_auc, margin=margin, candidate_version=trained["version"], candidate=candidate,
        onnx_parity=trained.get("onnx_parity"), champion_version=baseline,
        champion_etag=champion.etag if champion else None,
        champion=facts["champion"]["metrics"] if "champion" in facts else None,
        facts_key="", report_key="", evaluation_key="")
    _save_evaluation(artifacts, decision, facts)
    log.info("decision: %s (%s)", "BLESS" if bless else "keep champion", reason)
    log.info("evaluation report: %s", artifacts.uri(decision["report_key"]))
    return decision


def _score(artifacts: RunArtifacts, registry: ModelRegistry, trained: Trained, baseline: str | None,
           test) -> tuple[dict, str | None]:
    """`report.model_facts` of the candidate and (when it can be scored) the champion; why not, if not."""
    facts = {"candidate": report.model_facts(_candidate(artifacts, trained), test)}
    if baseline is None:
        return facts, None
    try:
        served, _ = registry.served_model(baseline)
    except (RegistryError, IntegrityError, SignatureError) as error:  # e.g. saved by an older release
        return facts, f"champion {baseline} cannot be scored here ({error})"
    facts["champion"] = report.model_facts(evaluation.ServedClassifier(served), test)
    return facts, None


def _decide(facts: dict, trained: Trained, unscorable: str | None, min_roc_auc: float,
            margin: float) -> tuple[bool, str]:
    """The blessing rule, then the two things that override it: an unscorable champion (the floor
    decides) and a candidate that cannot be served faithfully (never blessed)."""
    champion = facts["champion"]["metrics"] if "champion" in facts else None
    bless, reason = evaluation.decide(facts["candidate"]["metrics"], champion, min_roc_auc, margin)
    if unscorable:
        reason = f"{unscorable}; judged against the floor: {reason}"
        log.warning(reason)
    if trained.get("serving_problem") or not trained.get("onnx_key"):
        bless, reason = False, f"candidate cannot be served faithfully: {trained.get('serving_problem')}"
        log.warning(reason)
    return bless, reason


def _save_evaluation(artifacts: RunArtifacts, decision: Decision, facts: dict) -> None:
    """facts.json, the HTML report and decision.json under evaluation/; their keys go into `decision`."""
    decision["facts_key"] = artifacts.put_json({k: report.public(v) for k, v in facts.items()},
                                               "evaluation", "facts.json")
    html = report.evaluation_report(decision, facts, {
        "run_id": artifacts.run_id, "validation": _validation_summary(artifacts),
        "validation_href": "../validation/report.html",
        "validation_uri": artifacts.uri(artifacts.key("validation", "report.html"))})
    decision["report_key"] = artifacts.put_bytes(html.encode(), "text/html", "evaluation", "report.html")
    decision["evaluation_key"] = artifacts.key("evaluation", "decision.json")
    artifacts.put_json(decision, "evaluation", "decision.json")


def _validation_summary(artifacts: RunArtifacts) -> dict | None:
    """This run's validation verdict for the evaluation report (None when validate did not save one)."""
    from botocore.exceptions import ClientError

    try:
        return artifacts.get_json(artifacts.key("validation", "summary.json"))
    except ClientError:
        return None


def manifest_for(artifacts: RunArtifacts, decision: Decision, trained: Trained, extracted: Extracted) -> dict:
    """What the registry records of a pushed version (the artifacts' sha256 are added by `publish`)."""
    return {
        "version": trained["version"],
        "threshold": trained["threshold"],
        "trained_at": trained["trained_at"],
        "metrics": decision["candidate"],
        "onnx_parity": trained["onnx_parity"],
        "replaced_champion": decision["champion_version"],
        "replaced_champion_metrics": decision["champion"],
        "decision_reason": decision["reason"],
        "data_fingerprint": extracted["fingerprint"],
        "rows": extracted["rows"],
        "run_id": artifacts.run_id,
        "run_artifacts": artifacts.uri(artifacts.root),
        "code_version": provenance.code_version(),
        "library_versions": provenance.library_versions(),
        "features": list(schema.FEATURES),
        "model_input": model_input.LAYOUT,
    }


def _publish(artifacts: RunArtifacts, registry: ModelRegistry, decision: Decision, trained: Trained,
             extracted: Extracted, signer: ManifestSigner) -> None:
    """The candidate as a registry version: its files, then the signed manifest (immutable; a retry
    writes the same)."""
    manifest = manifest_for(artifacts, decision, trained, extracted)
    facts = artifacts.get_json(decision["facts_key"])["candidate"] if decision.get("facts_key") else None
    files = {
        registry.ONNX: _run_file(artifacts, trained["onnx_key"], trained["onnx_sha256"]),
        registry.ESTIMATOR: _run_file(artifacts, trained["model_key"], trained["sha256"]),
        "profile.json": json.dumps(artifacts.get_json(trained["profile_key"])).encode(),
        "model_card.md": report.model_card(manifest, facts).encode(),
    }
    if facts and facts.get("calibration"):  # the test split's calibration: batch scoring's expected buy rates
        files["calibration.json"] = json.dumps(facts["calibration"]).encode()
    registry.publish(manifest, files, signer)


def push(artifacts: RunArtifacts, registry: ModelRegistry, decision: Decision, trained: Trained,
         extracted: Extracted, signer: ManifestSigner) -> Pushed:
    """Publish the blessed model's version (files, then the signed manifest), then move the champion
    pointer (conditionally, last)."""
    version = trained["version"]
    _publish(artifacts, registry, decision, trained, extracted, signer)
    try:
        pointer = registry.set_champion(version, decision["champion_etag"], "promote", run_id=artifacts.run_id,
                                        reason=decision["reason"])
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
           extracted: Extracted, signer: ManifestSigner) -> dict:
    """A challenger becomes a registry version and the shadow: the service scores sampled requests with
    it beside the champion (`python -m cross_sell shadow report` compares them). The champion stays."""
    _publish(artifacts, registry, decision, trained, extracted, signer)
    pointer = registry.set_shadow(trained["version"], reason=decision["reason"], run_id=artifacts.run_id)
    log.info("challenger %s is now in shadow beside the champion %s", trained["version"],
             decision["champion_version"])
    result = {"shadow": trained["version"], "champion": decision["champion_version"],
              "set_at": pointer["updated_at"]}
    artifacts.put_json(result, "push", "shadow.json")
    return result
