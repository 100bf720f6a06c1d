"""The model as MLflow logs it: a pyfunc that answers like the service.

`mlflow.pyfunc.load_model(uri).predict(frame)` takes the raw customer columns (the serving schema's, with
their own types: Gender "Male", Vehicle_Age "1-2 Year", Age 44...) and, optionally, the identifier column
`id`; it checks every value with the service's engine (`casting`: a wrong value raises with the row and
field), builds the model input (`model_input`), runs the signed ONNX file with ONNX Runtime and applies the
tuned threshold: the probabilities and labels are the service's for the same rows. The ONNX file and its
threshold are the model's artifacts; this file is its code ("models from code": MLflow runs it, nothing is
unpickled), and the `cross_sell` package travels with it (`code_paths`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from mlflow.pyfunc.model import PythonModel

ONNX_ARTIFACT = "onnx"
THRESHOLD_ARTIFACT = "threshold"
ID = "id"


class ServedModel(PythonModel):
    """What MLflow loads: the ONNX file and its threshold, behind the service's checks."""

    def load_context(self, context) -> None:
        from cross_sell.model.onnx_model import OnnxModel

        threshold = json.loads(Path(context.artifacts[THRESHOLD_ARTIFACT]).read_text())["threshold"]
        self.model = OnnxModel(Path(context.artifacts[ONNX_ARTIFACT]).read_bytes(), threshold)

    def predict(self, context, model_input, params=None):
        import pandas as pd

        from cross_sell.data import casting, schema
        from cross_sell.model import model_input as layout

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        by_name = {name: frame[name].tolist() for name in frame.columns}
        checked = casting.check_columns(by_name, len(frame), passthrough=ID)
        if checked.problems:
            listed = "; ".join(f"row {p.row} {p.column}: {p.reason}" for p in checked.problems[:20])
            raise ValueError(f"invalid input ({len(checked.problems)} problem(s)): {listed}")
        matrix = layout.from_columns(checked.columns, np.empty((len(frame), len(schema.FEATURES)), dtype=np.float32))
        probability = self.model.probability(matrix)
        answer = pd.DataFrame({"probability": probability, "label": self.model.labels(probability)})
        if checked.passthrough is not None:
            answer.insert(0, ID, checked.passthrough)
        return answer


def signature_and_example():
    """The raw columns with their types (and the optional id), the outputs, and the schema's example row."""
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    from cross_sell.data import schema

    kinds = {"category": "string", "integer": "long", "float": "double"}
    inputs: list[ColSpec | TensorSpec] = [ColSpec(kinds[c.kind], c.name) for c in schema.columns(schema.SERVING)]
    inputs.append(ColSpec("long", ID, required=False))
    outputs: list[ColSpec | TensorSpec] = [ColSpec("double", "probability"), ColSpec("long", "label")]
    return ModelSignature(Schema(inputs), Schema(outputs)), pd.DataFrame([schema.example_record()])


def log(onnx_bytes: bytes, threshold: float, name: str = "model") -> None:
    """Log the pyfunc into the active MLflow run (the caller's `mlflow.start_run`)."""
    import tempfile

    import mlflow

    signature, example = signature_and_example()
    package = Path(__file__).resolve().parent.parent  # the whole cross_sell package travels with the model
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "model.onnx").write_bytes(onnx_bytes)
        (Path(tmp) / "threshold.json").write_text(json.dumps({"threshold": float(threshold)}))
        mlflow.pyfunc.log_model(
            name=name, python_model=str(Path(__file__).resolve()), code_paths=[str(package)],
            artifacts={ONNX_ARTIFACT: str(Path(tmp) / "model.onnx"),
                       THRESHOLD_ARTIFACT: str(Path(tmp) / "threshold.json")},
            signature=signature, input_example=example,
            pip_requirements=[f"onnxruntime=={_version('onnxruntime')}", f"numpy=={_version('numpy')}",
                              f"pandas=={_version('pandas')}"])


def _version(package: str) -> str:
    from importlib import metadata

    return metadata.version(package)


if __name__ != "cross_sell.model.mlflow_model":  # run by MLflow as the model's code (models from code)
    from mlflow.models import set_model

    set_model(ServedModel())
