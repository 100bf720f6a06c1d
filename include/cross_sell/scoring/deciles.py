"""Deciles of the scored customers in constant memory: a fixed-size histogram of their probabilities
gives the cut-offs between deciles and the campaign's cut-off, and `DecileStats` the lift and gain per
decile (expected buyers per call from the champion's test-split calibration)."""

from __future__ import annotations

import numpy as np

from ..model import evaluation

DECILES = 10
HISTOGRAM_BINS = 100_000  # probabilities to 1e-5: deciles and campaign cut-offs in constant memory

BIN_BOUNDS = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)


def add_to_histogram(histogram: np.ndarray, probability: np.ndarray) -> None:
    """`np.histogram(probability, HISTOGRAM_BINS, range=(0, 1))` added in place, without its two
    bins-sized temporaries (1.6 MB per batch): bin i holds [bound i, bound i+1), the last one also 1.0."""
    np.add.at(histogram, np.minimum(np.searchsorted(BIN_BOUNDS, probability, side="right") - 1,
                                    HISTOGRAM_BINS - 1), 1)


def cutoff(from_top: np.ndarray, customers: float) -> float:
    """The lower bound of the histogram bin where the `customers` most likely ones are reached;
    `from_top` counts the customers at or above each bin's lower bound, top bin first."""
    reached = int(np.searchsorted(from_top, customers, side="left"))
    return float(BIN_BOUNDS[HISTOGRAM_BINS - 1 - min(reached, HISTOGRAM_BINS - 1)])


def decile_edges(histogram: np.ndarray) -> np.ndarray:
    """Probability cut-offs between deciles, highest first: decile 1 holds the most likely buyers."""
    from_top = np.cumsum(histogram[::-1])
    total = from_top[-1] if len(from_top) else 0
    return np.asarray([cutoff(from_top, total * k / DECILES) for k in range(1, DECILES)])


def decile_of(probability: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """1 for the top tenth (probability at or above the first edge) ... 10 for the bottom tenth."""
    return 1 + np.sum(probability[:, None] < edges[None, :], axis=1)


class DecileStats:
    """Customers, mean probability and expected buyers per decile, accumulated batch by batch."""

    def __init__(self, calibration: dict | None):
        self.calibration = calibration
        self.source = "the champion's test-split calibration" if calibration else \
            "the model's probabilities (this version has no calibration table)"
        self.count = np.zeros(DECILES + 1)
        self.probability = np.zeros(DECILES + 1)
        self.expected = np.zeros(DECILES + 1)

    def add(self, probability: np.ndarray, decile: np.ndarray) -> None:
        rate = evaluation.calibrated_rate(self.calibration, probability) if self.calibration else probability
        self.count += np.bincount(decile, minlength=DECILES + 1)
        self.probability += np.bincount(decile, weights=probability, minlength=DECILES + 1)
        self.expected += np.bincount(decile, weights=rate, minlength=DECILES + 1)

    def table(self) -> list[dict]:
        total_customers, total_expected = self.count[1:].sum(), self.expected[1:].sum()
        overall = total_expected / max(total_customers, 1)
        rows, cumulative = [], 0.0
        for d in range(1, DECILES + 1):
            n = self.count[d]
            per_call = self.expected[d] / n if n else 0.0
            cumulative += self.expected[d]
            rows.append({"decile": d, "customers": int(n),
                         "mean_probability": float(self.probability[d] / n) if n else 0.0,
                         "expected_buyers_per_call": float(per_call), "expected_buyers": float(self.expected[d]),
                         "lift": float(per_call / overall) if overall else 0.0,
                         "cumulative_gain": float(cumulative / total_expected) if total_expected else 0.0})
        return rows


def lift_table(deciles: list[dict]) -> str:
    lines = [f"{'decile':>6s} {'customers':>10s} {'buyers/call':>11s} {'expected':>10s} {'lift':>6s} {'gain':>6s}"]
    for row in deciles:
        lines.append(f"{row['decile']:6d} {row['customers']:10,d} {row['expected_buyers_per_call']:11.3f} "
                     f"{row['expected_buyers']:10,.0f} {row['lift']:6.2f} {row['cumulative_gain']:6.1%}")
    return "\n".join(lines)
