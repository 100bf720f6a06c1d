"""Micro-batching returns each request its own rows, from the model that request started with."""

import threading

import joblib
import pytest
from serving_support import train_model

from cross_sell import features, synthetic
from serving.batching import MicroBatcher
from serving.champion import LoadedModel


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch")
    loaded = []
    for seed in (1, 2):
        fields = train_model(folder / f"{seed}.joblib", seed=seed, rows=3_000)
        loaded.append(LoadedModel(f"v{seed}", joblib.load(folder / f"{seed}.joblib"), fields["threshold"], fields,
                                  "", 0.0))
    return loaded


class Counting:
    """A model wrapper that counts calls into the model."""

    def __init__(self, model):
        self.model, self.version, self.calls = model, model.version, 0
        self.onnx = None  # a scikit-learn engine: only these go through the batching queue

    def predict(self, matrix):
        self.calls += 1
        return self.model.predict(matrix)


def test_concurrent_requests_get_their_own_rows_and_model(models):
    counted = [Counting(m) for m in models]
    batcher = MicroBatcher()
    frames = [features.model_input(synthetic.generate(1 + i % 5, seed=i)) for i in range(40)]
    results, start = {}, threading.Barrier(len(frames))

    def call(i):
        start.wait()
        results[i] = batcher.predict(counted[i % 2], frames[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(frames))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for i, frame in enumerate(frames):
        assert results[i] == models[i % 2].predict(frame), i
    assert sum(c.calls for c in counted) < len(frames)  # requests did share model calls


def test_a_failing_model_fails_only_its_requests(models):
    class Broken:
        version, onnx = "broken", None

        def predict(self, matrix):
            raise RuntimeError("model exploded")

    batcher = MicroBatcher()
    frame = features.model_input(synthetic.generate(2, seed=3))
    with pytest.raises(RuntimeError, match="exploded"):
        batcher.predict(Broken(), frame)
    assert batcher.predict(models[0], frame) == models[0].predict(frame)  # the batcher thread survived
