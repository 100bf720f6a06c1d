"""`python -m cross_sell shadow report`: the challenger in shadow against the champion, on the same rows.

Every sampled request row the service kept holds the champion's answer and, while a challenger is in
shadow, the challenger's answer to the same row (scored off the request path). The report: how often
the two agree on the label, how far apart their probabilities are, both distributions, and, when
outcomes exist, both models' realized metrics on the customers whose outcome is known (scored here
through the same verified ONNX path as everything else). Promotion stays the pipeline's decision.
"""

from __future__ import annotations

import numpy as np

from ..data import casting, schema
from ..model import model_input
from . import daily as monitoring
from . import skew

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def run(clients, since=None, realized: bool = False) -> dict | None:
    """The `shadow report` operation; `realized`: also both models' realized metrics (reads the outcomes and
    customers collections). None when no sampled row was scored in shadow."""
    settings = clients.settings
    outcomes = customers = None
    if realized:
        outcomes = clients.collection(settings.outcomes_collection)
        customers = clients.collection(settings.mongo_collection)
    return report(clients.registry, since, outcomes, customers)


def report(registry, since=None, outcomes=None, customers=None) -> dict | None:
    samples = skew.read_samples(registry.s3, registry.bucket, registry.prefix, since)
    paired = samples.dropna(subset=["probability", "shadow_probability"]) if len(samples) else samples
    if not len(paired):
        return None
    out = {}
    for shadow_version, rows in paired.groupby("shadow_version"):
        champion_versions = sorted(rows["model_version"].unique())
        champion_threshold = registry.manifest(champion_versions[-1])["threshold"]
        shadow_threshold = registry.manifest(shadow_version)["threshold"]
        champion_p = rows["probability"].to_numpy(dtype=float)
        shadow_p = rows["shadow_probability"].to_numpy(dtype=float)
        agree = (champion_p >= champion_threshold) == (shadow_p >= shadow_threshold)
        out[shadow_version] = {
            "rows": int(len(rows)), "champion_versions": champion_versions,
            "label_agreement": float(agree.mean()),
            "mean_abs_difference": float(np.mean(np.abs(champion_p - shadow_p))),
            "correlation": float(np.corrcoef(champion_p, shadow_p)[0, 1]) if len(rows) > 1 else None,
            "champion_quantiles": dict(zip(map(str, QUANTILES), np.quantile(champion_p, QUANTILES).tolist(),
                                           strict=True)),
            "shadow_quantiles": dict(zip(map(str, QUANTILES), np.quantile(shadow_p, QUANTILES).tolist(),
                                         strict=True)),
            "realized": _realized(registry, champion_versions[-1], shadow_version, outcomes, customers),
        }
    return {"shadows": out}


def _realized(registry, champion: str, shadow: str, outcomes, customers) -> dict | str:
    """Both models on the customers whose outcome is known, or why there is nothing to show."""
    import pandas as pd

    if outcomes is None or customers is None:
        return "no outcomes source (give --mongo-uri)"
    known = list(outcomes.find({}, projection={"_id": False, "id": True, "Response": True}, batch_size=10_000))
    if not known:
        return "no outcomes yet"
    ids = [row["id"] for row in known]
    fields = {name: True for name in schema.FEATURES}
    found = pd.DataFrame(list(customers.find({"_id": {"$in": ids}}, projection={"_id": False, "id": True, **fields},
                                             batch_size=10_000)))
    if not len(found):
        return "no customer of the outcomes found"
    typed, problems = casting.validate_frame(found, schema.SCORING, allow_text=False)
    bad = {p.row for p in problems}
    typed = typed[[i not in bad for i in range(len(typed))]]
    joined = typed.merge(pd.DataFrame(known), on="id")
    y, matrix = joined["Response"].to_numpy(dtype=int), model_input.from_frame(joined)
    figures = {}
    for role, version in (("champion", champion), ("shadow", shadow)):
        model, _ = registry.served_model(version)
        figures[role] = {"version": version, **monitoring.realized(y, model.probability(matrix), model.threshold)}
    return figures
