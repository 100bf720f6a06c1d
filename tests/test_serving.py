"""The prediction service through Flask's test client, against the local S3 registry."""

import json

import joblib
import numpy as np
import pandas as pd
import pytest
from serving_support import PREFIX, promote, publish, train_model

from cross_sell import features, schema, synthetic
from cross_sell.registry import ModelRegistry
from serving import onnx_engine
from serving.app import create_app
from serving.config import ServingConfig

MAX_ROWS = 50


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {name: (folder / f"{name}.joblib", train_model(folder / f"{name}.joblib", seed))
            for name, seed in (("v1", 1), ("v2", 2))}


@pytest.fixture
def registry(s3, s3_env, bucket, models):
    registry = ModelRegistry(s3, bucket, PREFIX)
    for version, (path, fields) in models.items():
        publish(registry, path, version, fields)
    return registry


def _app(registry, **overrides):
    config = ServingConfig(s3_bucket=registry.bucket, s3_prefix=PREFIX, poll_seconds=3600, max_rows=MAX_ROWS,
                           max_body_bytes=64 * 1024, **overrides)
    app = create_app(config, start_poller=False)
    return app, app.test_client()


@pytest.fixture
def client(registry):
    promote(registry, "v1")
    return _app(registry)[1]


def rows(n, seed=9):
    return synthetic.generate(n, seed=seed)[list(schema.FEATURES)].to_dict("records")


def test_health_ready_and_model(client):
    assert client.get("/health").json == {"status": "ok"}
    assert client.get("/ready").json == {"ready": True, "model_version": "v1"}
    info = client.get("/model").json
    assert info["version"] == "v1" and 0 < info["threshold"] < 1
    assert info["metrics"] == {"roc_auc": 0.8} and info["data_fingerprint"] == "f" * 64
    assert info["loaded_at"] and info["trained_at"] and info["last_reload_error"] is None


def test_not_ready_until_a_champion_exists(registry):
    app, client = _app(registry)
    assert client.get("/ready").status_code == 503
    assert client.post("/predict", json={"records": rows(1)}).status_code == 503
    promote(registry, "v1")
    assert app.extensions["champion"].refresh() is True
    assert client.get("/ready").status_code == 200


def test_predict_records_and_dataframe_split_agree(client):
    records = rows(20)
    by_records = client.post("/predict", json={"records": records})
    assert by_records.status_code == 200
    body = by_records.json
    assert body["model_version"] == "v1" and len(body["predictions"]) == 20
    for prediction in body["predictions"]:
        assert 0.0 <= prediction["probability"] <= 1.0
        assert prediction["label"] == int(prediction["probability"] >= body["threshold"])
    columns = list(schema.FEATURES)
    split = {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in records]}}
    assert client.post("/predict", json=split).json == body


@pytest.mark.parametrize("change, row, field, fragment", [
    (lambda r: r.pop("Age"), 0, "Age", "missing field"),
    (lambda r: r.update(Age="44"), 0, "Age", "expected a number"),
    (lambda r: r.update(Age=7), 0, "Age", "out of range"),
    (lambda r: r.update(Vehicle_Age="new"), 0, "Vehicle_Age", "not one of"),
    (lambda r: r.update(Driving_License=True), 0, "Driving_License", "boolean"),
    (lambda r: r.update(colour="red"), 0, "colour", "unknown field"),
    (lambda r: r.update(Annual_Premium=None), 0, "Annual_Premium", "missing value"),
])
def test_bad_rows_get_422_with_row_and_field(client, change, row, field, fragment):
    records = rows(3)
    change(records[row])
    response = client.post("/predict", json={"records": records})
    assert response.status_code == 422
    problems = response.json["problems"]
    assert len(problems) == 1 and problems[0]["row"] == row and problems[0]["field"] == field
    assert fragment in problems[0]["message"]


def test_every_offending_row_is_reported(client):
    records = rows(5)
    records[1]["Gender"] = "?"
    records[4]["Vintage"] = -1
    problems = client.post("/predict", json={"records": records}).json["problems"]
    assert [(p["row"], p["field"]) for p in problems] == [(1, "Gender"), (4, "Vintage")]


@pytest.mark.parametrize("kwargs, status, fragment", [
    ({"data": "{not json", "content_type": "application/json"}, 400, "malformed JSON"),
    ({"data": b"\xff\xfe", "content_type": "application/json"}, 400, "malformed JSON"),
    ({"data": "records=1", "content_type": "application/x-www-form-urlencoded"}, 415, "application/json"),
    ({"data": json.dumps({"records": [{}] * (MAX_ROWS + 1)}), "content_type": "application/json"}, 413, "at most"),
    ({"data": json.dumps({"pad": "x" * 70_000}), "content_type": "application/json"}, 413, ""),
    ({"json": [1, 2]}, 422, "JSON object"),
    ({"json": {"records": []}}, 422, "no rows"),
    ({"json": {"records": [1]}}, 422, "invalid input"),
    ({"json": {"dataframe_split": {"columns": ["Age"], "data": [[1, 2]]}}}, 422, "invalid input"),
    ({"json": {"rows": []}}, 422, "records"),
])
def test_client_errors_are_4xx_with_a_reason(client, kwargs, status, fragment):
    response = client.post("/predict", **kwargs)
    assert response.status_code == status
    assert fragment in json.dumps(response.json)


def test_api_key_guards_predict_and_form(registry):
    promote(registry, "v1")
    _, client = _app(registry, api_key="s3cret")
    assert client.post("/predict", json={"records": rows(1)}).status_code == 401
    assert client.post("/predict", json={"records": rows(1)}, headers={"X-API-Key": "nope"}).status_code == 401
    assert client.post("/predict", json={"records": rows(1)}, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.post("/", data={**schema.example_record(), "api_key": "nope"}).status_code == 401
    assert client.get("/health").status_code == 200  # probes need no key


def test_a_new_champion_is_swapped_in_and_a_tampered_one_refused(registry, client, s3, models):
    holder = client.application.extensions["champion"]
    assert holder.refresh() is False  # pointer unchanged: a 304
    promote(registry, "v2")
    assert holder.refresh() is True
    assert client.post("/predict", json={"records": rows(2)}).json["model_version"] == "v2"

    path, fields = models["v1"]
    publish(registry, path, "v3", fields)
    s3.put_object(Bucket=registry.bucket, Key=registry.model_key("v3"), Body=b"tampered bytes")
    promote(registry, "v3")
    assert holder.refresh() is False
    assert client.post("/predict", json={"records": rows(2)}).json["model_version"] == "v2"
    info = client.get("/model").json
    assert info["version"] == "v2" and "does not match" in info["last_reload_error"]
    assert info["reloads"] == {"success": 2, "failure": 1}


def test_a_model_for_another_input_layout_is_refused(registry, client, models):
    """A champion saved by a release with another model input would mis-predict silently: refused."""
    holder = client.application.extensions["champion"]
    path, fields = models["v1"]
    publish(registry, path, "old-layout", {**fields, "model_input": "object-array/0"})
    promote(registry, "old-layout")
    assert holder.refresh() is False
    info = client.get("/model").json
    assert info["version"] == "v1" and "object-array/0" in info["last_reload_error"]
    assert client.post("/predict", json={"records": rows(1)}).json["model_version"] == "v1"


def test_onnx_engine_serves_what_scikit_learn_predicts(client, models):
    """The champion runs in ONNX Runtime; its answers are the scikit-learn model's, up to float32 rounding."""
    info = client.get("/model").json
    assert info["engine"] == "onnxruntime" and info["engine_note"] is None
    records = rows(MAX_ROWS, seed=4)
    served = client.post("/predict", json={"records": records}).json["predictions"]
    expected = joblib.load(models["v1"][0]).predict_proba(
        features.model_input(pd.DataFrame(records, columns=list(schema.FEATURES))))[:, 1]
    got = np.array([p["probability"] for p in served])
    assert np.max(np.abs(got - expected)) <= onnx_engine.TOLERANCE


def test_scikit_learn_serves_when_onnx_is_off_or_unfaithful(registry, models, monkeypatch):
    promote(registry, "v1")
    records = rows(5, seed=4)
    _, onnx_client = _app(registry)
    by_onnx = onnx_client.post("/predict", json={"records": records}).json["predictions"]
    _, off = _app(registry, engine="sklearn")
    assert off.get("/model").json["engine"] == "scikit-learn"
    by_sklearn = off.post("/predict", json={"records": records}).json["predictions"]
    assert [p["label"] for p in by_sklearn] == [p["label"] for p in by_onnx]
    monkeypatch.setattr(onnx_engine, "TOLERANCE", -1.0)  # no conversion can be this faithful
    _, strict = _app(registry)
    info = strict.get("/model").json
    assert info["engine"] == "scikit-learn" and "disagrees with scikit-learn" in info["engine_note"]
    assert strict.post("/predict", json={"records": records}).json["predictions"] == by_sklearn
    with pytest.raises(ValueError, match="SERVING_ENGINE"):
        ServingConfig(s3_bucket="b", s3_prefix="p", engine="tensorrt")


def test_a_model_skl2onnx_cannot_convert_gets_no_onnx_engine_and_a_reason():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.tree import DecisionTreeClassifier

    x = onnx_engine.parity_rows()[:500]
    model = make_pipeline(FunctionTransformer(np.nan_to_num), DecisionTreeClassifier(max_depth=3, random_state=0))
    model.fit(x, (x[:, 1] > 40).astype(int))
    engine, note = onnx_engine.convert(model)
    assert engine is None and note.startswith("ONNX conversion failed")


def test_parity_rows_sweep_every_allowed_value():
    rows_ = onnx_engine.parity_rows()
    for position, name in enumerate(schema.FEATURES):
        column = schema.BY_NAME[name]
        values = set(rows_[:, position][~np.isnan(rows_[:, position])])
        if name in features.CODES:
            assert set(features.CODES[name].values()) <= values
        elif column.kind == "integer" and column.maximum is not None and column.maximum - column.minimum <= 1000:
            assert set(range(column.minimum, column.maximum + 1)) <= values
        assert np.isnan(rows_[:, position]).any()


def test_metrics_are_exposed(client):
    client.post("/predict", json={"records": rows(3)})
    client.post("/predict", data="x", content_type="text/plain")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'serving_requests_total{endpoint="/predict",status="200"}' in text
    assert 'serving_requests_total{endpoint="/predict",status="415"}' in text
    assert "serving_request_seconds_bucket" in text
    assert 'serving_model_version_info{engine="onnxruntime",version="v1"} 1.0' in text
    assert "serving_model_reloads_total" in text


def test_html_form_predicts_and_shows_field_errors(client):
    page = client.get("/").get_data(as_text=True)
    for name in schema.FEATURES:
        assert f'name="{name}"' in page
    good = client.post("/", data={k: str(v) for k, v in schema.example_record().items()})
    assert good.status_code == 200 and 'id="result"' in good.get_data(as_text=True)
    bad = client.post("/", data={**{k: str(v) for k, v in schema.example_record().items()}, "Age": "old"})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422
    assert 'id="error-Age"' in html and "expected a number" in html and 'id="result"' not in html
