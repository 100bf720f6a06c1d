"""Monitoring once the model is out: serving skew, prediction drift and realized performance, per day.

For one day (the stage `monitor_day` of the `cross_sell_monitoring` DAG):

* **skew**: that day's sampled request rows against the champion's training profile (`skew.report`,
  the same distances as the pipeline's drift check);
* **prediction drift**: the probabilities the service answered that day against the champion's
  probabilities on its test split (PSI over the test split's own quantile bins, `calibration.json`);
* **realized performance**: outcomes (`{id, Response, observed_at}` documents) observed that day, joined
  with the scores the latest scoring run before that day gave those customers: ROC-AUC, precision at
  the model's threshold, precision of the top decile (the campaign), observed vs predicted rate. The
  scoring runs come as their `Scored` records (in the DAG: the `cross_sell_scores` Asset events, kept in
  Airflow's database), and their scores files are checked against the sha256 recorded there.

Each day is a small JSON (`monitoring/daily/<day>.json`); `report` draws the trend of the last days
into one self-contained HTML page (`monitoring/report.html`). What crosses a limit is returned as
alerts for the caller to send.
"""

from __future__ import annotations

import io
import json
import logging
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable

import numpy as np

from .. import clock
from ..contracts import Artifact, Monitored, Scored
from ..pages import png, render
from ..storage import objects
from ..storage.registry import NoChampionYet
from . import drift, skew

log = logging.getLogger(__name__)

DAILY = "monitoring/daily"
REPORT = "monitoring/report.html"
PSI_LIMIT = 0.2


def realized(y: np.ndarray, probability: np.ndarray, threshold: float, top: np.ndarray | None = None) -> dict:
    """Metrics of scores against outcomes; `top` marks the customers on the campaign (decile 1)."""
    from sklearn.metrics import roc_auc_score

    predicted = probability >= threshold
    out = {"rows": int(len(y)), "observed_rate": float(np.mean(y)) if len(y) else None,
           "mean_probability": float(np.mean(probability)) if len(y) else None,
           "roc_auc": float(roc_auc_score(y, probability)) if len(set(y.tolist())) == 2 else None,
           "precision_at_threshold": float(np.mean(y[predicted])) if predicted.any() else None}
    if top is not None:
        out["precision_top_decile"] = float(np.mean(y[top])) if top.any() else None
    return out


def prediction_psi(probability: np.ndarray, calibration: dict) -> float | None:
    """Population stability of served probabilities against the champion's test-split probabilities,
    over the test split's own equal-count bins."""
    if calibration is None or drift.too_few(len(probability)):
        return None
    expected = np.asarray(calibration["rows"], dtype=float)
    return drift.psi(expected / expected.sum(), drift.binned(probability, np.asarray(calibration["edges"])))


def outcomes_of(collection, day: date):
    """The outcomes observed on `day` (UTC), as a frame (id, Response)."""
    import pandas as pd

    start = datetime.combine(day, time.min, tzinfo=timezone.utc)
    query = {"observed_at": {"$gte": start.isoformat(), "$lt": (start + timedelta(days=1)).isoformat()}}
    rows = list(collection.find(query, projection={"_id": False, "id": True, "Response": True}, batch_size=10_000))
    return pd.DataFrame(rows, columns=["id", "Response"])


def latest_before(scoring_runs: Iterable[Scored], day: date) -> Scored | None:
    """The last scoring run that scored before the end of `day`."""
    end = (day + timedelta(days=1)).isoformat()
    before = [run for run in scoring_runs if run["scored_at"] < end]
    return max(before, key=lambda run: run["scored_at"]) if before else None


def monitor_day(day: date, registry, outcomes, scoring_runs: Iterable[Scored] = (), samples=None,
                min_roc_auc: float = 0.75, min_precision: float = 0.2,
                skew_thresholds: dict | None = None) -> tuple[dict, list[str]]:
    """One day's figures and the alerts they raise. `outcomes`: the outcomes collection; `scoring_runs`:
    the scoring runs' records (the latest before the day's end is used); `samples`: that day's sampled
    rows (`skew.read_samples`), read by the caller."""
    import pandas as pd

    champion = registry.champion()
    if champion is None:
        raise NoChampionYet("no champion yet: nothing to monitor (cross_sell_training pushes the first)")
    result = {"day": day.isoformat(), "champion": champion.version, "skew": None, "prediction_psi": None,
              "realized": None, "missing": {}}
    alerts: list[str] = []
    samples = samples if samples is not None else pd.DataFrame()
    if not len(samples):
        result["missing"]["skew"] = (
            f"no sampled serving rows for {day} (the monitored day: the DAG's `day` param, empty = the day before "
            f"the run) under serving-samples/date={day}/; the service samples request rows there when "
            "SERVING_SAMPLE_RATE > 0")
    elif drift.too_few(len(samples)):  # skew and prediction drift are not judged on a handful of rows
        result["skew"] = {"rows": int(len(samples)), "judged": False, "reason": drift.too_few(len(samples))}
        result["missing"]["skew"] = f"{len(samples):,} sampled serving rows on {day}: {drift.too_few(len(samples))}"
    else:
        version, found = skew.report(registry, samples, None, skew_thresholds)
        result["skew"] = {"rows": int(len(samples)), "judged": True, "drifted": found.drifted,
                          "distances": {f.feature: round(f.distance, 4) for f in found.features}}
        if found.drifted:
            alerts.append(f"serving skew on {day}: {', '.join(found.drifted)} past their limits "
                          f"against the training data of {version}")
        served = samples["probability"].dropna().to_numpy(dtype=float) if "probability" in samples else np.empty(0)
        psi = prediction_psi(served, registry.version_json(champion.version, "calibration.json"))
        result["prediction_psi"] = None if psi is None else round(psi, 4)
        if psi is not None and psi > PSI_LIMIT:
            alerts.append(f"prediction drift on {day}: PSI {psi:.3f} of served probabilities (> {PSI_LIMIT})")
    observed = outcomes_of(outcomes, day)
    run = latest_before(scoring_runs, day) if len(observed) else None
    if not len(observed):
        result["missing"]["realized"] = (
            f"no outcomes observed on {day} (the `day` param) in {outcomes.name} (observed_at on that day, UTC): "
            "load what contacted customers did with python -m cross_sell load-outcomes --csv outcomes.csv "
            "(id, Response[, observed_at])")
    elif run is None:
        result["missing"]["realized"] = (f"{len(observed):,} outcomes on {day}, but no scoring run before the "
                                         "day's end to compare them with (cross_sell_scoring runs after each "
                                         "new champion and daily)")
    else:
        scores = _read_scores(registry.s3, registry.bucket, run["scores"])
        joined = observed.merge(scores, on="id", how="inner")
        threshold = registry.manifest(run["model_version"])["threshold"]  # that model's own, verified
        figures = realized(joined["Response"].to_numpy(dtype=int), joined["probability"].to_numpy(),
                           threshold, (joined["decile"] == 1).to_numpy())
        result["realized"] = {**figures, "scored_by": run["model_version"], "scored_at": run["scored_at"],
                              "outcomes": int(len(observed))}
        if figures["roc_auc"] is not None and figures["roc_auc"] < min_roc_auc:
            alerts.append(f"realized ROC-AUC {figures['roc_auc']:.3f} on {day} < {min_roc_auc} "
                          f"({len(joined):,} outcomes, scores of {run['model_version']})")
        if figures["precision_at_threshold"] is not None and figures["precision_at_threshold"] < min_precision:
            alerts.append(f"realized precision {figures['precision_at_threshold']:.3f} on {day} < "
                          f"{min_precision}")
    return result, alerts


def audit_alerts(registry) -> list[str]:
    """What is wrong with the champion pointer's audit trail (a downgrade, a change with no record, a record
    not signed by the training side), as alert texts. A pointer that is not the project's signed writing
    fails the task (PointerError), which alerts too."""
    alerts = [f"champion audit log: {problem}" for problem in registry.hidden_audit_records()]
    champion = registry.champion()
    if champion is None:
        return alerts
    return alerts + [f"champion pointer ({champion.version}): {problem}"
                     for problem in registry.audit_problems(champion)]


def receipt_alerts(registry, erased=None) -> list[str]:
    """What is wrong with the erasure receipts (`receipts.problems`: one deleted, hidden, overwritten, unsigned,
    incomplete, or not matching the suppression list `erased`), as alert texts: counts and keys, no id."""
    from ..privacy import receipts

    return [f"erasure receipts: {problem}" for problem in
            receipts.problems(registry.s3, registry.bucket, registry.prefix, registry.verifier, erased)]


def run_day(day: date, registry, outcomes, scoring_runs: Iterable[Scored] = (), min_roc_auc: float = 0.75,
            min_precision: float = 0.2, skew_thresholds: dict | None = None, erased=None) -> Monitored:
    """The stage: read the day's samples, compute `monitor_day`, save `monitoring/daily/<day>.json`. Checks the
    champion's audit trail and the erasure receipts (`erased`: the suppression list) on the way."""
    from .drift import check_thresholds

    check_thresholds(skew_thresholds, "skew_thresholds")  # refused at once, samples or not
    s3, bucket, prefix = registry.s3, registry.bucket, registry.prefix
    pointer_problems = audit_alerts(registry) + receipt_alerts(registry, erased)
    samples = skew.read_samples(s3, bucket, prefix, since=day, until=day)
    result, alerts = monitor_day(day, registry, outcomes, scoring_runs, samples, min_roc_auc, min_precision,
                                 skew_thresholds)
    if "skew" in result["missing"]:  # which days do have samples: the `day` to ask for
        days = sampled_days(s3, bucket, prefix)
        result["missing"]["skew"] += (f"; days with samples: {', '.join(days[-7:])}" if days
                                      else "; no day has samples yet")
    result["pointer_problems"] = pointer_problems
    alerts = [*pointer_problems, *alerts]
    result["alerts"] = alerts
    key = objects.join_key(prefix, DAILY, f"{day.isoformat()}.json")
    body = json.dumps(result, indent=2).encode()
    objects.put(s3, bucket, key, body, "application/json")
    log.info("monitoring %s: %s", day, json.dumps({k: v for k, v in result.items() if k != "skew"}))
    return Monitored(day=day.isoformat(), daily=objects.artifact(key, body), alerts=alerts)


def monitor(clients, day: date, scoring_runs: Iterable[Scored] = (), min_realized_roc_auc: float = 0.75,
            min_realized_precision: float = 0.2, skew_thresholds: dict | None = None) -> Monitored:
    """The monitoring operation (the `cross_sell_monitoring` DAG's `monitor`): `run_day` with what `clients`
    (`cross_sell.clients.Clients`) reach as the monitoring role: the registry, and the outcomes and the
    suppression list through MongoDB's monitoring connection."""
    settings = clients.settings
    conn = settings.monitoring_mongo_conn_id
    return run_day(day, clients.registry, clients.collection(settings.outcomes_collection, conn),
                   scoring_runs=scoring_runs, min_roc_auc=min_realized_roc_auc, min_precision=min_realized_precision,
                   skew_thresholds=skew_thresholds, erased=clients.collection(settings.erased_collection, conn))


def sampled_days(s3, bucket: str, prefix: str) -> list[str]:
    """The days (YYYY-MM-DD, oldest first) with sampled serving rows under `serving-samples/`."""
    root = skew.samples_prefix(prefix)
    found = [item["Prefix"][len(root):].strip("/").removeprefix("date=")
             for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root, Delimiter="/")
             for item in page.get("CommonPrefixes", [])]
    return sorted(found)


def build_report(s3, bucket: str, prefix: str, days: int = 30, today: Artifact | None = None) -> str:
    """The trend page of the last `days` daily results; returns its key. `today`: this run's day, checked
    against what `run_day` recorded (earlier days are earlier runs' files, read bounded in size)."""
    root = objects.folder(prefix, DAILY)
    keys = sorted(item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root)
                  for item in page.get("Contents", []))[-days:]
    daily = [json.loads(objects.read_artifact(s3, bucket, today) if today and key == today["key"]
                        else objects.read(s3, bucket, key)[0]) for key in keys]
    key = objects.join_key(prefix, REPORT)
    objects.put(s3, bucket, key, trend_report(daily).encode(), "text/html")
    return key


def _read_scores(s3, bucket: str, scores: Artifact):
    """A scoring run's scores, checked against the sha256 that run recorded."""
    import pandas as pd

    body = objects.read_artifact(s3, bucket, scores)
    return pd.read_parquet(io.BytesIO(body), columns=["id", "probability", "decile"])


def trend_report(days: list[dict]) -> str:
    """One self-contained HTML page: the trend of the daily figures (PNG embedded, no CDN), and what the
    days lack (no samples, no outcomes, no scoring run) with how to provide it."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    series = {
        "realized ROC-AUC": [(d.get("realized") or {}).get("roc_auc") for d in days],
        "precision at threshold": [(d.get("realized") or {}).get("precision_at_threshold") for d in days],
        "precision, top decile": [(d.get("realized") or {}).get("precision_top_decile") for d in days],
        "observed rate": [(d.get("realized") or {}).get("observed_rate") for d in days],
        "mean predicted": [(d.get("realized") or {}).get("mean_probability") for d in days],
        "prediction PSI": [d.get("prediction_psi") for d in days],
        "largest skew distance": [max((d.get("skew") or {}).get("distances", {}).values(), default=None)
                                  for d in days],
    }
    groups = [names for names in (("realized ROC-AUC", "precision at threshold", "precision, top decile"),
                                  ("observed rate", "mean predicted"), ("prediction PSI", "largest skew distance"))
              if any(v is not None for name in names for v in series[name])]  # no empty plots
    image = None
    if groups:
        figure, axes = plt.subplots(len(groups), 1, figsize=(11, 3.4 * len(groups)), sharex=True, squeeze=False)
        positions = np.arange(len(days))  # numbers, not day strings: no "categorical units" log lines
        for axis, names in zip(axes[:, 0], groups, strict=True):
            for name in names:
                axis.plot(positions, [np.nan if v is None else v for v in series[name]], marker="o", ms=3,
                          label=name)
            axis.legend(fontsize=8)
            axis.grid(alpha=0.3)
        axes[-1, 0].set_xticks(positions, [d["day"] for d in days], rotation=60)
        image = png(figure, dpi=80)
    missing = _latest_reasons(days)
    rows = [{"day": d["day"], "champion": d["champion"], "values": [series[name][i] for name in series],
             "drifted": (d.get("skew") or {}).get("drifted", [])} for i, d in enumerate(days)]
    return render("monitoring_report.html.j2", days=days, names=list(series), rows=rows, image=image,
                  missing=missing, generated_at=clock.stamp())


def _latest_reasons(days: list[dict]) -> list[tuple[str, str]]:
    """What the most recent days lack, one reason per kind (the latest day's wording)."""
    latest: dict[str, str] = {}
    for day in days:
        latest.update(day.get("missing") or {})
    return sorted(latest.items())
