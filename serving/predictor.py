"""Validating rows and predicting them with the champion: the service's work, callable without Flask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cross_sell.data import schema
from cross_sell.model import model_input

from . import metrics
from .champion import ChampionHolder, LoadedModel
from .payload import ClientError, RequestRows
from .sampling import RequestSampler


@dataclass(frozen=True)
class Prediction:
    model: LoadedModel
    probabilities: list[float]
    labels: list[int]
    ids: list | None = None  # the request's identifier column, echoed back (never fed to the model)


class Predictor:
    def __init__(self, holder: ChampionHolder, sampler: RequestSampler):
        self.holder = holder
        self.sampler = sampler

    def predict(self, rows: RequestRows, allow_text: bool = False) -> Prediction:
        """Rows checked against the schema's serving environment (422 listing every problem), then
        predicted by the model current when the call started, whatever a swap does meanwhile."""
        model = self.holder.current
        if model is None:
            raise ClientError(503, "no champion model is loaded yet")
        checked = rows.check(allow_text)
        if checked.problems:
            raise ClientError(422, "invalid input",
                              [{"row": p.row, "field": p.column, "message": p.reason} for p in checked.problems])
        matrix = model_input.from_columns(checked.columns, np.empty((checked.rows, len(schema.FEATURES)),
                                                                    dtype=np.float32))
        probabilities, labels = model.predict(matrix)
        picks = self.sampler.choose(checked.rows)
        if picks:  # the rows and what was answered (monitoring: skew, prediction drift, shadow agreement)
            self.sampler.add([{**checked.record(i), "probability": probabilities[i]} for i in picks], model.version)
        metrics.observe_predictions(model.version, probabilities, labels)
        return Prediction(model, probabilities, labels, checked.passthrough)
