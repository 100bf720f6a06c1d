"""Thousands of malformed requests: the service answers every one of them without a 5xx."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cross_sell import schema
from cross_sell.registry import ModelRegistry
from devstack import local_services
from serving.app import create_app
from serving.champion import ChampionHolder
from serving.config import ServingConfig
from serving_support import PREFIX, promote, publish, train_model

FUZZ = settings(max_examples=1_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def client(s3_server, signer, verifier):
    bucket = "fuzz"
    local_services.create_bucket(s3_server, bucket)
    registry = ModelRegistry(local_services.s3_client_for(s3_server), bucket, PREFIX, verifier)
    publish(registry, "v1", train_model(5, rows=3_000), signer)
    promote(registry, "v1")
    config = ServingConfig(s3_bucket=bucket, s3_prefix=PREFIX, max_rows=20, max_body_bytes=32 * 1024)
    return create_app(config, holder=ChampionHolder(registry, 3600), start_poller=False).test_client()


scalars = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats() | st.text(max_size=12)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
field_values = {
    c.name: st.sampled_from(list(c.allowed)) if c.allowed else st.integers(-5, 500) | st.floats(-1e7, 1e7)
    for c in schema.columns(schema.SERVING)
}
# Mostly-right records: every field, some dropped, some replaced by anything, some extra keys.
near_records = st.fixed_dictionaries(
    {name: st.one_of(strategy, scalars) for name, strategy in field_values.items()}
).flatmap(lambda record: st.sets(st.sampled_from(sorted(record))).map(
    lambda dropped: {k: v for k, v in record.items() if k not in dropped}))
payloads = st.one_of(
    json_values,
    st.fixed_dictionaries({"records": st.lists(near_records | json_values, max_size=25)}),
    st.fixed_dictionaries({"dataframe_split": st.fixed_dictionaries({
        "columns": st.lists(st.sampled_from(list(schema.FEATURES)) | st.text(max_size=5), max_size=12),
        "data": st.lists(st.lists(scalars, max_size=12), max_size=25)})}),
)


def _assert_client_or_success(response):
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    assert response.is_json


@FUZZ
@given(payload=payloads)
def test_json_payloads_never_5xx(client, payload):
    body = json.dumps(payload, allow_nan=True)
    _assert_client_or_success(client.post("/predict", data=body, content_type="application/json"))


@FUZZ
@given(body=st.binary(max_size=2_000) | st.text(max_size=2_000).map(str.encode),
       content_type=st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1", ""]))
def test_raw_bodies_never_5xx(client, body, content_type):
    _assert_client_or_success(client.post("/predict", data=body, content_type=content_type))


@settings(max_examples=300, deadline=None)
@given(form=st.dictionaries(st.sampled_from(list(schema.FEATURES) + ["junk"]), st.text(max_size=10)))
def test_form_posts_never_5xx(client, form):
    assert client.post("/", data=form).status_code < 500


@settings(max_examples=500, deadline=None)
@given(records=st.lists(near_records, min_size=1, max_size=6))
def test_small_and_vectorized_validation_agree(records):
    """The service's two paths (plain Python for a few rows, pandas for many) give the same verdicts
    and the same typed values."""
    import pandas as pd

    cast, small = schema.cast_records(records)
    large_frame, large = schema.validate_records(records)
    assert small == large
    if not small:
        small_frame = pd.DataFrame.from_records(cast, columns=schema.column_names(schema.SERVING))
        small_frame = small_frame.astype({c.name: c.pandas_dtype for c in schema.columns(schema.SERVING)})
        pd.testing.assert_frame_equal(small_frame, large_frame, check_dtype=True)
