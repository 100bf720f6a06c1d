"""The seed project's serving approach, kept only as the benchmark's baseline: every request
downloads the model from S3 and unpickles it before predicting. Not part of the product."""

import os
import tempfile

import joblib
import pandas as pd
from flask import Flask, jsonify, request

from cross_sell.model import model_input
from cross_sell.settings import s3_client
from cross_sell.storage.registry import ModelRegistry
from cross_sell.storage.signing import ManifestVerifier

app = Flask(__name__)
registry = ModelRegistry(s3_client(), os.environ["CROSS_SELL_S3_BUCKET"], os.environ["CROSS_SELL_S3_PREFIX"],
                         ManifestVerifier.from_env())


@app.get("/ready")
def ready():
    return {"ready": True}


@app.post("/predict")
def predict():
    version = registry.champion().version
    with tempfile.TemporaryDirectory() as tmp:
        model = joblib.load(registry.download_artifact(version, "model.joblib", os.path.join(tmp, "model.joblib")))
    frame = pd.DataFrame(request.get_json()["records"])
    probability = model.predict_proba(model_input.from_frame(frame))[:, 1]
    return jsonify({"model_version": version, "probabilities": probability.tolist()})
