"""Issue #33: the model families, the fit on train + validation and the threshold from out-of-fold predictions.

Each family trains, converts to one ONNX graph that agrees with scikit-learn within `onnx_export.TOLERANCE`
on the test split and the schema sweep, takes the same model input, and is rebuilt byte for byte from its
signed manifest by `reproduce`.
"""

import io
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from cross_sell.data import schema, synthetic
from cross_sell.model import features, model_families, model_input, onnx_export, training
from cross_sell.model.onnx_model import OnnxModel
from cross_sell.operations import training as stages

FAMILIES = list(model_families.FAMILIES)


@pytest.fixture(scope="module")
def parts():
    return features.split(synthetic.generate(6_000, seed=12), seed=4)


@pytest.fixture(scope="module")
def models(parts):
    return {family: training.train(parts["train"], parts["validation"], seed=4, family=family) for family in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_served_as_one_faithful_onnx_graph(models, parts, family):
    model = models[family]
    x = model_input.from_frame(parts["test"])
    exported = onnx_export.export(model, training.threshold(model), x)
    assert exported.problem is None and exported.onnx is not None
    for rows in ("test_split", "schema_sweep"):
        assert exported.parity[rows]["max_abs_diff"] <= onnx_export.TOLERANCE
    import onnx

    graph = onnx.load_from_string(exported.onnx).graph
    assert [i.name for i in graph.input] == ["X"] and graph.input[0].type.tensor_type.shape.dim[1].dim_value == len(
        schema.FEATURES)  # the model input is the same whatever the family
    served = OnnxModel(exported.onnx, training.threshold(model))
    np.testing.assert_allclose(served.probability(x), model.predict_proba(x)[:, 1], rtol=0, atol=onnx_export.TOLERANCE)
    if model_families.FAMILIES[family].dropped:  # a dropped feature is dropped inside the graph
        vintage = list(schema.FEATURES).index("Vintage")
        moved = x.copy()
        moved[:, vintage] = moved[::-1, vintage]
        np.testing.assert_array_equal(served.probability(moved), served.probability(x))


def test_the_mean_family_is_the_mean_of_its_two_boosters(models, parts):
    model = models["lightgbm_catboost"].estimator_
    x = model.named_steps["preprocess"].transform(model_input.from_frame(parts["test"]))
    boosters = model.named_steps["model"].estimators_
    assert [type(b).__name__ for b in boosters] == ["LGBMClassifier", "CatBoostClassifier"]
    mean = (boosters[0].predict_proba(x)[:, 1] + boosters[1].predict_proba(x)[:, 1]) / 2
    np.testing.assert_allclose(model.named_steps["model"].predict_proba(x)[:, 1], mean, rtol=0, atol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_training_is_deterministic(models, parts, tmp_path, family):
    """Same data, seed and family: the same estimator file and the same ONNX bytes (what `reproduce` checks)."""
    again = training.train(parts["train"], parts["validation"], seed=4, family=family)
    first, second = (training.save(m, str(tmp_path / f"{i}.joblib")) for i, m in enumerate((models[family], again)))
    assert first == second
    assert onnx_export.to_onnx(again) == onnx_export.to_onnx(models[family])


def test_the_threshold_is_the_f1_best_cut_of_pooled_out_of_fold_predictions(models, parts):
    """The final model is fitted on train + validation; its threshold comes from the same pipeline's 5-fold
    out-of-fold predictions on those rows (each from a model that did not see the row)."""
    from sklearn import metrics as skm

    model = models["hgb"]
    fitted_on = pd.concat([parts["train"], parts["validation"]], ignore_index=True)
    x, y = features.features_and_label(fitted_on)
    assert model.oof_["rows"] == model.oof_["of_rows"] == len(fitted_on) and model.oof_["folds"] == 5
    pipeline = training.build_pipeline(4, family="hgb")
    oof = training.out_of_fold(pipeline, x, y, seed=4)
    # no cut does better on those predictions, and the threshold lies between two of them
    precision, recall, _ = skm.precision_recall_curve(y, oof)
    best = np.max(2 * precision * recall / np.maximum(precision + recall, 1e-12))
    assert skm.f1_score(y, oof >= training.threshold(model)) == pytest.approx(best, abs=1e-12)
    assert model.oof_["metrics"]["f1"] == pytest.approx(best, abs=1e-12)
    assert not np.isin(training.threshold(model), oof)
    # the served model is that pipeline fitted on every one of those rows
    np.testing.assert_array_equal(model.predict_proba(x), pipeline.fit(x, y).predict_proba(x))
    assert model.estimator_.named_steps["model"].n_features_in_ == len(schema.FEATURES) + 2  # + 2 target encodings


def test_large_runs_choose_the_threshold_on_a_stratified_sample():
    y = np.r_[np.ones(2_000), np.zeros(18_000)].astype(int)
    rows = training.oof_rows(y, seed=1, most=5_000)
    assert len(rows) == 5_000 and len(np.unique(rows)) == 5_000 and y[rows].mean() == pytest.approx(0.1)
    np.testing.assert_array_equal(rows, training.oof_rows(y, seed=1, most=5_000))  # seeded
    np.testing.assert_array_equal(training.oof_rows(y, seed=1, most=20_000), np.arange(20_000))  # all below it


def test_the_family_comes_from_the_deployment_setting(monkeypatch):
    assert model_families.get(None).name == model_families.DEFAULT
    monkeypatch.setenv("CROSS_SELL_MODEL", "hgb")
    assert model_families.get(None).name == "hgb" and model_families.get("lightgbm").name == "lightgbm"
    monkeypatch.setenv("CROSS_SELL_MODEL", "xgboost")
    with pytest.raises(model_families.UnknownFamily, match="unknown model family 'xgboost'"):
        model_families.get(None)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_pushed_with_its_record_and_reproduced_identically(s3, bucket, verifier, signer, family):
    from cross_sell.model.evaluation import Gate
    from cross_sell.operations import reproduce
    from cross_sell.storage.artifacts import RunArtifacts
    from cross_sell.storage.registry import ModelRegistry

    artifacts = RunArtifacts(s3, bucket, "vi", f"run-{family}")
    registry = ModelRegistry(s3, bucket, "vi", verifier)
    extracted = stages.extract(synthetic.generate(5_000, seed=21).to_dict("records"), artifacts)
    transformed = stages.transform(artifacts, extracted["snapshot"], seed=6,
                                   validated=stages.validate(artifacts, extracted["snapshot"], min_rows=1_000))
    trained = stages.train(artifacts, transformed, seed=6, run_started=datetime(2026, 12, 4, tzinfo=timezone.utc),
                           model=family)
    assert trained["model_family"] == family and trained["serving_problem"] is None
    gate = Gate(0.7, 0.002, max_equalized_odds_difference=1.0)  # 750 test rows: the Gender gap is noise here
    decision = stages.evaluate(artifacts, registry, trained, transformed["splits"]["test"], gate)
    assert decision["bless"], decision["reason"]
    assert stages.push(artifacts, registry, decision, trained, extracted, signer)["pushed"]
    manifest = registry.manifest(trained["version"])
    assert manifest["model_family"] == family and manifest["training"]["family"] == family
    assert manifest["estimator_params"] == model_families.FAMILIES[family].params
    assert manifest["training"]["fit_splits"] == ["train", "validation"]
    fitted_on = transformed["rows"]["train"] + transformed["rows"]["validation"]
    assert manifest["training"]["out_of_fold"]["rows"] == fitted_on
    assert f"model family `{family}`" in registry.artifact(trained["version"], "model_card.md").decode()
    rebuilt = reproduce.reproduce(registry, trained["version"])
    assert rebuilt["identical"] and rebuilt["onnx_sha256"]["identical"], rebuilt
    assert rebuilt["threshold"]["rebuilt"] == rebuilt["threshold"]["recorded"]


def test_a_version_trained_before_the_families_is_reproduced_the_way_it_was_trained(s3, bucket, verifier, signer):
    """A manifest without `training` (pushed before #33): the hgb recipe fitted on the train split, its threshold
    tuned on the validation split; `reproduce` rebuilds it that way, byte for byte."""
    from cross_sell.model import evaluation
    from cross_sell.operations import reproduce
    from cross_sell.storage.artifacts import RunArtifacts
    from cross_sell.storage.registry import ModelRegistry

    artifacts = RunArtifacts(s3, bucket, "vi", "old-run")
    registry = ModelRegistry(s3, bucket, "vi", verifier)
    extracted = stages.extract(synthetic.generate(4_000, seed=22).to_dict("records"), artifacts)
    transformed = stages.transform(artifacts, extracted["snapshot"], seed=8,
                                   validated=stages.validate(artifacts, extracted["snapshot"], min_rows=1_000))
    splits = {name: pd.read_parquet(io.BytesIO(artifacts.read(ref)))
              for name, ref in transformed["splits"].items()}
    old = training.train_on_train_split(splits["train"], splits["validation"], 8)
    onnx = onnx_export.export(old, training.threshold(old), model_input.from_frame(splits["test"])).onnx
    y, probability, _ = evaluation.predictions(
        evaluation.ServedClassifier(OnnxModel(onnx, training.threshold(old))), splits["test"])
    registry.publish({"version": "old", "threshold": training.threshold(old), "model_input": model_input.LAYOUT,
                      "metrics": evaluation.metrics_of(y, probability, training.threshold(old)), "seed": 8,
                      "excluded_features": [], "estimator_params": training.ESTIMATOR_PARAMS,
                      "lineage": {"snapshot": extracted["snapshot"], "splits": transformed["splits"]}},
                     {"model.onnx": onnx}, signer)
    rebuilt = reproduce.reproduce(registry, "old")
    assert rebuilt["identical"] and rebuilt["recorded_with"]["training"] is None, rebuilt


@pytest.mark.parametrize("family", ["hgb", "lightgbm"])
def test_the_onnx_bytes_are_the_same_in_another_process(models, family, tmp_path):
    """Issue #32: `reproduce` of a DAG's champion said DIFFERS with only the ONNX bytes differing. The same
    data, seed and family give the same bytes in a fresh interpreter with another hash seed."""
    import os
    import subprocess
    import sys

    script = ("import sys; from cross_sell.data import synthetic; from cross_sell.model import features, "
              "training, onnx_export; parts = features.split(synthetic.generate(6_000, seed=12), seed=4); "
              f"model = training.train(parts['train'], parts['validation'], seed=4, family={family!r}); "
              "sys.stdout.buffer.write(onnx_export.to_onnx(model))")
    here = onnx_export.to_onnx(models[family])
    for hash_seed in ("0", "1"):  # skl2onnx listed the opsets in one order under each (0: no hash randomization)
        other = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True,
                               env={**os.environ, "PYTHONHASHSEED": hash_seed}).stdout
        assert other == here, (hash_seed, onnx_export.differences(here, other))


def test_when_the_onnx_bytes_differ_reproduce_says_what_differs(s3, s3_env, bucket, verifier, signer, capsys,
                                                                monkeypatch):
    """Issue #32: a DIFFERS with no reason. A version whose recorded ONNX file was written by another converter
    version (its producer_version) is rebuilt: the report names the metadata field, finds the graph and the
    weights identical and the test-split predictions the same; the CLI's line says so."""
    import onnx

    from cross_sell.__main__ import main
    from cross_sell.model import evaluation
    from cross_sell.operations import reproduce
    from cross_sell.storage.artifacts import RunArtifacts
    from cross_sell.storage.registry import ModelRegistry

    artifacts = RunArtifacts(s3, bucket, "vi", "older-converter")
    registry = ModelRegistry(s3, bucket, "vi", verifier)
    extracted = stages.extract(synthetic.generate(4_000, seed=23).to_dict("records"), artifacts)
    transformed = stages.transform(artifacts, extracted["snapshot"], seed=9,
                                   validated=stages.validate(artifacts, extracted["snapshot"], min_rows=1_000))
    splits = {name: pd.read_parquet(io.BytesIO(artifacts.read(ref))) for name, ref in transformed["splits"].items()}
    model = training.train(splits["train"], splits["validation"], 9, family="hgb")
    threshold = training.threshold(model)
    graph = onnx.load_from_string(onnx_export.export(model, threshold, model_input.from_frame(splits["test"])).onnx)
    graph.producer_version = "0.0-older"
    recorded = graph.SerializeToString()
    y, probability, _ = evaluation.predictions(evaluation.ServedClassifier(OnnxModel(recorded, threshold)),
                                               splits["test"])
    registry.publish({"version": "v-older", "threshold": threshold, "model_input": model_input.LAYOUT,
                      "metrics": evaluation.metrics_of(y, probability, threshold), "seed": 9,
                      "excluded_features": [], "estimator_params": model_families.FAMILIES["hgb"].params,
                      "training": {"family": "hgb"},
                      "lineage": {"snapshot": extracted["snapshot"], "splits": transformed["splits"]}},
                     {"model.onnx": recorded}, signer)
    rebuilt = reproduce.reproduce(registry, "v-older")
    assert not rebuilt["identical"] and not rebuilt["onnx_sha256"]["identical"]
    assert rebuilt["onnx_sha256"]["differences"] == {"metadata": ["producer_version"], "graph_structure": "identical",
                                                     "initializers": []}
    assert rebuilt["onnx_sha256"]["test_predictions_identical"] is True
    assert rebuilt["largest_metric_difference"] == 0.0
    monkeypatch.setenv("CROSS_SELL_S3_BUCKET", bucket)
    monkeypatch.setenv("CROSS_SELL_S3_PREFIX", "vi")
    capsys.readouterr()
    assert main(["reproduce", "v-older"]) == 1
    assert "ONNX differs: metadata producer_version; test-split predictions identical" in capsys.readouterr().err
