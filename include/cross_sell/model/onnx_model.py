"""A model as it is served: its ONNX file run by ONNX Runtime (NumPy and onnxruntime only).

The pipeline converts every candidate to ONNX when it trains it (`onnx_export`), and the registry
publishes `model.onnx` beside `model.joblib`. The service, batch scoring, `evaluate` (for the
champion) and the CLI all score through this class, so nothing that serves ever unpickles.

Inputs go to ONNX as float32: every feature of the schema is an integer code below 2**24 or a
premium, so only a premium within float32 rounding of a split (its spacing is 0.03 at 500,000)
could take the other branch; `onnx_export` measures the difference before a model is blessed.
"""

from __future__ import annotations

import os

import numpy as np

# The model's outputs as skl2onnx names them (with zipmap off): label and probabilities.
PROBABILITIES = "probabilities"


# Below this many rows a call runs on a one-thread session even when the model has more threads: waking
# ONNX Runtime's pool costs more than it saves on a few rows, and from ~100 rows two threads halve the
# time (benchmarks/README.md, "One validation engine").
PARALLEL_ROWS = 64


class OnnxModel:
    """`predict_proba(matrix)[:, 1]` and the decision threshold of one model."""

    def __init__(self, onnx_bytes: bytes, threshold: float, threads: int = 1):
        self._session = _session(onnx_bytes, threads)
        self._single = _session(onnx_bytes, 1) if threads > 1 else self._session
        self._input = self._session.get_inputs()[0].name
        names = [o.name for o in self._session.get_outputs()]
        if PROBABILITIES not in names:
            raise ValueError(f"the ONNX model has no {PROBABILITIES!r} output (outputs: {names})")
        self._output = names.index(PROBABILITIES)
        self.threshold = float(threshold)

    def probability(self, matrix: np.ndarray) -> np.ndarray:
        """Positive-class probabilities (float64) for rows of `model_input`."""
        session = self._session if len(matrix) >= PARALLEL_ROWS else self._single
        outputs = session.run(None, {self._input: np.asarray(matrix, dtype=np.float32)})
        return outputs[self._output][:, 1].astype(np.float64)

    def labels(self, probability: np.ndarray) -> np.ndarray:
        return (probability >= self.threshold).astype(np.int64)


def _session(onnx_bytes: bytes, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads  # 2 halve a 10,000-row call
    options.inter_op_num_threads = 1
    # Idle threads must not spin: the process's other work needs that core.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # A model loaded from bytes may name external-data files, which ONNX Runtime would look for in a
    # folder of its own choosing: point it at one no file can be in, so only the verified bytes load.
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", os.devnull)
    return onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
