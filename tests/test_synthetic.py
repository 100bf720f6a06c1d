import pandas as pd
import pytest

from cross_sell.data import casting, synthetic
from cross_sell.model import evaluation, features, training


def test_same_seed_same_rows_other_seed_other_rows():
    assert synthetic.generate(300, seed=5).equals(synthetic.generate(300, seed=5))
    assert not synthetic.generate(300, seed=5).equals(synthetic.generate(300, seed=6))


def test_rows_satisfy_the_contract():
    _, problems = casting.validate_frame(synthetic.generate(5_000, seed=1))
    assert problems == []


def test_marginals_follow_the_measured_facts():
    frame = synthetic.generate(60_000, seed=2)
    facts = synthetic.FACTS
    assert frame["Response"].mean() == pytest.approx(0.1226, abs=0.015)
    assert (frame["Gender"] == "Male").mean() == pytest.approx(facts["male_rate"], abs=0.01)
    assert (frame["Annual_Premium"] == synthetic.PREMIUM_FLOOR).mean() == pytest.approx(
        facts["premium_floor_rate"], abs=0.01)
    assert frame["Region_Code"].value_counts(normalize=True)[28] == pytest.approx(facts["region_probs"]["28"],
                                                                                 abs=0.01)
    # The dependence the model must learn: insured customers almost never respond.
    rate = frame.groupby("Previously_Insured")["Response"].mean()
    assert rate[1] < 0.02 < 0.15 < rate[0]


def _fit(frame: pd.DataFrame):
    parts = features.split(frame, seed=0)
    return training.train(parts["train"], parts["validation"], seed=0), parts["test"]


def test_model_on_synthetic_data_scores_like_the_real_data():
    model, test = _fit(synthetic.generate(40_000, seed=3))
    assert 0.80 <= evaluation.score(model, test)["roc_auc"] <= 0.90


def test_model_trained_on_synthetic_data_transfers_to_the_real_sample(sample_csv):
    from cross_sell.data import loader

    model, _ = _fit(synthetic.generate(40_000, seed=4))
    assert evaluation.score(model, loader.read_csv(str(sample_csv)))["roc_auc"] >= 0.80
