"""Validating rows and predicting them with the champion: the service's work, callable without Flask."""

from __future__ import annotations

from dataclasses import dataclass

from cross_sell import model_input, schema

from . import metrics
from .champion import ChampionHolder, LoadedModel
from .payload import ClientError
from .sampling import RequestSampler


@dataclass(frozen=True)
class Prediction:
    model: LoadedModel
    probabilities: list[float]
    labels: list[int]


class Predictor:
    def __init__(self, holder: ChampionHolder, sampler: RequestSampler):
        self.holder = holder
        self.sampler = sampler

    def predict(self, records: list[dict], allow_text: bool = False) -> Prediction:
        """Rows checked against the schema's serving environment (422 listing every problem), then
        predicted by the model current when the call started, whatever a swap does meanwhile."""
        model = self.holder.current
        if model is None:
            raise ClientError(503, "no champion model is loaded yet")
        small = len(records) <= schema.SMALL_BATCH  # plain Python beats pandas' fixed cost on a few rows
        if small:
            rows, problems = schema.cast_records(records, schema.SERVING, allow_text=allow_text)
        else:
            typed, problems = schema.validate_records(records, schema.SERVING, allow_text=allow_text)
        if problems:
            raise ClientError(422, "invalid input",
                              [{"row": p.row, "field": p.column, "message": p.reason} for p in problems])
        picks = self.sampler.choose(len(records))
        if small:
            matrix, sampled = model_input.from_rows(rows), [rows[i] for i in picks]
        else:
            matrix, sampled = model_input.from_frame(typed), typed.iloc[picks].to_dict("records") if picks else []
        probabilities, labels = model.predict(matrix)
        if picks:  # the rows and what was answered (monitoring: skew, prediction drift, shadow agreement)
            self.sampler.add([{**row, "probability": probabilities[i]} for row, i in zip(sampled, picks, strict=True)],
                             model.version)
        metrics.observe_predictions(model.version, probabilities, labels)
        return Prediction(model, probabilities, labels)
