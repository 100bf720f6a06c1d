"""The run's evaluation report (HTML, figures embedded) and the model card of a pushed model (markdown,
and the same card as an HTML page).

Both are rendered with Jinja2 from `templates/` (`pages`: every value escaped for the page's language);
figures are drawn with matplotlib's Agg backend and embedded as PNG data URIs, so the report is one
self-contained file next to the run's other artifacts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from .. import clock
from ..data import schema
from ..pages import markdown_to_html, png, render
from . import evaluation, fairness, features, model_families


def model_facts(model, test: pd.DataFrame, seed: int = 0) -> dict:
    """Everything the report shows about one model on the test split (also kept as JSON)."""
    y, probability, threshold = evaluation.predictions(model, test)
    return {
        "metrics": evaluation.metrics_of(y, probability, threshold),
        "confusion": skm.confusion_matrix(y, (probability >= threshold).astype(int), labels=[0, 1]).tolist(),
        "slices": evaluation.slice_metrics(test, y, probability, threshold),
        "importance": evaluation.feature_importance(model, test, seed=seed),
        "calibration": evaluation.calibration_table(y, probability),
        "fairness": fairness.assess(test, y, probability, threshold),
        "_y": y, "_probability": probability,  # for the figures only; dropped before saving
    }


def _figures(facts: dict[str, dict]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figures = {}
    figure, (roc, pr, calibration) = plt.subplots(1, 3, figsize=(15, 4.4))
    for name, fact in facts.items():
        y, p = fact["_y"], fact["_probability"]
        fpr, tpr, _ = skm.roc_curve(y, p)
        roc.plot(fpr, tpr, label=f"{name} (AUC {fact['metrics']['roc_auc']:.4f})")
        precision, recall, _ = skm.precision_recall_curve(y, p)
        pr.plot(recall, precision, label=f"{name} (AP {fact['metrics']['pr_auc']:.4f})")
        observed, predicted = calibration_curve(y, p, n_bins=15, strategy="quantile")
        calibration.plot(predicted, observed, marker="o", ms=3, label=name)
    roc.plot([0, 1], [0, 1], ls=":", c="grey")
    calibration.plot([0, 1], [0, 1], ls=":", c="grey")
    # Legends at fixed corners: "best" searches every vertex of every curve (tens of thousands on a large test
    # split) for the emptiest spot, which cost most of the figure's time.
    for axis, title, xlabel, ylabel, corner in (
            (roc, "ROC", "false positive rate", "true positive rate", "lower right"),
            (pr, "Precision-recall", "recall", "precision", "upper right"),
            (calibration, "Calibration", "mean predicted probability", "observed rate", "upper left")):
        axis.set(title=title, xlabel=xlabel, ylabel=ylabel)
        axis.legend(loc=corner, fontsize=8)
    figures["curves"] = png(figure)

    figure, axes = plt.subplots(1, len(facts), figsize=(4.2 * len(facts), 3.6), squeeze=False)
    for axis, (name, fact) in zip(axes[0], facts.items(), strict=True):
        skm.ConfusionMatrixDisplay(np.asarray(fact["confusion"]), display_labels=["no", "yes"]).plot(
            ax=axis, colorbar=False, values_format="d")
        axis.set_title(f"{name} @ threshold {fact['metrics']['threshold']:.3f}")
    figures["confusion"] = png(figure)

    figure, axis = plt.subplots(figsize=(7, 4))
    names = [row["feature"] for row in facts["candidate"]["importance"]][::-1]
    width = 0.8 / len(facts)
    for i, (name, fact) in enumerate(facts.items()):
        drop = {row["feature"]: row["roc_auc_drop"] for row in fact["importance"]}
        axis.barh(np.arange(len(names)) + i * width, [drop[n] for n in names], height=width, label=name)
    axis.set_yticks(np.arange(len(names)) + width * (len(facts) - 1) / 2, names)
    axis.set(title="Permutation importance", xlabel="ROC-AUC drop when the feature is shuffled")
    axis.legend(loc="lower right", fontsize=8)
    figures["importance"] = png(figure)
    figures["fairness"] = _fairness_figure(facts, plt)
    return figures


def _fairness_figure(facts: dict[str, dict], plt) -> str:
    """Per protected attribute: selection, true- and false-positive rate by group, each model's bars."""
    attributes = list(facts["candidate"]["fairness"])
    rates = (("selection_rate", "selection rate"), ("true_positive_rate", "true positive rate"),
             ("false_positive_rate", "false positive rate"))
    figure, axes = plt.subplots(len(attributes), len(rates), figsize=(15, 3.4 * len(attributes)), squeeze=False)
    width = 0.8 / len(facts)
    for row, attribute in zip(axes, attributes, strict=True):
        names = [group["group"] for group in facts["candidate"]["fairness"][attribute]["groups"]]
        for axis, (key, title) in zip(row, rates, strict=True):
            for i, (name, fact) in enumerate(facts.items()):
                values = {g["group"]: g[key] for g in fact["fairness"][attribute]["groups"]}
                axis.bar(np.arange(len(names)) + i * width, [values.get(n) or 0.0 for n in names], width=width,
                         label=name)
            axis.set_xticks(np.arange(len(names)) + width * (len(facts) - 1) / 2, names)
            axis.set(title=f"{attribute}: {title}", ylim=(0, 1))
            axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    return png(figure)


def public(facts: dict) -> dict:
    """`model_facts` without the per-row arrays: what goes into JSON."""
    return {k: v for k, v in facts.items() if not k.startswith("_")}


def evaluation_report(decision: Mapping[str, Any], facts: dict[str, dict], run: dict) -> str:
    """The HTML report: `facts` maps "candidate" (and "champion" when there is one) to `model_facts`."""
    return render("evaluation_report.html.j2",
        decision=decision, facts=facts, figures=_figures(facts), run=run,
        generated_at=clock.stamp())


def validation_report(summary: dict, result: dict, run: dict) -> str:
    """The validation result as one self-contained HTML page (no CDN): each expectation, what was
    observed, unexpected counts and the most frequent unexpected values (none of a personal or identifying
    column). `summary` is what `stages.validate` saves."""
    from ..data.validation import SUITE_NAME, expectation_rows

    failed = summary.get("failures", [])
    return render("validation_report.html.j2",
        summary=summary, failed=failed, rows=expectation_rows(result, failed), run=run,
        suite=SUITE_NAME, generated_at=clock.stamp())


def model_card(manifest: dict, facts: dict | None) -> str:
    """Markdown model card of a pushed version; `facts` is the candidate's `public(model_facts)`. Every value
    (an approver's comment, a reason, a run id...) is literal text: no link, tag or table cell comes from one."""
    return render("model_card.md.j2", manifest=manifest, facts=facts, features=features, schema=schema,
                  families=model_families)


def model_card_html(manifest: dict, facts: dict | None) -> str:
    """The same model card as a self-contained HTML page (`model_card.html` beside `model_card.md`)."""
    return markdown_to_html(model_card(manifest, facts), title=f"Model card: version {manifest.get('version')}")
