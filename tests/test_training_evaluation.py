import joblib
import numpy as np
import pytest

from cross_sell.data import casting, schema, synthetic
from cross_sell.model import evaluation, fairness, features, model_input, training
from cross_sell.monitoring import drift
from cross_sell.storage.registry import sha256_file


@pytest.fixture(scope="module")
def parts():
    return features.split(synthetic.generate(12_000, seed=31), seed=5)


@pytest.fixture(scope="module")
def model(parts):
    return training.train(parts["train"], parts["validation"], seed=5)


def test_split_is_stratified_disjoint_and_independent_of_row_order(parts):
    frame = synthetic.generate(12_000, seed=31)
    again = features.split(frame.sample(frac=1.0, random_state=9), seed=5)
    for name in features.SPLIT_FRACTIONS:
        assert again[name].equals(parts[name])
    sizes = {name: len(part) for name, part in parts.items()}
    assert sizes == {"train": 8_400, "validation": 1_800, "test": 1_800}
    ids = [set(part["id"]) for part in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    rates = [part["Response"].mean() for part in parts.values()]
    assert max(rates) - min(rates) < 0.005


def test_one_artifact_carries_preprocessing_and_threshold(tmp_path, model, parts):
    sha = training.save(model, str(tmp_path / "m.joblib"))
    assert sha == sha256_file(tmp_path / "m.joblib")
    loaded = joblib.load(tmp_path / "m.joblib")
    x = model_input.from_frame(parts["test"])
    proba = loaded.predict_proba(x)[:, 1]
    assert 0.0 < training.threshold(loaded) < 1.0
    np.testing.assert_array_equal(loaded.predict(x), (proba >= training.threshold(loaded)).astype(int))


def test_unseen_category_codes_do_not_break_prediction(model, parts):
    row = parts["test"].head(1).copy()
    row["Policy_Sales_Channel"] = 999
    row["Vehicle_Age"] = "brand new"
    assert 0.0 <= model.predict_proba(model_input.from_frame(row))[0, 1] <= 1.0


def test_the_engines_columns_rows_and_frames_give_one_model_input():
    """The engine's columns (service, batch scoring), plain rows (the request sampler) and a typed frame
    (training, evaluation) become the same model input, column for column."""
    frame = synthetic.generate(300, seed=4)[list(schema.FEATURES)]
    records = [{k: getattr(v, "item", lambda v=v: v)() for k, v in r.items()} for r in frame.to_dict("records")]
    checked = casting.check_records(records)
    assert not checked.problems
    columns = model_input.from_columns(checked.columns, np.empty((len(records), len(schema.FEATURES))))
    np.testing.assert_array_equal(columns, model_input.from_frame(frame))
    np.testing.assert_array_equal(columns, model_input.from_rows(records))
    assert [checked.record(i) for i in (0, 299)] == [records[0], records[299]]
    vehicle_age = columns[:, list(schema.FEATURES).index("Vehicle_Age")]
    assert set(np.unique(vehicle_age)) == {0.0, 1.0, 2.0}


def test_score_reports_every_metric(model, parts):
    scores = evaluation.score(model, parts["test"])
    assert set(scores) >= {"roc_auc", "pr_auc", "f1", "precision", "recall", "log_loss", "threshold"}
    assert 0.75 < scores["roc_auc"] < 0.95


@pytest.mark.parametrize("candidate, champion, bless", [
    (0.80, None, True), (0.70, None, False), (0.85, 0.84, True), (0.844, 0.84, False), (0.83, 0.84, False),
])
def test_blessing_rule(candidate, champion, bless):
    decided, reason = evaluation.decide({"roc_auc": candidate}, None if champion is None else {"roc_auc": champion},
                                        min_roc_auc=0.75, margin=0.005)
    assert decided is bless
    assert f"{candidate:.4f}" in reason


def test_version_is_sortable_and_content_addressed():
    from datetime import datetime, timezone

    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert training.version_for(stamp, "ab" * 32) == "20260102T030405Z-ababababab"


def test_small_calls_on_the_one_thread_session_answer_as_the_pool_does(model, parts):
    """A model with threads scores calls below `PARALLEL_ROWS` on a one-thread session of the same bytes.
    That session's answers do not depend on how many rows come together; the pool's differ from them by
    float32 summation order only (a few units of 2**-23: at most one for HGB's ~200 trees, as the pool's own
    answers to calls of 1 and 500 rows already did before the split; two for LightGBM's 483)."""
    from cross_sell.model import onnx_export
    from cross_sell.model.onnx_model import PARALLEL_ROWS, OnnxModel

    x = model_input.from_frame(parts["test"])
    onnx = onnx_export.export(model, 0.5, x).onnx
    x = x[:500]
    pooled, single = OnnxModel(onnx, 0.5, threads=2), OnnxModel(onnx, 0.5, threads=1)
    alone = single.probability(x)
    for size in (1, 10, PARALLEL_ROWS - 1):
        pieces = np.concatenate([pooled.probability(x[i:i + size]) for i in range(0, len(x), size)])
        np.testing.assert_array_equal(pieces, alone)
    np.testing.assert_allclose(pooled.probability(x), alone, rtol=0, atol=4 * 2**-23)


def test_fairness_figures_are_fairlearns(model, parts):
    """`fairness.assess` counts per group with NumPy (issue #33: fairlearn's loop was most of evaluate's CPU);
    its figures are fairlearn's, a group without buyers included."""
    from fairlearn.metrics import (
        MetricFrame,
        demographic_parity_ratio,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )


    test = parts["test"].reset_index(drop=True)
    y, probability, threshold = evaluation.predictions(model, test)
    y = y.copy()
    y[(test["Age"] >= 70).to_numpy()] = 0  # the 70+ band buys nothing: fairlearn says TPR 0 there
    found = fairness.assess(test, y, probability, threshold)
    predicted = (probability >= threshold).astype(int)
    for attribute, figures in found.items():
        sensitive = fairness.groups(test, attribute).to_numpy()
        frame = MetricFrame(metrics={"selection_rate": selection_rate, "true_positive_rate": true_positive_rate,
                                     "false_positive_rate": false_positive_rate},
                            y_true=y, y_pred=predicted, sensitive_features=sensitive).by_group
        assert [g["group"] for g in figures["groups"]] == [str(g) for g in frame.index]
        for group in figures["groups"]:
            expected = frame.loc[group["group"]]
            for name in ("selection_rate", "true_positive_rate", "false_positive_rate"):
                value = group[name]
                assert value == pytest.approx(expected[name], abs=1e-12)
        assert figures["demographic_parity_ratio"] == pytest.approx(
            demographic_parity_ratio(y, predicted, sensitive_features=sensitive), abs=1e-12)
        assert figures["equalized_odds_difference"] == pytest.approx(
            equalized_odds_difference(y, predicted, sensitive_features=sensitive), abs=1e-12)
    assert next(g for g in found["Age"]["groups"] if g["group"] == "70+")["true_positive_rate"] == 0.0


def test_permutation_importance_is_scikit_learns(model, parts):
    """`evaluation.feature_importance` rescores only the rows a permutation changed: the same figures as
    scikit-learn's `permutation_importance`."""
    from sklearn.inspection import permutation_importance

    sample = parts["test"].sample(n=800, random_state=3)
    x, y = features.features_and_label(sample)
    expected = permutation_importance(model, x, y, scoring="roc_auc", n_repeats=3, random_state=3)
    found = {row["feature"]: row for row in evaluation.feature_importance(model, parts["test"], seed=3, max_rows=800)}
    for name, mean, std in zip(schema.FEATURES, expected.importances_mean, expected.importances_std, strict=True):
        assert found[name]["roc_auc_drop"] == pytest.approx(mean, abs=1e-12)
        assert found[name]["std"] == pytest.approx(std, abs=1e-12)


def test_the_training_profile_counts_each_distinct_value_once(parts):
    """`drift.profile` keys each distinct value, not each row (issue #33: 2.3 million calls at 381k rows); the
    frequencies are those of keying every row."""

    frame = parts["train"].copy()
    frame.loc[frame.index[:7], "Policy_Sales_Channel"] = None  # missing values are a category of their own
    found = drift.profile(frame)["features"]
    for name in schema.DISCRETE_FEATURES:
        expected = frame[name].map(drift._key).value_counts(normalize=True, dropna=False)
        assert found[name]["frequencies"] == pytest.approx({str(k): float(v) for k, v in expected.items()}, abs=1e-15)
    assert found["Policy_Sales_Channel"]["frequencies"]["nan"] == pytest.approx(7 / len(frame))


def test_the_stages_compute_runs_without_storage(parts):
    """Issue #31 item 3: the train and evaluate stages' compute (`fit_candidate`, `judge_candidate`) are pure
    functions on frames, run here without S3, MongoDB or a DAG: a candidate is fitted, converted faithfully
    and profiled; judged against a champion it beats by more than the margin it is blessed, against itself it
    is not, and a champion that cannot be trusted stops the judgement unless the gate allows replacing it."""
    from cross_sell.operations import training as stages

    weak = stages.fit_candidate(parts["train"].head(300), parts["validation"].head(100), parts["test"], 5,
                                ("Previously_Insured", "Vehicle_Damage", "Age"), "hgb")
    strong = stages.fit_candidate(parts["train"], parts["validation"], parts["test"], 5, (), "hgb")
    assert strong.exported.onnx is not None and strong.exported.problem is None
    assert strong.exported.parity["test_split"] == {"rows": len(parts["test"]),
                                                    "max_abs_diff": pytest.approx(0, abs=1e-5)}
    assert 0 < strong.threshold < 1 and strong.profile != weak.profile
    served = {name: evaluation.ServedClassifier(_onnx(c)) for name, c in (("weak", weak), ("strong", strong))}
    gate = evaluation.Gate(min_roc_auc=0.6, margin=0.01)
    facts, verdict, replaced = stages.judge_candidate(served["strong"], served["weak"], parts["test"], gate,
                                                      baseline="v-weak", distrust=None, serving_problem=None)
    assert verdict.bless and replaced is None, verdict.reason
    assert facts["candidate"]["metrics"]["roc_auc"] > facts["champion"]["metrics"]["roc_auc"] + 0.01
    _, verdict, _ = stages.judge_candidate(served["strong"], served["strong"], parts["test"], gate,
                                           baseline="v-strong", distrust=None, serving_problem=None)
    assert not verdict.bless
    with pytest.raises(evaluation.UnreadableChampion):
        stages.judge_candidate(served["strong"], None, parts["test"], gate, baseline="v-x",
                               distrust="its signature does not verify", serving_problem=None)


def _onnx(candidate):
    from cross_sell.model.onnx_model import OnnxModel

    return OnnxModel(candidate.exported.onnx, candidate.threshold)
