"""The model families a run may train (`CROSS_SELL_MODEL`, the training DAG's `model` param) and how each
becomes one ONNX graph.

Every family is one scikit-learn pipeline on the same model input (`model_input`): the schema's preprocessing
(`features.preprocessor`: the features, then the target encoding of region and channel; a feature a family
or a run leaves out is dropped there), then its estimator. So the service loads one ONNX file per version,
whatever the family:

| family | estimator | ONNX converter |
| --- | --- | --- |
| `hgb` | scikit-learn HistGradientBoosting (8 leaves, >= 200 rows each, early stopping) | skl2onnx |
| `lightgbm` | LightGBM, tuned on the real sample; Vintage dropped | onnxmltools' LightGBM converter in skl2onnx |
| `lightgbm_catboost` | the mean of that LightGBM and a CatBoost (no `cat_features`) | both, in a soft vote |

Training is deterministic for every family (seeds everywhere, thread counts fixed), so `reproduce` rebuilds
the same bytes. The figures behind the parameters and the default: benchmarks/README.md ("Model families").
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import NotRetryable

# LightGBM's OpenMP threads spin while waiting by default: on a busy 2-core machine that made it 5x slower.
# Read when the OpenMP runtime starts, so set before LightGBM (or anything that loads it) is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The ONE thread count every family trains with: the same bytes on every machine (a model's floating-point
# sums do not depend on the cores it ran on), and CPU time is what the pipeline is measured by.
THREADS = 1

HGB_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05,
    "max_iter": 600,
    "max_leaf_nodes": 8,
    "min_samples_leaf": 200,
    "l2_regularization": 1.0,
    "early_stopping": True,
    "validation_fraction": 0.1,
    "n_iter_no_change": 20,
}
# Tuned on the real sample (5-fold CV with the project's preprocessing; issue #33).
LIGHTGBM_PARAMS: dict[str, Any] = {
    "n_estimators": 483,
    "learning_rate": 0.0177,
    "num_leaves": 12,
    "min_child_samples": 25,
    "colsample_bytree": 0.815,
    "subsample": 0.783,
    "subsample_freq": 1,
    "reg_lambda": 0.0177,
    "min_child_weight": 0.178,
    "max_bin": 255,
}
CATBOOST_PARAMS: dict[str, Any] = {
    "iterations": 400,
    "learning_rate": 0.05,
    "depth": 6,
    "l2_leaf_reg": 5.0,
}


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    params: dict[str, Any]  # recorded in the manifest as `estimator_params`
    dropped: tuple[str, ...] = ()  # features this family leaves out (inside the pipeline)
    converters: tuple[str, ...] = field(default=())  # what `register_converters` must know

    def estimator(self, seed: int, params: dict[str, Any] | None = None):
        return _ESTIMATORS[self.name](seed, copy.deepcopy(self.params if params is None else params))


def _hgb(seed: int, params: dict):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=seed, **params)


def _lightgbm(seed: int, params: dict):
    from lightgbm import LGBMClassifier

    return LGBMClassifier(random_state=seed, n_jobs=THREADS, deterministic=True, force_row_wise=True, verbose=-1,
                          **params)


def _catboost(seed: int, params: dict):
    from catboost import CatBoostClassifier

    return CatBoostClassifier(random_seed=seed, thread_count=THREADS, verbose=0, allow_writing_files=False,
                              **params)


def _mean(seed: int, params: dict):
    from sklearn.ensemble import VotingClassifier

    return VotingClassifier([("lightgbm", _lightgbm(seed, params["lightgbm"])),
                             ("catboost", _catboost(seed, params["catboost"]))], voting="soft",
                            flatten_transform=False)


_ESTIMATORS = {"hgb": _hgb, "lightgbm": _lightgbm, "lightgbm_catboost": _mean}


def scrub(estimator) -> None:
    """Make a fitted estimator's pickle depend on its data and params only: CatBoost stamps each model with a
    random `model_guid` and its finishing time (a version's name is its file's sha256, `reproduce` compares)."""
    steps = getattr(estimator, "steps", None) or [(None, estimator)]
    for _, step in steps:
        for fitted in getattr(step, "estimators_", None) or [step]:
            if type(fitted).__module__.startswith("catboost"):
                metadata = fitted.get_metadata()
                metadata["model_guid"] = "scrubbed"
                metadata["train_finish_time"] = ""

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("hgb", "scikit-learn HistGradientBoostingClassifier (8 leaves, >= 200 rows each, early stopping)",
           HGB_PARAMS),
    Family("lightgbm", "LightGBM (483 trees of 12 leaves, tuned on the real sample), Vintage dropped",
           LIGHTGBM_PARAMS, dropped=("Vintage",), converters=("lightgbm",)),
    Family("lightgbm_catboost", "the equal-weight mean of that LightGBM and a CatBoost (400 trees of depth 6), "
           "Vintage dropped", {"lightgbm": LIGHTGBM_PARAMS, "catboost": CATBOOST_PARAMS}, dropped=("Vintage",),
           converters=("lightgbm", "catboost")),
)}
# Chosen by its figures (benchmarks/README.md, "Model families"): the lowest serving cost among the
# families that reach the quality targets.
DEFAULT = "lightgbm"
ENV = "CROSS_SELL_MODEL"


class UnknownFamily(NotRetryable, ValueError):
    """A family name no deployment knows (the DAG's `model` param lists the valid ones)."""


def get(name: str | None) -> Family:
    """The family named `name` (None: the deployment's `CROSS_SELL_MODEL`, else `DEFAULT`)."""
    name = name or os.environ.get(ENV) or DEFAULT
    if name not in FAMILIES:
        raise UnknownFamily(f"unknown model family {name!r} (families: {', '.join(FAMILIES)})")
    return FAMILIES[name]


# -- ONNX ------------------------------------------------------------------------------------------------
# LightGBM's and CatBoost's converters write tree ensembles of the ML domain's version 3 (skl2onnx would
# choose 5, which it cannot write yet); the default domain at skl2onnx 1.20's newest tested opset.
TARGET_OPSET = {"": 22, "ai.onnx.ml": 3}
_registered: set[str] = set()


def register_converters_for(estimator) -> bool:
    """Register what skl2onnx needs for `estimator` (a family's last step); whether it needed any."""
    module = type(estimator).__module__
    if module.startswith("lightgbm"):
        register_converters(FAMILIES["lightgbm"])
    elif module.startswith("catboost") or type(estimator).__name__ == "VotingClassifier":
        register_converters(FAMILIES["lightgbm_catboost"])
    else:
        return False
    return True


def register_converters(family: Family) -> None:
    """Teach skl2onnx the family's estimators (once per process)."""
    for name in family.converters:
        if name in _registered:
            continue
        {"lightgbm": _register_lightgbm, "catboost": _register_catboost}[name]()
        _registered.add(name)


_OPTIONS = {"nocl": [True, False], "zipmap": [True, False, "columns"]}


def _register_lightgbm() -> None:
    from lightgbm import LGBMClassifier
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

    update_registered_converter(LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes,
                                convert_lightgbm, options=_OPTIONS)


def _register_catboost() -> None:
    """CatBoost writes its own ONNX (one TreeEnsembleClassifier node, as it documents); its node goes into
    the graph skl2onnx builds, in place of the estimator."""
    from catboost import CatBoostClassifier
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

    update_registered_converter(CatBoostClassifier, "CatBoostCatBoostClassifier",
                                calculate_linear_classifier_output_shapes, _convert_catboost,
                                parser=_parse_catboost, options=_OPTIONS)


def _parse_catboost(scope, model, inputs, custom_parsers=None):
    from skl2onnx._parse import _apply_zipmap, _get_sklearn_operator_name
    from skl2onnx.common.data_types import Int64TensorType, guess_tensor_type

    options = scope.get_options(model, dict(zipmap=True))
    operator = scope.declare_local_operator(_get_sklearn_operator_name(type(model)), model)
    operator.inputs = inputs
    operator.outputs.append(scope.declare_local_variable("label", Int64TensorType()))
    operator.outputs.append(scope.declare_local_variable("probabilities", guess_tensor_type(inputs[0].type)))
    if isinstance(options["zipmap"], bool) and not options["zipmap"]:
        return operator.outputs
    return _apply_zipmap(options["zipmap"], scope, model, inputs[0].type, operator.outputs)


def _convert_catboost(scope, operator, container):
    import onnx
    from catboost.utils import convert_to_onnx_object

    converted = convert_to_onnx_object(operator.raw_operator)
    nodes = list(converted.graph.node)
    if (len(nodes) not in (1, 2) or not nodes[0].op_type.startswith("TreeEnsemble")
            or converted.graph.initializer or (len(nodes) == 2 and nodes[1].op_type != "ZipMap")):
        raise NotImplementedError(f"CatBoost's ONNX graph is not one tree ensemble: {[n.op_type for n in nodes]}")
    opsets = {d.domain: d.version for d in converted.opset_import}
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    container.add_node(nodes[0].op_type, [operator.inputs[0].full_name],
                       [operator.outputs[0].full_name, operator.outputs[1].full_name],
                       op_domain=nodes[0].domain, op_version=opsets.get(nodes[0].domain), **attributes)
