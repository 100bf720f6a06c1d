"""Issue #32: the clients people already have, against the live service behind its nginx front: MLflow's own
scoring client (`ScoringServerClient`) and `tritonclient[http]` (Open Inference Protocol V2), and a CRM's key
passed through every protocol. Every answer must equal /predict's for the same rows."""

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from cross_sell.data import schema, synthetic
from cross_sell.storage.registry import ModelRegistry
from devstack import local_services
from serving_support import PREFIX, promote, publish, train_model

pytestmark = pytest.mark.servers
ROWS = 40


@pytest.fixture(scope="module")
def front(tmp_path_factory, s3_server):
    """gunicorn (one worker) on the local S3 registry, behind the nginx front, serving v1."""
    from cross_sell.storage.signing import ManifestVerifier
    from serving_support import session_signer
    from support import SIGNING_PUBLIC_KEY

    bucket = "protocols"
    local_services.create_bucket(s3_server, bucket)
    registry = ModelRegistry(local_services.s3_client_for(s3_server), bucket, PREFIX,
                             ManifestVerifier.from_file(SIGNING_PUBLIC_KEY))
    publish(registry, "v1", train_model(1), session_signer())
    promote(registry, "v1")
    tmp = tmp_path_factory.mktemp("protocols")
    service = local_services.start_serving({**s3_server.env, "CROSS_SELL_S3_BUCKET": bucket,
                                            "CROSS_SELL_S3_PREFIX": PREFIX, "SERVING_SAMPLE_RATE": "0",
                                            "CROSS_SELL_SIGNING_PUBLIC_KEY": str(SIGNING_PUBLIC_KEY)},
                                           workers=1, log_path=str(tmp / "gunicorn.log"))
    nginx = local_services.start_front(service.env["SERVING_SOCKET"], workdir=str(tmp / "front"))
    yield nginx.url
    nginx.stop()
    service.stop()


def _customers(n: int = ROWS):
    frame = synthetic.generate(n, seed=31)
    return frame[["id", *schema.FEATURES]]


def _post(url: str, body, content_type="application/json") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _reference(front, frame) -> list[dict]:
    """What /predict answers for these customers, their ids passed through."""
    records = json.loads(frame.to_json(orient="records"))
    status, body = _post(f"{front}/predict", {"records": records})
    assert status == 200, body
    assert [p["id"] for p in body["predictions"]] == frame["id"].tolist()  # the CRM's key comes back
    return body["predictions"]


def test_mlflow_scoring_client_gets_what_predict_answers(front):
    """MLflow's own client: /ping, /version and /invocations (it sends `dataframe_split` with an index)."""
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    host, port = front.removeprefix("http://").split(":")
    client = ScoringServerClient(host, int(port))
    client.wait_server_ready(timeout=30)
    assert "model v1" in client.get_version()
    frame = _customers()
    answered = client.invoke(frame)  # mlflow.deployments.PredictionsResponse
    assert answered.get_predictions(predictions_format="dataframe").to_dict("records") == _reference(front, frame)


@pytest.mark.parametrize("name", ["dataframe_records", "instances", "inputs", "inputs-as-columns", "csv"])
def test_every_mlflow_input_format_answers_alike(front, name):
    frame = _customers(12)
    records = json.loads(frame.to_json(orient="records"))
    if name == "csv":
        status, body = _post(f"{front}/invocations", frame.to_csv(index=False).encode(), "text/csv")
    elif name == "inputs-as-columns":
        split = json.loads(frame.to_json(orient="split", index=False))
        columns = {name: [row[i] for row in split["data"]] for i, name in enumerate(split["columns"])}
        status, body = _post(f"{front}/invocations", {"inputs": columns})
    else:
        status, body = _post(f"{front}/invocations", {name: records})
    assert status == 200, body
    expected = _reference(front, frame)
    if name == "csv":  # CSV is text: the identifier comes back as it was sent
        expected = [{**p, "id": str(p["id"])} for p in expected]
    assert body == {"predictions": expected}


@pytest.mark.parametrize("body, content_type, status, fragment", [
    ({"dataframe_records": [{"Age": 44}]}, "application/json", 422, "missing field"),
    ({"dataframe_records": [], "instances": []}, "application/json", 400, "send one format"),
    ({"dataframe_split": {"columns": ["Age"], "data": [[44]]}, "params": {"temperature": 1}}, "application/json",
     400, "no params"),
    (b"Gender,Age\nMale,forty\n", "text/csv", 422, "Age"),
    (b"", "text/csv", 400, "header"),
    (b"x", "text/plain", 415, "text/csv"),
])
def test_mlflow_errors_are_4xx_with_a_reason(front, body, content_type, status, fragment):
    got, answer = _post(f"{front}/invocations", body, content_type)
    assert got == status and fragment in json.dumps(answer), answer


def test_tritonclient_speaks_the_open_inference_protocol(front):
    """`tritonclient[http]`: health, metadata, and inference with one named input per column, in JSON and in
    Triton's binary tensor extension (the client's default)."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(front.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("cross-sell")
    metadata = client.get_model_metadata("cross-sell")
    assert metadata["versions"] == ["v1"] and [o["name"] for o in metadata["outputs"]] == ["probability", "label"]
    types = {i["name"]: i["datatype"] for i in metadata["inputs"]}
    frame = _customers(25)
    reference = _reference(front, frame)
    for binary in (False, True):
        inputs = []
        for name in ["id", *schema.FEATURES]:
            values = frame[name].to_numpy()
            datatype = "INT64" if name == "id" else types[name]
            array = values.astype(object) if datatype == "BYTES" else values.astype(
                np.int64 if datatype == "INT64" else np.float64)
            tensor = httpclient.InferInput(name, [len(frame)], datatype)
            tensor.set_data_from_numpy(array, binary_data=binary)
            inputs.append(tensor)
        result = client.infer("cross-sell", inputs, outputs=[httpclient.InferRequestedOutput(n, binary_data=False)
                                                             for n in ("probability", "label", "id")])
        assert result.get_response()["model_version"] == "v1"
        assert result.as_numpy("probability").tolist() == [p["probability"] for p in reference]
        assert result.as_numpy("label").tolist() == [p["label"] for p in reference]
        assert result.as_numpy("id").tolist() == frame["id"].tolist()


def test_open_inference_protocol_errors_are_4xx_with_a_reason(front):
    url = f"{front}/v2/models/cross-sell/infer"
    age = {"name": "Age", "datatype": "INT64", "shape": [1], "data": [44]}
    for body, status, fragment in (
        ({"inputs": []}, 400, "non-empty list"),
        ({"inputs": [{**age, "datatype": "BYTES"}]}, 400, "send INT64"),
        ({"inputs": [{**age, "shape": [2]}]}, 400, "2 values"),
        ({"inputs": [age, age]}, 400, "given twice"),
        ({"inputs": [age]}, 422, "missing field"),
        ({"inputs": [{**age, "shape": [1, 2, 3]}]}, 400, "shape"),
    ):
        got, answer = _post(url, body)
        assert got == status and fragment in answer["error"] + json.dumps(answer.get("problems")), (body, answer)
    got, answer = _post(f"{front}/v2/models/other/infer", {"inputs": [age]})
    assert got == 404 and "unknown model" in answer["error"]
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{front}/v2/models/cross-sell/versions/v9", timeout=30)
    assert missing.value.code == 404


def test_an_identifier_must_be_a_scalar(front):
    record = {**schema.example_record(), "id": {"nested": 1}}
    status, body = _post(f"{front}/predict", {"records": [record]})
    assert status == 422 and body["problems"][0]["field"] == "id"


def test_the_mlflow_model_answers_like_the_service(front, tmp_path):
    """Issue #32: the model MLflow logs took a float32 matrix of undocumented codes and labelled at 0.5 (0
    buyers where the service labelled 66 of 200). Now `mlflow.pyfunc.load_model(uri).predict(raw_frame)` takes
    the raw columns (and the id), checks them with the service's engine and labels at the tuned threshold."""
    import mlflow

    from cross_sell.model import mlflow_model

    trained = train_model(1)  # v1, what the front serves
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = mlflow.create_experiment("served", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow_model.log(trained["files"][ModelRegistry.ONNX], trained["manifest"]["threshold"])
    loaded = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert [c.name for c in loaded.metadata.get_input_schema().inputs] == [*schema.FEATURES, "id"]
    frame = _customers(200)
    answered, reference = loaded.predict(frame).to_dict("records"), _reference(front, frame)
    # ONNX Runtime sums a tree ensemble in float32; the service's two threads add in another order (1e-7)
    assert [(p["id"], p["label"]) for p in answered] == [(p["id"], p["label"]) for p in reference]
    np.testing.assert_allclose([p["probability"] for p in answered], [p["probability"] for p in reference],
                               rtol=0, atol=1e-6)
    assert sum(p["label"] for p in answered) > 0
    wrong = frame.head(3).assign(Vehicle_Age=["1-2 Year", "ancient", "< 1 Year"])
    with pytest.raises(Exception, match="row 1 Vehicle_Age"):
        loaded.predict(wrong)
