"""Runs side by side in MLflow: every training, scoring and monitoring run, when a tracking server is set.

With the standard `MLFLOW_TRACKING_URI` set, a training run logs one MLflow run in `cross-sell-training`
(its params, the candidate's and the champion's metrics and fairness, the largest drift distance, the
decision as tags, the reports as artifacts, and the served model as a pyfunc that answers like the service:
raw customer columns in, checked by its engine; probabilities and labels at the tuned threshold out),
which `push` or `shadow` tags with the registry version and the approver and gives the signed manifest
and the model card. A scoring run logs its counts and lift table in `cross-sell-scoring`; the monitoring
DAG logs each day's realized figures as a metric history in `cross-sell-monitoring`, one run per champion.

MLflow is where people compare runs, not where models are served from: its aliases and stages are
last-writer-wins and unsigned, so the signed S3 registry (`registry.py`) stays the registry of record and
nothing here is ever read back by the pipeline or the service.

Nothing here fails or holds up a run: the server is asked once whether it answers (`TIMEOUT_SECONDS`),
every request has that timeout and no retries, and the whole logging gives up after `DEADLINE_SECONDS`.
What went wrong comes back as `Tracked.problem` (the Airflow glue logs it and alerts once per run).
Unset: nothing is imported, nothing is sent.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from typing import Any, Callable, Mapping

from .. import clock

log = logging.getLogger(__name__)

TRAINING, SCORING, MONITORING = "cross-sell-training", "cross-sell-scoring", "cross-sell-monitoring"
TIMEOUT_SECONDS = float(os.environ.get("CROSS_SELL_MLFLOW_TIMEOUT_SECONDS", "5"))
DEADLINE_SECONDS = float(os.environ.get("CROSS_SELL_MLFLOW_DEADLINE_SECONDS", "60"))
METRICS = ("roc_auc", "pr_auc", "f1", "log_loss", "precision", "recall")


@dataclass(frozen=True)
class Tracked:
    run_id: str | None = None  # the MLflow run written to
    problem: str | None = None  # why nothing, or not everything, was logged


def tracking_uri() -> str | None:
    return os.environ.get("MLFLOW_TRACKING_URI") or None


def _unreachable(uri: str) -> str | None:
    """Why an HTTP tracking server cannot be used now (its /health within the timeout), or None."""
    if not uri.startswith(("http://", "https://")):
        return None  # a local file or database store: nothing to wait for
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=TIMEOUT_SECONDS) as answer:
            return None if answer.status == 200 else f"{uri}/health answered {answer.status}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        return f"MLflow tracking server {uri} unreachable within {TIMEOUT_SECONDS:g} s: {error}"


def _guarded(what: str, work: Callable[[Any], str]) -> Tracked:
    """`work(MlflowClient)` -> run id, bounded in time and never raising; Tracked() when tracking is off."""
    uri = tracking_uri()
    if uri is None:
        return Tracked()
    problem = _unreachable(uri)
    if problem is not None:
        log.warning("%s not tracked: %s", what, problem)
        return Tracked(problem=problem)
    # Read by MLflow's HTTP client on every request: one try, bounded, so a server that stops answering
    # half-way costs a request's timeout, not MLflow's default of seven retries over minutes.
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, round(TIMEOUT_SECONDS)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            from mlflow.tracking import MlflowClient

            outcome["run_id"] = work(MlflowClient(tracking_uri=uri))
        except Exception as error:  # tracking must never fail the run that did the work
            outcome["error"] = f"{type(error).__name__}: {error}"

    worker = threading.Thread(target=run, name="mlflow-tracking", daemon=True)
    worker.start()
    worker.join(DEADLINE_SECONDS)
    if worker.is_alive():
        problem = f"{what}: MLflow logging gave up after {DEADLINE_SECONDS:g} s ({uri})"
    elif "error" in outcome:
        problem = f"{what}: MLflow logging failed ({uri}): {outcome['error']}"
    else:
        log.info("%s tracked in MLflow: run %s at %s", what, outcome["run_id"], uri)
        return Tracked(run_id=outcome["run_id"])
    log.warning("%s", problem)
    return Tracked(run_id=outcome.get("run_id"), problem=problem)


def _experiment(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def _param(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _log(client, run_id: str, params: Mapping[str, Any] = {}, metrics: Mapping[str, float | None] = {},
         tags: Mapping[str, Any] = {}, step: int = 0, timestamp_ms: int | None = None) -> None:
    """One batch request: MLflow refuses None metrics, and params and tags are text."""
    from mlflow.entities import Metric, Param, RunTag

    stamp = timestamp_ms if timestamp_ms is not None else int(clock.now().timestamp() * 1000)
    client.log_batch(run_id,
                     metrics=[Metric(k, float(v), stamp, step) for k, v in metrics.items() if v is not None],
                     params=[Param(k, _param(v)[:6000]) for k, v in params.items()],
                     tags=[RunTag(k, _param(v)[:5000]) for k, v in tags.items() if v is not None])


def _airflow_tags(airflow: Mapping[str, Any]) -> dict:
    return {f"airflow.{k}": v for k, v in airflow.items()}


def _model_metrics(prefix: str, metrics: Mapping[str, float] | None) -> dict:
    return {f"{prefix}_{name}": (metrics or {}).get(name) for name in METRICS}


def _fairness_metrics(fairness: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict:
    """`decision["fairness"]`: per model, per protected attribute, the parity ratio and equalized-odds gap."""
    return {f"{model}_{attribute}_{figure}": value
            for model, attributes in fairness.items() for attribute, figures in attributes.items()
            for figure, value in figures.items()}


def log_training(*, params: Mapping[str, Any], provenance: Mapping[str, Any], extracted: Mapping[str, Any],
                 decision: Mapping[str, Any], drift: Mapping[str, Any] | None, files: Mapping[str, bytes],
                 onnx: bytes | None, airflow: Mapping[str, Any]) -> Tracked:
    """A training run's MLflow run, once `evaluate` has decided: `params` the run's, `provenance` the
    candidate's record (`provenance.record`: what its manifest will sign, logged as params by
    `provenance.mlflow_params`), `files` artifacts by name (the reports, the decision), `onnx` the candidate as
    it would serve (logged as a pyfunc that answers like the service, with the candidate's threshold),
    `airflow` the dag/run/try ids and the task's log URL."""
    from .provenance import mlflow_params

    def work(client) -> str:
        run = client.create_run(_experiment(client, TRAINING), run_name=str(airflow.get("run_id", "")),
                                tags={"airflow.run_id": str(airflow.get("run_id", ""))})
        run_id = run.info.run_id
        _log(client, run_id,
             params={**params, **mlflow_params(provenance), "invalid_rows": extracted["invalid_rows"],
                     "suppressed": extracted.get("suppressed", 0)},
             metrics={**_model_metrics("candidate", decision["candidate"]),
                      **_model_metrics("champion", decision.get("champion")),
                      **_fairness_metrics(decision.get("fairness") or {}),
                      "drift_max_distance": (drift or {}).get("max_distance")},
             tags={**_airflow_tags(airflow), "decision": "bless" if decision["bless"] else "keep champion",
                   "challenger": decision.get("challenger"), "reason": decision["reason"],
                   "candidate_version": decision["candidate_version"],
                   "champion_version": decision.get("champion_version"),
                   "drifted": ", ".join((drift or {}).get("drifted") or []) or None})
        for name, body in files.items():
            client.log_text(run_id, body.decode(), name)
        if onnx is not None:
            _log_model(client, run_id, onnx, float(decision["candidate"]["threshold"]))
        client.set_terminated(run_id, "FINISHED")
        return run_id

    return _guarded(f"training run {airflow.get('run_id')}", work)


def _log_model(client, run_id: str, onnx_bytes: bytes, threshold: float) -> None:
    """The served model as an MLflow pyfunc that answers like the service (`mlflow_model`): raw customer
    columns in (checked by the service's engine), the ONNX file's probabilities and the tuned threshold's
    labels out."""
    import mlflow

    from ..model import mlflow_model

    mlflow.set_tracking_uri(client.tracking_uri)  # the fluent API logs models; the client's server
    with mlflow.start_run(run_id=run_id):
        mlflow_model.log(onnx_bytes, threshold)


def _find_run(client, experiment: str, tag: str, value: str):
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs([found.experiment_id], filter_string=f"tags.`{tag}` = '{value}'", max_results=1,
                              order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def tag_training(airflow_run_id: str, tags: Mapping[str, Any], files: Mapping[str, bytes]) -> Tracked:
    """What `push` or `shadow` adds to its training run: the registry version and the approver as tags,
    the signed manifest and the model card as artifacts."""

    def work(client) -> str:
        run = _find_run(client, TRAINING, "airflow.run_id", airflow_run_id)
        if run is None:
            raise LookupError(f"no MLflow training run tagged airflow.run_id={airflow_run_id!r} (was it tracked?)")
        _log(client, run.info.run_id, tags=tags)
        for name, body in files.items():
            client.log_text(run.info.run_id, body.decode(), name)
        return run.info.run_id

    return _guarded(f"training run {airflow_run_id}", work)


def log_scoring(*, summary: Mapping[str, Any], params: Mapping[str, Any], airflow: Mapping[str, Any]) -> Tracked:
    """A scoring run: how many customers were scored, quarantined and left out (by reason), and the lift
    and gain per decile (also as a metric history over the deciles, step = decile)."""

    def work(client) -> str:
        run = client.create_run(_experiment(client, SCORING), run_name=str(airflow.get("run_id", "")))
        run_id = run.info.run_id
        _log(client, run_id, params={**params, "model_version": summary["model_version"]},
             metrics={"rows": summary["rows"], "quarantined": summary["quarantined"],
                      **{f"excluded_{reason.replace(' ', '_')}": n for reason, n in summary["excluded"].items()}},
             tags={**_airflow_tags(airflow), "model_version": summary["model_version"],
                   "calibration": summary.get("calibration")})
        for row in summary["deciles"]:
            _log(client, run_id, metrics={"lift": row["lift"], "cumulative_gain": row["cumulative_gain"],
                                          "expected_buyers_per_call": row["expected_buyers_per_call"]},
                 step=row["decile"])
        client.log_text(run_id, json.dumps(summary["deciles"], indent=2), "lift.json")
        client.set_terminated(run_id, "FINISHED")
        return run_id

    return _guarded(f"scoring run {airflow.get('run_id')}", work)


def log_monitoring(*, daily: Mapping[str, Any], airflow: Mapping[str, Any]) -> Tracked:
    """One monitored day into its champion's monitoring run: realized ROC-AUC, precision and calibration
    (observed rate, mean predicted) and the prediction PSI, each a metric whose history is the days
    (timestamp: the day, step: its ordinal)."""
    day = date.fromisoformat(daily["day"])
    realized = daily.get("realized") or {}
    metrics = {"realized_roc_auc": realized.get("roc_auc"),
               "realized_precision": realized.get("precision_at_threshold"),
               "realized_precision_top_decile": realized.get("precision_top_decile"),
               "observed_rate": realized.get("observed_rate"), "mean_probability": realized.get("mean_probability"),
               "prediction_psi": daily.get("prediction_psi"), "alerts": len(daily.get("alerts") or [])}

    def work(client) -> str:
        champion = daily["champion"]
        run = _find_run(client, MONITORING, "champion_version", champion)
        run_id = run.info.run_id if run is not None else client.create_run(
            _experiment(client, MONITORING), run_name=f"monitoring {champion}",
            tags={"champion_version": champion}).info.run_id
        stamp = int(datetime.combine(day, time.min, tzinfo=timezone.utc).timestamp() * 1000)
        _log(client, run_id, metrics=metrics, step=day.toordinal(), timestamp_ms=stamp,
             tags={f"airflow.last_{k}": v for k, v in airflow.items()})
        client.log_text(run_id, json.dumps(daily, indent=2, default=str), f"daily/{day.isoformat()}.json")
        return run_id

    return _guarded(f"monitoring of {day}", work)


# -- what the DAG tasks hand over: gathered here, so the task bodies stay one call ------------------------

def track_evaluation(artifacts, trained: Mapping[str, Any], extracted: Mapping[str, Any],
                     validated: Mapping[str, Any], drift: Mapping[str, Any] | None, decision: Mapping[str, Any],
                     params: Mapping[str, Any], airflow: Mapping[str, Any]) -> Tracked:
    """`log_training` from the evaluate task's records: every file read is checked against its writer's
    record, but for this task's own report (read back bounded by size)."""
    from ..storage import objects
    from . import provenance

    def gathered() -> tuple[dict[str, bytes], bytes | None]:
        report_html = objects.read(artifacts.s3, artifacts.bucket, decision["report_key"],
                                   max_bytes=64 * 1024 * 1024)[0]
        files = {"evaluation/report.html": report_html,
                 "evaluation/decision.json": json.dumps(decision, indent=2, default=str).encode()}
        if validated.get("report"):
            files["validation/report.html"] = artifacts.read(validated["report"])
        onnx = artifacts.read(trained["onnx"]) if trained.get("onnx") else None
        return files, onnx

    try:
        files, onnx = gathered()
    except Exception as error:  # e.g. a file that fails its check: evaluate has decided already
        return Tracked(problem=f"training run {airflow.get('run_id')}: not tracked: {type(error).__name__}: {error}")
    record = provenance.record(artifacts.run_id, artifacts.uri(artifacts.root), trained, extracted,
                               decision.get("validation"))  # what push's manifest signs
    return log_training(params=params, provenance=record, extracted=extracted, decision=decision, drift=drift,
                        files=files, onnx=onnx, airflow=airflow)


def track_publication(registry, version: str, airflow_run_id: str, role: str,
                      approved: Mapping[str, Any] | None = None) -> Tracked:
    """`tag_training` once `push` (role "champion") or `shadow` (role "shadow") has published `version`:
    the manifest as the registry verified it, and the version's model card."""
    manifest = registry.manifest(version)
    card = registry.artifact(version, "model_card.md", manifest)
    files = {"registry/manifest.json": json.dumps(manifest, indent=2, default=str).encode()}
    if card:
        files["registry/model_card.md"] = card
    tags = {"registry_version": version, "registry_role": role,
            "approver": (approved or {}).get("approved_by"), "approval_comment": (approved or {}).get("comment")}
    return tag_training(airflow_run_id, tags, files)
