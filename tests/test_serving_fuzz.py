"""Thousands of malformed requests: the service answers every one of them without a 5xx."""

import json

import numpy as np
import pytest
import reference_validation
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cross_sell.data import schema
from cross_sell.storage.registry import ModelRegistry
from devstack import local_services
from serving.app import create_app
from serving.champion import ChampionHolder
from serving.config import ServingConfig
from serving_support import PREFIX, promote, publish, train_model

FUZZ = settings(max_examples=1_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _served_app(s3_server, signer, verifier, bucket: str, seed: int, **limits):
    """The service on a bucket of its own holding one small real champion, with the given request limits."""
    local_services.create_bucket(s3_server, bucket)
    registry = ModelRegistry(local_services.s3_client_for(s3_server), bucket, PREFIX, verifier)
    publish(registry, "v1", train_model(seed, rows=3_000), signer)
    promote(registry, "v1")
    config = ServingConfig(s3_bucket=bucket, s3_prefix=PREFIX, **limits)
    return create_app(config, holder=ChampionHolder(registry, 3600), start_poller=False)


@pytest.fixture(scope="module")
def client(s3_server, signer, verifier):
    return _served_app(s3_server, signer, verifier, "fuzz", 5, max_rows=20, max_body_bytes=32 * 1024).test_client()


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
    st.dictionaries(st.sampled_from(["records", "dataframe_records", "instances", "inputs"]),
                    st.lists(near_records | json_values, max_size=25), min_size=1, max_size=2),
    st.fixed_dictionaries({"dataframe_split": st.fixed_dictionaries({
        "columns": st.lists(st.sampled_from(list(schema.FEATURES)) | st.text(max_size=5), max_size=12),
        "data": st.lists(st.lists(scalars, max_size=12), max_size=25)})}),
    st.fixed_dictionaries({"inputs": st.dictionaries(st.sampled_from([*schema.FEATURES, "id", "x"]),
                                                     st.lists(scalars, max_size=6) | json_values, max_size=12)}),
    # Open Inference Protocol requests: tensors of any name, datatype, shape and data.
    st.fixed_dictionaries({"inputs": st.lists(st.fixed_dictionaries({
        "name": st.sampled_from([*schema.FEATURES, "id", "x"]),
        "datatype": st.sampled_from(["BYTES", "INT64", "FP64", "FP32", "BOOL", "x"]) | json_values,
        "shape": st.lists(st.integers(-2, 8), max_size=3) | json_values,
        "data": st.lists(scalars, max_size=8) | json_values}), max_size=12)}),
)
# Every endpoint that takes rows, whatever protocol it speaks.
ROW_ENDPOINTS = ["/predict", "/invocations", "/v2/models/cross-sell/infer"]


def _assert_client_or_success(response):
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    assert response.is_json


@FUZZ
@given(payload=payloads, endpoint=st.sampled_from(ROW_ENDPOINTS))
def test_json_payloads_never_5xx(client, payload, endpoint):
    body = json.dumps(payload, allow_nan=True)
    _assert_client_or_success(client.post(endpoint, data=body, content_type="application/json"))


@FUZZ
@given(body=st.binary(max_size=2_000) | st.text(max_size=2_000).map(str.encode),
       content_type=st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1", "",
                                     "text/csv"]),
       endpoint=st.sampled_from(ROW_ENDPOINTS))
def test_raw_bodies_never_5xx(client, body, content_type, endpoint):
    _assert_client_or_success(client.post(endpoint, data=body, content_type=content_type))


@FUZZ
@given(header=st.text(alphabet="0123456789x -", max_size=6), body=st.binary(max_size=300))
def test_binary_tensor_requests_never_5xx(client, header, body):
    """Triton's binary extension: a JSON length that lies, tensors that end early or run over."""
    response = client.post("/v2/models/cross-sell/infer", data=body, headers={"Inference-Header-Content-Length":
                                                                              header})
    _assert_client_or_success(response)


@settings(max_examples=300, deadline=None)
@given(form=st.dictionaries(st.sampled_from(list(schema.FEATURES) + ["junk"]), st.text(max_size=10)))
def test_form_posts_never_5xx(client, form):
    assert client.post("/", data=form).status_code < 500


# -- structure (issue #30): nesting depth, duplicate keys, both formats, odd top-level types --------------
# Bodies built as JSON text, so an object may hold a key twice (no Python dict can) and nesting can go past
# Python's recursion limit. The oracle reads the text with the standard library, keeping every pair.

def _object_text(pairs) -> str:
    return "{" + ", ".join(f"{json.dumps(key)}: {value}" for key, value in pairs) + "}"


def _deep_text(depth: int, kind: str, inner: str) -> str:
    return ("[" * depth + inner + "]" * depth) if kind == "[" else ('{"k": ' * depth + inner + "}" * depth)


text_keys = st.sampled_from([*schema.FEATURES, "records", "dataframe_split", "columns", "data", "index"]) | \
    st.text(max_size=4)
scalar_texts = scalars.map(lambda value: json.dumps(value, allow_nan=True))
value_texts = st.recursive(
    scalar_texts,
    lambda inner: st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]")
    | st.lists(st.tuples(text_keys, inner), max_size=4).map(_object_text),
    max_leaves=12,
)
deep_texts = st.builds(_deep_text, st.integers(1, 2_500), st.sampled_from("[{"), value_texts)
field_texts = st.one_of(*[strategy.map(json.dumps) for strategy in field_values.values()])
extra_pairs = st.lists(st.tuples(text_keys, field_texts | value_texts | deep_texts), max_size=2)
# a record: every field of the schema (valid values), then perhaps a field again, an odd or a deep value
record_texts = st.builds(lambda fields, extra: _object_text([*fields.items(), *extra]),
                         st.fixed_dictionaries({name: s.map(json.dumps) for name, s in field_values.items()}),
                         extra_pairs)
records_texts = st.lists(record_texts | value_texts | deep_texts, min_size=1, max_size=4) \
    .map(lambda rows: "[" + ", ".join(rows) + "]")
row_texts = st.builds(lambda record: json.dumps(list(record.values())), st.fixed_dictionaries(field_values))
split_texts = st.builds(
    lambda rows, extra: _object_text([("columns", json.dumps(list(schema.FEATURES))),
                                      ("data", "[" + ", ".join(rows) + "]"), *extra]),
    st.lists(row_texts | value_texts | deep_texts, min_size=1, max_size=4), extra_pairs)
body_texts = st.one_of(
    st.builds(lambda rows, extra: _object_text([("records", rows), *extra]), records_texts,
              st.lists(st.tuples(st.sampled_from(["records", "dataframe_split"]) | text_keys,
                                 records_texts | split_texts | value_texts), max_size=2)),
    st.builds(lambda split, extra: _object_text([("dataframe_split", split), *extra]), split_texts,
              st.lists(st.tuples(st.sampled_from(["records", "dataframe_split"]) | text_keys,
                                 records_texts | split_texts | value_texts), max_size=2)),
    value_texts, deep_texts,  # odd top-level types: a list, a string, a number, null, an object; deep arrays
)


def _oracle(text: str) -> tuple[bool, bool]:
    """(a key twice in one object, containers nested more than 8 levels), read independently of the service."""
    duplicate = False

    def pairs(found):
        nonlocal duplicate
        duplicate |= len({key for key, _ in found}) != len(found)
        return dict(found)

    depth = deepest = 0
    in_string = escaped = False
    for char in text:  # depth from the text itself: brackets outside strings
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    if deepest <= 8:
        json.loads(text, object_pairs_hook=pairs)
    return duplicate, deepest > 8


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=body_texts, endpoint=st.sampled_from(ROW_ENDPOINTS))
def test_structure_never_5xx_and_is_refused_with_a_reason(client, text, endpoint):
    """Every body, however nested or repeated, is answered below 500 with a reason; a key twice in an object,
    nesting past 8 levels and both formats in one body are a 400 (orjson would keep the last key silently)."""
    body = text.encode()
    assume(len(body) <= 32 * 1024)
    response = client.post(endpoint, data=body, content_type="application/json")
    _assert_client_or_success(response)
    if response.status_code != 200:
        assert response.json["error"], response.json
    duplicate, deep = _oracle(text)
    if duplicate or deep:
        assert response.status_code == 400, (response.status_code, response.json, text[:300])
        assert any(reason in response.json["error"] for reason in ("duplicate key", "nested more than", "malformed"))
    decoded = json.loads(text) if not deep else None
    if endpoint != ROW_ENDPOINTS[2] and isinstance(decoded, dict) and {"records", "dataframe_split"} <= set(decoded):
        assert response.status_code == 400


@settings(max_examples=200, deadline=None)
@given(form=st.lists(st.tuples(st.sampled_from([*schema.FEATURES, "api_key"]), st.text(max_size=8)), max_size=14))
def test_form_fields_given_twice_are_400(client, form):
    from werkzeug.datastructures import MultiDict

    response = client.post("/", data=MultiDict(form))
    assert response.status_code < 500
    names = [name for name, _ in form]
    if len(set(names)) != len(names):
        assert response.status_code == 400 and "more than once" in response.get_data(as_text=True)


@pytest.fixture(scope="module")
def wide_client(s3_server, signer, verifier):
    """The service with room for requests on both sides of the old engine's 32-row switch."""
    app = _served_app(s3_server, signer, verifier, "fuzz-wide", 6, max_rows=200)
    return app.test_client(), app.extensions["cross_sell"].holder.current


# Whole requests, mostly valid: a body of near-valid records, or the same rows as dataframe_split (its
# columns shuffled, sometimes one dropped or renamed); sizes around the old engine's SMALL_BATCH switch.
valid_records = st.fixed_dictionaries(field_values)
request_rows = st.lists(st.one_of(valid_records, near_records), min_size=1, max_size=70) | \
    st.lists(valid_records, min_size=1, max_size=70)
split_columns = st.permutations(list(schema.FEATURES)).flatmap(lambda names: st.one_of(
    st.just(names), st.just(names[1:]), st.just([*names[1:], "colour"])))


def _reference_answer(model, records: list[dict]):
    """Status, 422 problems and probabilities of the service as it was (tests/reference_validation.py)."""
    problems, matrix = reference_validation.service_answer(records)
    if problems:
        return 422, problems, None
    return 200, None, model.predict(matrix)[0]


def _json(body) -> str:
    """A body JSON can carry (NaN and infinities are a 400 before any validation: not this test's case)."""
    try:
        return json.dumps(body, allow_nan=False)
    except ValueError:
        assume(False)


def _assert_same_answer(response, expected):
    status, problems, probabilities = expected
    body = response.get_json()
    assert response.status_code == status, (response.status_code, body, problems)
    if status == 422:
        assert body["problems"] == problems
    else:
        got = [p["probability"] for p in body["predictions"]]
        np.testing.assert_allclose(got, probabilities, rtol=0, atol=1e-7)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=request_rows)
def test_records_answers_are_the_old_engines(wide_client, records):
    """Issue #24, the differential test: the column-wise engine answers every `records` body as the old
    per-row and pandas paths did: same status, same problem list, probabilities within 1e-7."""
    client, model = wide_client
    response = client.post("/predict", data=_json({"records": records}), content_type="application/json")
    _assert_same_answer(response, _reference_answer(model, records))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=request_rows, names=split_columns)
def test_dataframe_split_answers_are_the_old_engines(wide_client, records, names):
    """The same for `dataframe_split` bodies, which the old service turned into records first."""
    client, model = wide_client
    data = [[record.get(name) for name in names] for record in records]
    body = {"dataframe_split": {"columns": names, "data": data}}
    response = client.post("/predict", data=_json(body), content_type="application/json")
    _assert_same_answer(response, _reference_answer(model, [dict(zip(names, row, strict=True)) for row in data]))


def _valid(column):
    """Values a column takes as they are: an allowed value, or a number of its exact type within its range."""
    if column.allowed:
        return st.sampled_from(list(column.allowed))
    low, high = column.minimum, column.maximum
    if column.kind == "integer":
        return st.integers(-2**63 if low is None else int(low), 2**63 - 1 if high is None else int(high))
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


valid_records = st.fixed_dictionaries({c.name: _valid(c) for c in schema.columns(schema.SERVING)})
anything = st.one_of(scalars, st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                     *field_values.values())
# Whole records: valid, or valid but for one or two values that may be anything.
whole_records = st.one_of(valid_records, valid_records.flatmap(
    lambda record: st.dictionaries(st.sampled_from(sorted(record)), anything, min_size=1, max_size=2).map(
        lambda changed: {**record, **changed})))


@FUZZ
@given(record=whole_records)
def test_a_one_row_request_is_checked_as_the_same_row_of_a_longer_one(record):
    """Issue #34: a one-row request of valid values is cast in one pass (`casting._one_valid_row`) instead of
    by the scalar rules column by column. Whatever the row holds, the answer is the scalar rules': the same
    problems, or the same values of the same types, as the row gets as the first of two."""
    from cross_sell.data import casting

    one, two = casting.check_records([record]), casting.check_records([record, record])
    assert one.problems == [p for p in two.problems if p.row == 0]
    if not one.problems:
        for name, values in one.columns.items():
            assert values.dtype == two.columns[name].dtype and values.tolist() == two.columns[name][:1].tolist()
