"""How well a model trained on synthetic customers does on real ones.

    python benchmarks/bench_synthetic_transfer.py [--rows 100000] [--csv ../shared/data/cross_sell_sample.csv]

Trains through the project's own training code on synthetic rows, then prints ROC-AUC and F1 on the
synthetic test split and on the real Kaggle-format file (target: 0.80-0.90 and >= 0.80).
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "include"))

from cross_sell.data import loader, synthetic  # noqa: E402
from cross_sell.model import evaluation, features, training  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--csv", default=str(ROOT.parent / "shared" / "data" / "cross_sell_sample.csv"))
    args = parser.parse_args()
    parts = features.split(synthetic.generate(args.rows, seed=args.seed), seed=args.seed)
    started = time.perf_counter()
    model = training.train(parts["train"], parts["validation"], seed=args.seed)
    result = {"synthetic_rows": args.rows, "train_seconds": round(time.perf_counter() - started, 2)}
    scored = {"synthetic test split": evaluation.score(model, parts["test"])}
    if Path(args.csv).exists():
        scored[f"real file {Path(args.csv).name}"] = evaluation.score(model, loader.read_csv(args.csv))
    for name, metrics in scored.items():
        result[name] = {k: round(metrics[k], 4) for k in ("rows", "roc_auc", "pr_auc", "f1", "precision", "recall")}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
