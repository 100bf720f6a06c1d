"""Benchmark: model quality by 5-fold stratified cross-validation on the real sample, vs the seed baseline.

    python benchmarks/bench_model_quality.py [--csv ../shared/data/cross_sell_sample.csv]

Each fold's training part is split 85/15 (the pipeline's train/validation proportions) and goes
through the project's own `training.train` (target encoding + gradient boosting + F1-tuned threshold);
the held-out fold is scored at the model's threshold. In the same run, on the same folds:
- the seed project's approach: one-hot features, SMOTEENN resampling, RandomForest, threshold 0.5;
- a default HistGradientBoostingClassifier on the same model input (threshold tuned like ours).
Also prints the best F1 any threshold could reach on each held-out fold (an upper bound).
Targets: ROC-AUC >= 0.858 and F1 >= 0.46, training under 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.model_selection import StratifiedKFold, TunedThresholdClassifierCV, train_test_split

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "include"))

from cross_sell.data import loader, schema  # noqa: E402
from cross_sell.model import features, training  # noqa: E402

SAMPLE = ROOT.parent / "shared" / "data" / "cross_sell_sample.csv"


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


def default_hgb(train: pd.DataFrame, validation: pd.DataFrame, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = features.features_and_label(train)
    model = HistGradientBoostingClassifier(random_state=seed).fit(x, y)
    xv, yv = features.features_and_label(validation)
    return TunedThresholdClassifierCV(model, scoring="f1", cv="prefit", refit=False, thresholds=200).fit(xv, yv)


def best_f1(y, probability) -> float:
    precision, recall, _ = skm.precision_recall_curve(y, probability)
    return float(np.max(2 * precision * recall / np.maximum(precision + recall, 1e-12)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--csv", default=str(SAMPLE))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    frame = loader.read_csv(args.csv).sort_values(schema.KEY).reset_index(drop=True)
    y_all = frame[schema.LABEL].to_numpy()
    results: dict[str, dict[str, list]] = {}

    def record(name, y, probability, threshold, seconds):
        scores = results.setdefault(name, {"roc_auc": [], "f1": [], "best_f1": [], "seconds": []})
        scores["roc_auc"].append(skm.roc_auc_score(y, probability))
        scores["f1"].append(skm.f1_score(y, probability >= threshold))
        scores["best_f1"].append(best_f1(y, probability))
        scores["seconds"].append(seconds)

    folds = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed)
    for fold, (fit_rows, test_rows) in enumerate(folds.split(frame, y_all)):
        fit, test = frame.iloc[fit_rows], frame.iloc[test_rows]
        train, validation = train_test_split(fit, test_size=0.15 / 0.85, stratify=fit[schema.LABEL],
                                             random_state=args.seed)
        x_test, y_test = features.features_and_label(test)

        started = time.perf_counter()
        model = training.train(train, validation, seed=args.seed)
        record("this project", y_test, model.predict_proba(x_test)[:, 1], training.threshold(model),
               time.perf_counter() - started)

        started = time.perf_counter()
        model = default_hgb(train, validation, args.seed)
        record("default HGB", y_test, model.predict_proba(x_test)[:, 1], model.best_threshold_,
               time.perf_counter() - started)

        started = time.perf_counter()
        x_fit, y_fit = features.features_and_label(fit)  # the seed project had no validation split
        model = seed_baseline(args.seed).fit(x_fit, y_fit)
        record("seed RF+SMOTEENN", y_test, model.predict_proba(x_test)[:, 1], 0.5, time.perf_counter() - started)
        print(f"fold {fold + 1}/{args.folds} done", file=sys.stderr, flush=True)

    print(f"model quality: {args.folds}-fold stratified CV on {len(frame):,} rows of {Path(args.csv).name} "
          f"(positive rate {y_all.mean():.2%})")
    print(f"{'':18s} {'ROC-AUC':>15s} {'F1 @ threshold':>15s} {'best F1':>8s} {'train s':>8s}")
    for name, scores in results.items():
        auc, f1 = np.array(scores["roc_auc"]), np.array(scores["f1"])
        print(f"{name:18s} {auc.mean():8.4f} ±{auc.std():.4f} {f1.mean():8.4f} ±{f1.std():.4f} "
              f"{np.mean(scores['best_f1']):8.4f} {np.mean(scores['seconds']):8.1f}")
    ours = results["this project"]
    auc, f1 = np.mean(ours["roc_auc"]), np.mean(ours["f1"])
    print(f"targets: ROC-AUC >= 0.858: {'PASS' if auc >= 0.858 else 'FAIL'} ({auc:.4f}); "
          f"F1 >= 0.46: {'PASS' if f1 >= 0.46 else 'FAIL'} ({f1:.4f}); "
          f"training <= 60 s: {'PASS' if max(ours['seconds']) <= 60 else 'FAIL'} ({max(ours['seconds']):.1f} s)")


if __name__ == "__main__":
    main()
