"""Converting a trained candidate to ONNX (skl2onnx) and proving the conversion faithful.

Training converts the fitted scikit-learn estimator in memory and compares ONNX Runtime with
scikit-learn on the run's test split and on `parity_rows()`, rows that sweep every value the serving
schema admits for each feature. The largest absolute probability difference on each is recorded in the
manifest; a candidate that cannot be converted, or differs by more than `TOLERANCE`, is not blessed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from ..data import schema, synthetic
from . import model_families, model_input
from .onnx_model import OnnxModel

# Largest |probability difference| accepted between ONNX Runtime and scikit-learn: fifty times what
# float32 trees showed (benchmarks/README.md, "Figures behind the defaults").
TOLERANCE = 1e-5


@functools.cache  # the same rows for every model a process converts (read-only)
def parity_rows(seed: int = 0) -> np.ndarray:
    """Model input that exercises every tree path the service can reach.

    Synthetic customers, plus, for each feature, rows that sweep it over everything the serving
    schema admits (each allowed value, or its whole range for codes and numbers), the other fields
    held at the schema's example; plus one unknown code and one missing value per feature.
    """
    blocks = [model_input.from_frame(synthetic.generate(2_000, seed=seed))]
    base = model_input.example()[0]
    for position, name in enumerate(schema.FEATURES):
        column = schema.BY_NAME[name]
        if name in model_input.CODES:
            values = list(model_input.CODES[name].values())
        elif column.allowed:
            values = [float(v) for v in column.allowed]
        else:
            assert column.minimum is not None and column.maximum is not None, f"{name}: a numeric feature needs bounds"
            if column.kind == "integer" and column.maximum - column.minimum <= 1_000:
                values = list(np.arange(column.minimum, column.maximum + 1, dtype="float64"))
            else:
                values = list(np.linspace(column.minimum, column.maximum, 501))
        block = np.tile(base, (len(values) + 2, 1))
        block[:, position] = [*values, -1.0, np.nan]
        blocks.append(block)
    rows = np.vstack(blocks)
    rows.flags.writeable = False
    return rows


def to_onnx(model) -> bytes:
    """The fitted estimator's probability model as ONNX bytes (raises when skl2onnx cannot express it):
    one graph whatever the family (`model_families`), the mean of two boosters included."""
    from skl2onnx import to_onnx as convert

    estimator = getattr(model, "estimator_", model)  # the thresholded classifier wraps the pipeline
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    foreign = model_families.register_converters_for(final)
    converted = convert(estimator, np.zeros((1, len(schema.FEATURES)), dtype=np.float32),
                        options={id(final): {"zipmap": False}},
                        target_opset=model_families.TARGET_OPSET if foreign else None)
    _drop_unused_initializers(converted.graph)
    # skl2onnx lists the opsets in the order of a set of domain names, which follows the process's string-hash
    # seed: the same model would give other bytes in another process (issue #32, `reproduce` said DIFFERS).
    opsets = sorted(((o.domain, o.version) for o in converted.opset_import))
    del converted.opset_import[:]
    for domain, version in opsets:
        converted.opset_import.add(domain=domain, version=version)
    return converted.SerializeToString(deterministic=True)


def _drop_unused_initializers(graph) -> None:
    """Constants no node reads (the soft vote's class indices): ONNX Runtime warns about each on every load."""
    used = {name for node in graph.node for name in node.input}
    for initializer in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(initializer)


@dataclass
class Export:
    onnx: bytes | None  # None when the model cannot be served
    parity: dict = field(default_factory=dict)  # max |difference| per row set, and the tolerance
    problem: str | None = None  # why it cannot be served faithfully


def export(model, threshold: float, test_matrix: np.ndarray) -> Export:
    """Convert `model` and compare ONNX Runtime with scikit-learn on the test split and `parity_rows()`."""
    try:
        onnx = to_onnx(model)
        served = OnnxModel(onnx, threshold)
    except Exception as error:  # an estimator skl2onnx cannot express
        return Export(None, {"tolerance": TOLERANCE}, f"ONNX conversion failed: {type(error).__name__}: {error}")
    parity: dict = {"tolerance": TOLERANCE}
    for name, rows in (("test_split", test_matrix), ("schema_sweep", parity_rows())):
        difference = np.abs(served.probability(rows) - model.predict_proba(rows)[:, 1])
        parity[name] = {"rows": int(len(rows)), "max_abs_diff": float(np.max(difference)) if len(rows) else 0.0}
    worst = max(parity[name]["max_abs_diff"] for name in ("test_split", "schema_sweep"))
    if not worst <= TOLERANCE:  # also catches NaN
        return Export(onnx, parity, f"ONNX disagrees with scikit-learn by {worst:.2e} (> {TOLERANCE:.0e})")
    return Export(onnx, parity)


def differences(recorded: bytes, rebuilt: bytes) -> dict:
    """What differs between two ONNX files of one model, for `reproduce`: the model's metadata fields
    (producer, opset, IR version, doc string, metadata props), the graph's structure (nodes, their
    attributes, inputs and outputs, in order) and the initializers (weights) by name. Empty lists and
    `graph_structure: "identical"` when only the bytes' encoding differs."""
    import onnx

    old, new = onnx.load_from_string(recorded), onnx.load_from_string(rebuilt)
    fields = ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string")
    metadata = [name for name in fields if getattr(old, name) != getattr(new, name)]
    if [(o.domain, o.version) for o in old.opset_import] != [(o.domain, o.version) for o in new.opset_import]:
        metadata.append("opset_import")
    if {p.key: p.value for p in old.metadata_props} != {p.key: p.value for p in new.metadata_props}:
        metadata.append("metadata_props")

    def structure(graph) -> list[bytes]:
        return [node.SerializeToString(deterministic=True) for node in graph.node] + \
            [value.SerializeToString(deterministic=True) for value in (*graph.input, *graph.output)]

    weights_old = {t.name: t.SerializeToString(deterministic=True) for t in old.graph.initializer}
    weights_new = {t.name: t.SerializeToString(deterministic=True) for t in new.graph.initializer}
    return {"metadata": metadata,
            "graph_structure": "identical" if structure(old.graph) == structure(new.graph) else "differs",
            "initializers": sorted(name for name in set(weights_old) | set(weights_new)
                                   if weights_old.get(name) != weights_new.get(name))}
