"""Serve the champion through ONNX Runtime: the verified scikit-learn model, converted when it loads.

A one-row `predict_proba` of the scikit-learn pipeline costs 1.5-3 ms, nearly all of it per-call
checks and a Python loop over the trees; the same model in ONNX Runtime answers in about 15 us
(README, "Prediction service"; benchmarks/bench_serving.py). The registry keeps the joblib file as the one
artifact: it is sha-checked and unpickled as before, then converted with skl2onnx and compared with
scikit-learn on `parity_rows()`. If the conversion fails or disagrees, the service keeps using
scikit-learn and says why in /model, so a model skl2onnx cannot express is still served correctly.

Inputs go to ONNX as float32: every feature of the schema is an integer code below 2**24 or a
premium, so only a premium within float32 rounding of a split (its spacing is 0.03 at 500,000) could
take the other branch.
"""

from __future__ import annotations

import functools

import numpy as np

from cross_sell import features, schema, synthetic

# Largest |probability difference| accepted between ONNX Runtime and scikit-learn on `parity_rows`.
# float32 trees measured 2e-7 on 15,000 rows, unknown codes and NaN included.
TOLERANCE = 1e-5


@functools.cache  # the same rows for every model a worker loads; built once per process
def parity_rows(seed: int = 0) -> np.ndarray:
    """Model input that exercises every tree path the service can reach (read-only).

    Synthetic customers, plus, for each feature, rows that sweep it over everything the serving
    schema admits (each allowed value, or its whole range for codes and numbers), the other fields
    held at the schema's example; plus one unknown code and one missing value per feature.
    """
    blocks = [features.model_input(synthetic.generate(2_000, seed=seed))]
    base = features.model_input_rows(schema.cast_records([schema.example_record()])[0])[0]
    for position, name in enumerate(schema.FEATURES):
        column = schema.BY_NAME[name]
        if name in features.CODES:
            values = list(features.CODES[name].values())
        elif column.allowed:
            values = [float(v) for v in column.allowed]
        elif column.kind == "integer" and column.maximum - column.minimum <= 1_000:
            values = list(np.arange(column.minimum, column.maximum + 1, dtype="float64"))
        else:
            values = list(np.linspace(column.minimum, column.maximum, 501))
        block = np.tile(base, (len(values) + 2, 1))
        block[:, position] = [*values, -1.0, np.nan]
        blocks.append(block)
    rows = np.vstack(blocks)
    rows.flags.writeable = False  # shared by every caller
    return rows


class OnnxEngine:
    """`predict_proba(matrix)[:, 1]` of one fitted model, run by ONNX Runtime."""

    def __init__(self, model, threads: int = 2):
        import onnxruntime
        from skl2onnx import to_onnx

        estimator = getattr(model, "estimator_", model)  # TunedThresholdClassifierCV wraps the pipeline
        final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
        converted = to_onnx(estimator, np.zeros((1, len(schema.FEATURES)), dtype=np.float32),
                            options={id(final): {"zipmap": False}})
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # 2 halve a 10,000-row call; a one-row call is no slower
        options.inter_op_num_threads = 1
        # Idle threads must not spin: the worker's other requests need that core.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(converted.SerializeToString(), options,
                                                     providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._output = [o.name for o in self._session.get_outputs()].index("probabilities")

    def positive_probability(self, matrix: np.ndarray) -> np.ndarray:
        outputs = self._session.run(None, {self._input: matrix.astype(np.float32)})
        return outputs[self._output][:, 1].astype(np.float64)


def convert(model, threads: int = 2) -> tuple[OnnxEngine | None, str | None]:
    """The model's ONNX engine, or None and the reason it cannot stand in for scikit-learn."""
    try:
        engine = OnnxEngine(model, threads)
        rows = parity_rows()
        difference = float(np.max(np.abs(engine.positive_probability(rows) - model.predict_proba(rows)[:, 1])))
    except Exception as error:  # an estimator skl2onnx cannot convert is served by scikit-learn
        return None, f"ONNX conversion failed: {type(error).__name__}: {error}"
    if not difference <= TOLERANCE:  # also catches NaN
        return None, f"ONNX disagrees with scikit-learn by {difference:.2e} (> {TOLERANCE:.0e})"
    return engine, None
