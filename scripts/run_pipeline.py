"""The main job on local defaults: local MongoDB-wire and S3 servers, data in, one full DAG run, a summary.

    python scripts/run_pipeline.py                       # 100,000 synthetic customers
    python scripts/run_pipeline.py --csv ../shared/data/cross_sell_sample.csv
    python scripts/run_pipeline.py --runs 2              # the second run keeps the champion
    python scripts/run_pipeline.py --serve               # then serve the champion on :8000 until Ctrl-C

It runs the real DAG with `airflow dags test` on a SQLite metadata DB under .local/airflow, against
servers it starts on free ports and stops (by pid) when done. The full task log goes to .local/.
A model-signing key pair is made once under .local/signing/: the private key reaches the DAG as the
`cross_sell_signing` Airflow connection, the public key every reader.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "include")]

from cross_sell.data import schema  # noqa: E402
from cross_sell.settings import Settings  # noqa: E402
from cross_sell.storage import objects  # noqa: E402
from cross_sell.storage.artifacts import RunArtifacts  # noqa: E402
from cross_sell.storage.registry import ModelRegistry  # noqa: E402
from cross_sell.storage.signing import ManifestVerifier, generate_key_pair  # noqa: E402
from devstack import local_services  # noqa: E402

DAG_ID = "cross_sell_training"


def airflow_env(local: Path, extra: dict) -> dict:
    env = {**os.environ, **local_services.airflow_config(local / "airflow")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "include"), env.get("PYTHONPATH")]))
    return {**env, **extra}


def run(cmd: list[str], env: dict, log_file: Path, watch=None) -> int:
    """Run a command with its output appended to `log_file`; `watch()` is called every second meanwhile."""
    with open(log_file, "a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        while process.poll() is None:
            time.sleep(1.0)
            if watch:
                watch()
        if watch:
            watch()
        return process.returncode


class TaskProgress:
    """Prints one line per task as it finishes (state, duration, its key figure) while `airflow dags test`
    runs: states from the run's metadata DB (SQLite, read-only), figures from the artifacts the task saved."""

    FINISHED = ("success", "failed", "skipped", "upstream_failed")

    def __init__(self, db: Path, s3, settings: Settings):
        self.db, self.s3, self.settings = db, s3, settings
        self.run_id: str | None = None
        self.known_runs = self._runs()
        self.printed: set[str] = set()

    def _query(self, sql: str, *params) -> list:
        import sqlite3

        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1) as connection:
                return connection.execute(sql, params).fetchall()
        except sqlite3.Error:  # locked by the writer for a moment, or not migrated yet
            return []

    def _runs(self) -> set[str]:
        return {row[0] for row in self._query("SELECT run_id FROM dag_run WHERE dag_id = ?", DAG_ID)}

    def __call__(self) -> None:
        if self.run_id is None:
            new = self._runs() - self.known_runs
            if not new:
                return
            self.run_id = new.pop()
        # Upstream tasks weigh more (Airflow's default priority_weight sums the downstream tasks): a task is
        # printed once every heavier one is, so "push skipped" never comes before "should_push".
        rows = self._query("SELECT task_id, state, duration, priority_weight FROM task_instance WHERE dag_id = ? "
                           "AND run_id = ? ORDER BY priority_weight DESC, end_date", DAG_ID, self.run_id)
        waiting_above = None
        for task, state, duration, weight in rows:
            if waiting_above is not None and weight < waiting_above:
                break
            if state not in self.FINISHED:
                waiting_above = weight
            elif task not in self.printed:
                self.printed.add(task)
                seconds = f"{duration:6.1f} s" if duration is not None else "        "
                print(f"  {task:14s} {state:15s} {seconds}  {self._figure(task, state)}", flush=True)

    def _figure(self, task: str, state: str) -> str:
        artifacts = RunArtifacts(self.s3, self.settings.s3_bucket, self.settings.s3_prefix, self.run_id)
        files = {"extract": ("raw", "snapshot.json"), "validate": ("validation", "summary.json"),
                 "check_drift": ("validation", "drift.json"), "train": ("model", "training.json"),
                 "evaluate": ("evaluation", "decision.json"), "push": ("push", "result.json")}
        if task not in files:
            return ""
        try:
            saved = artifacts.get_json(artifacts.key(*files[task]))
        except Exception:  # a task that failed early saved nothing
            return "see the task log in .local/pipeline.log" if state == "failed" else ""
        if task == "extract":
            return f"{saved['rows']:,} rows"
        if task == "validate":
            stats = saved["statistics"]
            return f"{stats['successful_expectations']}/{stats['evaluated_expectations']} expectations met"
        if task == "check_drift":
            return f"drifted: {', '.join(saved['drifted']) or 'none'}" if saved.get("checked") else saved["reason"]
        if task == "train":
            oof = saved["out_of_fold_metrics"]
            return f"{saved['model_family']}, out-of-fold ROC-AUC {oof['roc_auc']:.4f} on {oof['rows']:,} rows"
        if task == "evaluate":
            return (f"test ROC-AUC {saved['candidate']['roc_auc']:.4f}: "
                    f"{'BLESSED' if saved['bless'] else 'not blessed'}")
        return f"champion is now {saved['version']}" if saved["pushed"] else f"not pushed: {saved['reason']}"


def summarize(s3, settings: Settings, run_id: str, local: Path) -> dict:
    artifacts = RunArtifacts(s3, settings.s3_bucket, settings.s3_prefix, run_id)

    def maybe(*parts):
        try:
            return artifacts.get_json(artifacts.key(*parts))
        except Exception:  # a stage that did not run left no file
            return None

    extracted, validation, decision, pushed = (maybe("raw", "snapshot.json"), maybe("validation", "summary.json"),
                                               maybe("evaluation", "decision.json"), maybe("push", "result.json"))
    drift = maybe("validation", "drift.json")
    registry = ModelRegistry(s3, settings.s3_bucket, settings.s3_prefix, ManifestVerifier.from_env())
    champion = registry.champion()
    # The local S3 server stops with the demo: keep a copy of the run's two reports, laid out as in S3 so
    # the evaluation report's link to ../validation/report.html works offline.
    copies = local / "reports" / artifacts.root.rsplit("/", 1)[-1]
    report = validation_report = None
    for key, path in (((validation or {}).get("report_key"), copies / "validation" / "report.html"),
                      ((validation or {}).get("result_key"), copies / "validation" / "result.json"),
                      ((decision or {}).get("report_key"), copies / "evaluation" / "report.html")):
        if key:  # reports for people: bounded reads, no record to check them against here
            path.parent.mkdir(parents=True, exist_ok=True)
            objects.download(s3, settings.s3_bucket, key, path, max_bytes=256 * 1024 * 1024)
    if (copies / "evaluation" / "report.html").exists():
        report = copies / "evaluation" / "report.html"
    if (copies / "validation" / "report.html").exists():
        validation_report = copies / "validation" / "report.html"

    def brief(metrics):
        return None if metrics is None else {k: round(metrics[k], 4) for k in
                                             ("roc_auc", "pr_auc", "f1", "precision", "recall", "log_loss",
                                              "threshold")}

    return {
        "run_id": run_id,
        "run_artifacts": artifacts.uri(artifacts.root),
        "rows_extracted": extracted and extracted["rows"],
        "data_fingerprint": extracted and extracted["fingerprint"],
        "validation": None if validation is None else {
            "success": validation["success"], "statistics": validation["statistics"],
            "failures": validation["failures"], "report": artifacts.uri(validation["report_key"]),
            "local_copy": str(validation_report)},
        "candidate": decision and {"version": decision["candidate_version"], **brief(decision["candidate"])},
        "champion_before": decision and decision["champion_version"] and {
            "version": decision["champion_version"], **brief(decision["champion"])},
        "drift": drift and ({"drifted": drift["drifted"]} if drift.get("checked") else drift.get("reason")),
        "decision": decision and {"bless": decision["bless"], "reason": decision["reason"]},
        "evaluation_report": report and {"s3": artifacts.uri(decision["report_key"]), "local_copy": str(report)},
        "pushed": bool(pushed and pushed["pushed"]),
        "champion_now": champion and {"version": champion.version,
                                      "model": registry.uri(champion.pointer["model_key"]),
                                      "pointer": registry.uri(registry.pointer_key)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", type=int, default=100_000, help="synthetic customers to load")
    parser.add_argument("--csv", help="load this Kaggle-format CSV instead of synthetic data")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=1, help="DAG runs one after the other")
    parser.add_argument("--conf", default="{}", help="JSON params for the runs, e.g. '{\"promotion_margin\": 0.01}'")
    parser.add_argument("--workdir", default=str(ROOT / ".local"))
    parser.add_argument("--serve", action="store_true",
                        help="afterwards, serve the champion with gunicorn (same local S3) until Ctrl-C")
    parser.add_argument("--serve-port", type=int, default=8000)
    args = parser.parse_args()

    local = Path(args.workdir)
    (local / "airflow").mkdir(parents=True, exist_ok=True)
    log_file = local / "pipeline.log"
    log_file.write_text("")
    keys = local / "signing"
    if not (keys / "signing.key").exists():
        generate_key_pair(keys)
    signing = local_services.signing_env(keys / "signing.key", keys / "signing.pub")
    os.environ.update(signing)  # the summary and the service read the registry through the public key
    settings = Settings.from_env()
    started = time.perf_counter()
    mongo = local_services.start_mongo(log_dir=str(local))
    s3_server = local_services.start_s3(bucket=settings.s3_bucket)
    try:
        print(f"local services: MongoDB wire on {mongo.url}, S3 on {s3_server.url}", flush=True)
        env = airflow_env(local, {"MONGO_URI": mongo.url, **s3_server.env, **signing,
                                  **local_services.airflow_connections(mongo, s3_server, settings.mongo_database)})
        load = [sys.executable, "-m", "cross_sell", "load"]
        load += ["--csv", args.csv] if args.csv else ["--synthetic", str(args.synthetic), "--seed", str(args.seed)]
        # Its progress (a bar on a terminal, a line every 10 s otherwise) and errors go to this terminal.
        loaded = subprocess.run(load, env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        if loaded.returncode != 0:
            return loaded.returncode
        print(loaded.stdout.strip(), flush=True)
        if run([sys.executable, "-m", "airflow", "db", "migrate"], env, log_file) != 0:
            print(f"airflow db migrate failed; see {log_file}", file=sys.stderr)
            return 1
        s3 = local_services.s3_client_for(s3_server)
        status = 0
        for number in range(1, args.runs + 1):
            print(f"DAG run {number}/{args.runs}: airflow dags test {DAG_ID} --conf '{args.conf}' "
                  f"(task logs: {log_file})", flush=True)
            progress = TaskProgress(local / "airflow" / "airflow.db", s3, settings)
            code = run([sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "--conf", args.conf], env, log_file,
                       watch=progress)
            run_id = _latest_run(s3, settings)
            print(json.dumps(summarize(s3, settings, run_id, local), indent=2), flush=True)
            if code != 0:
                print(f"DAG run failed (exit {code}); task logs in {log_file}", file=sys.stderr)
                status = code
        print(f"done in {time.perf_counter() - started:.0f} s; full log: {log_file}", flush=True)
        if args.serve and status == 0:
            serve(s3_server, args.serve_port, local)
        return status
    finally:
        s3_server.stop()
        mongo.stop()


def serve(s3_server, port: int, local: Path) -> None:
    """The prediction service on the champion just trained, behind the nginx front as shipped, until
    Ctrl-C (or SIGTERM). Without nginx installed, gunicorn answers on the port itself (loopback only)."""
    env = {**s3_server.env, "SERVING_POLL_SECONDS": "5"}
    try:
        service = local_services.start_serving(env, log_path=str(local / "serving.log"))
        front = local_services.start_front(service.env["SERVING_SOCKET"], port=port,
                                           workdir=str((local / "front").resolve()))
    except RuntimeError as missing:  # no nginx on this machine
        print(f"{missing}; serving without the front", file=sys.stderr)
        service.stop()
        service = front = local_services.start_serving(env, port=port, log_path=str(local / "serving.log"))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    example = json.dumps({"records": [schema.example_record()]})
    print(f"serving the champion on {front.url} (form at {front.url}/, logs in {local / 'serving.log'}):\n"
          f"  curl -s {front.url}/predict -H 'Content-Type: application/json' -d '{example}'\n"
          "Ctrl-C stops everything.", flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        if front is not service:
            front.stop()
        service.stop()


def _latest_run(s3, settings: Settings) -> str:
    """`airflow dags test` names its run itself; the newest run folder in S3 is the one just made."""
    prefix = f"{settings.s3_prefix}/runs/"
    listing = s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix=prefix)
    newest = max(listing.get("Contents", []), key=lambda item: item["LastModified"], default=None)
    return newest["Key"][len(prefix):].split("/")[0] if newest else "none"


if __name__ == "__main__":
    sys.exit(main())
