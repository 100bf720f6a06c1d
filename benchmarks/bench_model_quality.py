"""Benchmark: the model families (`cross_sell.model_families`) by 5-fold stratified CV on the real sample.

    python benchmarks/bench_model_quality.py [--csv ../shared/data/cross_sell_sample.csv]
        [--families hgb lightgbm lightgbm_catboost] [--seconds 10] [--skip-serving] [--skip-381k] [--baselines]

For each family, on the same folds (stratified, shuffled, seed 0), the project's own `training.train` on four
folds (fitted on all their rows, its threshold the F1-best cut of their pooled 5-fold out-of-fold predictions),
scored on the fifth: ROC-AUC (mean ± sd), PR-AUC, log loss, and the nested F1 (at the threshold chosen
without the fifth fold). Then, per family: `training.train`'s CPU and wall seconds on the whole sample and on
the train + validation split of 381,109 synthetic rows (what the pipeline fits at the Kaggle file's size),
ONNX Runtime's time per 1,000 rows on one thread, and the service's CPU per one-row request with that model
(nginx + 2 gunicorn workers, 8 `wrk` clients, as `bench_serving.py` measures it; the families alternate).
`--baselines` adds the seed project's approach (one-hot, SMOTEENN, RandomForest, threshold 0.5) and a default
HistGradientBoostingClassifier (threshold tuned the same way), on the same folds.
Targets (issue #33): the default reaches CV ROC-AUC >= 0.8585 and nested F1 >= 0.46 at the lowest serving cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.model_selection import StratifiedKFold

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "include"), str(ROOT / "benchmarks")]

from cross_sell.data import loader, schema, synthetic  # noqa: E402
from cross_sell.model import features, model_families, training  # noqa: E402

SAMPLE = ROOT.parent / "shared" / "data" / "cross_sell_sample.csv"
TARGET_ROC_AUC, TARGET_F1 = 0.8585, 0.46


def seed_baseline(seed: int):
    """The seed project's model: one-hot + scaling, SMOTEENN, RandomForest (threshold 0.5)."""
    from imblearn.combine import SMOTEENN
    from imblearn.pipeline import make_pipeline
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    position = {name: i for i, name in enumerate(schema.FEATURES)}
    # The seed project's own encoding: string categories and codes one-hot, every other column scaled.
    coded = [c.name for c in schema.COLUMNS if c.role == "feature" and (c.kind == "category" or c.categorical)]
    categorical = [position[n] for n in coded]
    numeric = [position[n] for n in schema.FEATURES if n not in coded]
    encode = ColumnTransformer([("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
                                ("scale", StandardScaler(), numeric)])
    return make_pipeline(encode, SMOTEENN(random_state=seed),
                         RandomForestClassifier(n_estimators=100, min_samples_leaf=5, n_jobs=-1, random_state=seed))


def default_hgb(fit: pd.DataFrame, seed: int):
    """A default HistGradientBoostingClassifier on the model input, threshold from out-of-fold predictions."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = features.features_and_label(fit)
    model = HistGradientBoostingClassifier(random_state=seed)
    threshold, _ = training.f1_threshold(y, training.out_of_fold(model, x, y, seed))
    return model.fit(x, y), threshold


def timed(call, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    value = call(*args, **kwargs)
    return value, time.perf_counter() - wall, time.process_time() - cpu


def cross_validate(frame: pd.DataFrame, families: list[str], folds: int, seed: int, baselines: bool) -> dict:
    y_all = frame[schema.LABEL].to_numpy()
    results: dict[str, dict[str, list]] = {}

    def record(name, y, probability, threshold, cpu):
        scores = results.setdefault(name, {"roc_auc": [], "pr_auc": [], "log_loss": [], "f1": [], "cpu": []})
        scores["roc_auc"].append(skm.roc_auc_score(y, probability))
        scores["pr_auc"].append(skm.average_precision_score(y, probability))
        scores["log_loss"].append(skm.log_loss(y, np.clip(probability, 1e-15, 1 - 1e-15)))
        scores["f1"].append(skm.f1_score(y, probability >= threshold))
        scores["cpu"].append(cpu)

    for fold, (fit_rows, test_rows) in enumerate(StratifiedKFold(folds, shuffle=True,
                                                                 random_state=seed).split(frame, y_all)):
        fit, test = frame.iloc[fit_rows].reset_index(drop=True), frame.iloc[test_rows]
        x_test, y_test = features.features_and_label(test)
        for family in families:
            model, _, cpu = timed(training.train, fit, fit.iloc[:0], seed, family=family)
            record(family, y_test, model.predict_proba(x_test)[:, 1], training.threshold(model), cpu)
        if baselines:
            (model, threshold), _, cpu = timed(default_hgb, fit, seed)
            record("default HGB", y_test, model.predict_proba(x_test)[:, 1], threshold, cpu)
            x_fit, y_fit = features.features_and_label(fit)
            model, _, cpu = timed(seed_baseline(seed).fit, x_fit, y_fit)
            record("seed RF+SMOTEENN", y_test, model.predict_proba(x_test)[:, 1], 0.5, cpu)
        print(f"fold {fold + 1}/{folds} done", file=sys.stderr, flush=True)
    return results


def onnx_ms_per_1000(onnx: bytes, x: np.ndarray, repeats: int = 40) -> tuple[float, float]:
    """Median wall and CPU ms of one 1,000-row call on a one-thread ONNX Runtime session."""
    from cross_sell.model.onnx_model import OnnxModel

    model = OnnxModel(onnx, 0.5, threads=1)
    rows = np.ascontiguousarray(x[:1000], dtype=np.float32)
    model.probability(rows)
    walls, cpus = [], []
    for _ in range(repeats):
        _, wall, cpu = timed(model.probability, rows)
        walls.append(1000 * wall)
        cpus.append(1000 * cpu)
    return statistics.median(walls), statistics.median(cpus)


def serving_cpu(exports: dict[str, tuple[bytes, float]], seconds: float, rounds: int) -> dict[str, list[float]]:
    """The service's CPU (nginx + gunicorn) per one-row request at 8 clients, for each family's ONNX file as the
    champion; the families alternate, `rounds` times."""
    from bench_serving import ONE_ROW, cpu_per_request, wrk

    from cross_sell.model import model_input
    from cross_sell.storage.registry import ModelRegistry
    from cross_sell.storage.signing import ManifestSigner, ManifestVerifier, generate_key_pair
    from devstack import local_services

    bucket = "bench-model-quality"
    workdir = Path(tempfile.mkdtemp(prefix="bench-model-quality-"))
    private_key, public_key = generate_key_pair(workdir / "keys")
    signer = ManifestSigner.from_file(private_key)
    s3_server = local_services.start_s3(bucket=bucket)
    found: dict[str, list[float]] = {name: [] for name in exports}
    try:
        for name, (onnx, threshold) in exports.items():  # each family the champion under a prefix of its own
            registry = ModelRegistry(local_services.s3_client_for(s3_server), bucket, name,
                                     ManifestVerifier.from_file(public_key))
            registry.publish({"version": name, "threshold": threshold, "model_input": model_input.LAYOUT},
                             {"model.onnx": onnx}, signer)
            registry.set_champion(name, None, "promote", signer, run_id="bench")
        for _ in range(rounds):
            for name in exports:
                env = {**s3_server.env, "CROSS_SELL_S3_BUCKET": bucket, "CROSS_SELL_S3_PREFIX": name,
                       "CROSS_SELL_SIGNING_PUBLIC_KEY": str(public_key), "SERVING_SAMPLE_RATE": "0.01"}
                server = local_services.start_serving(env, workers=2, log_path=str(workdir / f"{name}.log"))
                front = local_services.start_front(server.env["SERVING_SOCKET"], workdir=str(workdir / f"front-{name}"))
                try:
                    wrk(front.url, 8, 2, ONE_ROW)  # warm-up
                    _, cpu_ms = cpu_per_request(front.url, 8, seconds, server.process.pid, front.process.pid)
                    found[name].append(cpu_ms)
                finally:
                    front.stop()
                    server.stop()
    finally:
        s3_server.stop()
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--csv", default=str(SAMPLE))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--families", nargs="+", default=list(model_families.FAMILIES))
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk seconds per serving measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating serving rounds")
    parser.add_argument("--skip-serving", action="store_true")
    parser.add_argument("--skip-381k", action="store_true")
    parser.add_argument("--baselines", action="store_true", help="also the seed project's model and a default HGB")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    frame = loader.read_csv(args.csv).sort_values(schema.KEY).reset_index(drop=True)
    results = cross_validate(frame, args.families, args.folds, args.seed, args.baselines)

    from cross_sell.model import onnx_export


    fit_seconds: dict[str, dict[str, tuple[float, float]]] = {}
    exports: dict[str, tuple[bytes, float]] = {}
    onnx_ms: dict[str, tuple[float, float]] = {}
    x_sample, _ = features.features_and_label(frame)
    big = None if args.skip_381k else features.split(synthetic.generate(381_109, seed=2026), seed=42)
    for family in args.families:
        model, wall, cpu = timed(training.train, frame, frame.iloc[:0], args.seed, family=family)
        fit_seconds[family] = {"57k": (wall, cpu)}
        exports[family] = (onnx_export.to_onnx(model), training.threshold(model))
        onnx_ms[family] = onnx_ms_per_1000(exports[family][0], x_sample)
        if big is not None:
            _, wall, cpu = timed(training.train, big["train"], big["validation"], 42, family=family)
            fit_seconds[family]["381k"] = (wall, cpu)
        print(f"{family}: timed", file=sys.stderr, flush=True)
    serving = {} if args.skip_serving else serving_cpu(exports, args.seconds, args.rounds)

    print(f"model quality: {args.folds}-fold stratified CV (seed {args.seed}) on {len(frame):,} rows of "
          f"{Path(args.csv).name} (positive rate {frame[schema.LABEL].mean():.2%}); {os.cpu_count()} cores, "
          f"started {started}, load average at the end {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"{'':18s} {'ROC-AUC':>16s} {'PR-AUC':>7s} {'nested F1':>16s} {'log loss':>8s} {'CV fit CPU s':>12s}")
    for name, scores in results.items():
        auc, f1 = np.array(scores["roc_auc"]), np.array(scores["f1"])
        print(f"{name:18s} {auc.mean():8.4f} ±{auc.std():.4f} {np.mean(scores['pr_auc']):7.4f} "
              f"{f1.mean():8.4f} ±{f1.std():.4f} {np.mean(scores['log_loss']):8.4f} {np.mean(scores['cpu']):12.1f}")
    print(f"{'':18s} {'fit 57k: wall/CPU s':>20s} {'fit 381k: wall/CPU s':>21s} {'ONNX ms/1k: wall/CPU':>21s} "
          f"{'service CPU ms/request (8 clients)':>36s}")
    for family in args.families:
        small, large = fit_seconds[family]["57k"], fit_seconds[family].get("381k")
        request = serving.get(family, [])
        print(f"{family:18s} {small[0]:9.1f} / {small[1]:6.1f} "
              f"{(f'{large[0]:9.1f} / {large[1]:6.1f}' if large else 'skipped'):>21s} "
              f"{onnx_ms[family][0]:10.2f} / {onnx_ms[family][1]:6.2f} "
              f"{(', '.join(f'{v:.3f}' for v in request) if request else 'skipped'):>36s}")
    passing = [f for f in args.families
               if np.mean(results[f]["roc_auc"]) >= TARGET_ROC_AUC and np.mean(results[f]["f1"]) >= TARGET_F1]
    print(f"targets: CV ROC-AUC >= {TARGET_ROC_AUC} and nested F1 >= {TARGET_F1}: "
          f"{', '.join(passing) or 'no family'} reach(es) both")
    if passing:
        cost = {f: statistics.median(serving[f]) if serving.get(f) else onnx_ms[f][1] for f in passing}
        print(f"lowest serving cost among them: {min(cost, key=cost.__getitem__)} "
              f"({'service CPU per request' if serving else 'ONNX CPU per 1,000 rows'}); "
              f"the deployment default is {model_families.DEFAULT}")


if __name__ == "__main__":
    main()
