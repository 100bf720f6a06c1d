"""Benchmark: what training without a protected attribute (Gender) costs and changes, on the real sample.

    python benchmarks/bench_fairness.py [--csv ../shared/data/cross_sell_sample.csv] [--folds 5]

5-fold stratified cross-validation: each fold's training part is split 85/15 (the pipeline's
train/validation proportions) and goes through `training.train` twice on the same rows, with every
feature and with `exclude=("Gender",)`; the held-out fold is scored at each model's own threshold.
Per fold: ROC-AUC, and fairlearn's demographic-parity ratio and equalized-odds difference on Gender and
on Age bands (`cross_sell.model.fairness`). Prints each figure's mean and range over the folds, and the paired
difference (without Gender - with it) per fold.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn import metrics as skm
from sklearn.model_selection import StratifiedKFold, train_test_split

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "include"))

from cross_sell.data import loader, schema  # noqa: E402
from cross_sell.model import evaluation, fairness, training  # noqa: E402

SAMPLE = ROOT.parent / "shared" / "data" / "cross_sell_sample.csv"
VARIANTS = {"all features": (), "without Gender": ("Gender",)}


def figures(model, frame) -> dict:
    y, probability, threshold = evaluation.predictions(model, frame)
    measured = fairness.assess(frame, y, probability, threshold)
    return {"roc_auc": skm.roc_auc_score(y, probability),
            **{f"{attribute} {name}": measured[attribute][name] for attribute in ("Gender", "Age")
               for name in ("demographic_parity_ratio", "equalized_odds_difference")}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--csv", default=str(SAMPLE))
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    if not Path(args.csv).exists():
        print(f"no data at {args.csv}: this benchmark needs the real sample", file=sys.stderr)
        return 2
    frame = loader.read_csv(args.csv)
    print(f"{len(frame):,} rows, {args.folds}-fold CV, positive rate {frame[schema.LABEL].mean():.4f}")
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    folds = StratifiedKFold(args.folds, shuffle=True, random_state=0).split(frame, frame[schema.LABEL])
    for fold, (fit_index, test_index) in enumerate(folds):
        fit, test = frame.iloc[fit_index], frame.iloc[test_index].reset_index(drop=True)
        train, validation = train_test_split(fit, test_size=0.15, stratify=fit[schema.LABEL], random_state=fold)
        for name, exclude in VARIANTS.items():
            model = training.train(train.reset_index(drop=True), validation.reset_index(drop=True), fold, exclude)
            results[name].append(figures(model, test))
    keys = list(results["all features"][0])
    print(f"\n{'figure':<38}" + "".join(f"{name:>26}" for name in VARIANTS) + f"{'paired difference':>30}")
    for key in keys:
        row = f"{key:<38}"
        for name in VARIANTS:
            values = np.array([r[key] for r in results[name]], dtype=float)
            row += f"{values.mean():>10.4f} [{values.min():.4f}, {values.max():.4f}]"
        diff = np.array([b[key] - a[key] for a, b in zip(results["all features"], results["without Gender"],
                                                          strict=True)], dtype=float)
        row += f"{diff.mean():>+12.4f} [{diff.min():+.4f}, {diff.max():+.4f}]"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
