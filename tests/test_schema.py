import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cross_sell.data import casting, schema, synthetic


def test_environments_differ_only_by_key_and_label():
    training = schema.column_names(schema.TRAINING)
    serving = schema.column_names(schema.SERVING)
    assert len(training) == 12
    assert set(training) - set(serving) == {"id", "Response"}
    assert list(schema.FEATURES) == serving
    with pytest.raises(ValueError):
        schema.columns("production")


def test_clean_frame_has_no_problems_and_canonical_types():
    frame = synthetic.generate(500, seed=1)
    typed, problems = casting.validate_frame(frame)
    assert problems == []
    for column in schema.COLUMNS:
        assert str(typed[column.name].dtype) == column.pandas_dtype


def test_kaggle_float_codes_are_integers_but_fractions_are_not():
    raw = synthetic.generate(3, seed=2).astype("object")
    raw.loc[0, "Region_Code"] = "28.0"
    raw.loc[1, "Region_Code"] = 28.5
    typed, problems = casting.validate_frame(raw)
    assert typed.loc[0, "Region_Code"] == 28
    assert [(p.row, p.column) for p in problems] == [(1, "Region_Code")]
    assert "integer" in problems[0].reason


@pytest.mark.parametrize("column, value, fragment", [
    ("Age", "forty", "expected a number"),
    ("Age", 150, "out of range [18, 100]"),
    ("Gender", "Robot", "not one of"),
    ("Vehicle_Age", 3, "expected a string"),
    ("Driving_License", True, "boolean"),
    ("Annual_Premium", None, "missing value"),
    ("Annual_Premium", float("inf"), "finite"),
    ("Vintage", 10**20, "too large"),  # found by the serving fuzz test: once an OverflowError, a 500
    ("Vintage", "99999999999999999999", "too large"),
])
def test_each_bad_value_is_named_with_row_and_column(column, value, fragment):
    raw = synthetic.generate(4, seed=3).astype("object")
    raw.loc[2, column] = value
    _, problems = casting.validate_frame(raw)
    assert len(problems) == 1
    assert (problems[0].row, problems[0].column) == (2, column)
    assert fragment in problems[0].reason


def test_missing_column_is_reported_once():
    raw = synthetic.generate(5, seed=4).drop(columns=["Vintage"])
    _, problems = casting.validate_frame(raw)
    assert [(p.row, p.column, p.reason) for p in problems] == [(None, "Vintage", "missing column")]


def test_serving_records_reject_unknown_and_missing_fields_but_not_id_or_label():
    good = synthetic.generate(2, seed=5)[list(schema.FEATURES)].to_dict("records")
    checked = casting.check_records(good)
    assert checked.problems == [] and checked.rows == 2
    bad = [dict(good[0], colour="red"), {k: v for k, v in good[1].items() if k != "Age"}]
    problems = casting.check_records(bad).problems
    assert [(p.row, p.column, p.reason) for p in problems] == [(0, "colour", "unknown field"),
                                                               (1, "Age", "missing field")]
    names = list(schema.FEATURES)[1:] + ["colour"]  # dataframe_split: a column is every row's field
    problems = casting.check_split(names, [[r[n] for n in names[:-1]] + ["red"] for r in good]).problems
    assert [(p.row, p.column, p.reason) for p in problems] == [
        (0, "Gender", "missing field"), (0, "colour", "unknown field"),
        (1, "Gender", "missing field"), (1, "colour", "unknown field")]


def test_arrow_schema_matches_columns():
    names = schema.arrow_schema(schema.TRAINING, with_invalid_values=True).names
    assert names == schema.column_names(schema.TRAINING) + [schema.INVALID_VALUES_COLUMN]


def test_columns_are_cast_and_judged_as_records_were():
    """Batch scoring's documents through the engine (`cast_documents`) against the scalar rules as they
    were (`reference_validation.cast_records`): the same problems, and for the rows without one the same
    values and model input."""
    import bson
    import numpy as np
    import reference_validation

    from cross_sell.model import model_input

    frame = synthetic.generate(400, seed=6)[schema.column_names(schema.SCORING)]
    records = [{k: getattr(v, "item", lambda v=v: v)() for k, v in row.items()} for row in frame.to_dict("records")]
    odd = {  # row: (column, value); Age and Gender stay one kind with a bad value (the vectorised path)
        3: ("Age", 150), 5: ("Gender", "Robot"), 8: ("Region_Code", 28.0), 9: ("Region_Code", 28.5),
        11: ("Vintage", "99"), 12: ("Vintage", 10**20), 14: ("Driving_License", True), 15: ("Driving_License", 2),
        17: ("Annual_Premium", float("inf")), 18: ("Annual_Premium", float("nan")), 19: ("Annual_Premium", None),
        21: ("Annual_Premium", 30_000), 22: ("Vehicle_Age", 3), 24: ("id", -5), 25: ("id", bson.Int64(7)),
        27: ("Policy_Sales_Channel", np.int64(26)), 28: ("Previously_Insured", 1.0), 30: ("Vehicle_Damage", None),
    }
    for row, (column, value) in odd.items():
        records[row][column] = value
    cast, problems = casting.cast_documents(records, schema.SCORING)
    typed, expected = reference_validation.cast_records(records, schema.SCORING)
    assert sorted((p.row, p.column, p.reason) for p in problems) == \
        sorted((p.row, p.column, p.reason) for p in expected)
    assert {p.row for p in problems} == {3, 5, 9, 11, 12, 14, 15, 17, 18, 19, 22, 24, 30}
    good = np.ones(len(records), dtype=bool)
    good[[p.row for p in problems]] = False
    kept = [row for row, ok in zip(typed, good, strict=True) if ok]
    for column in schema.columns(schema.SCORING):
        values = [row[column.name] for row in kept]
        if column.kind == "category":
            values = [column.allowed.index(v) for v in values]
        assert cast[column.name][good].tolist() == values, column.name
    matrix = model_input.from_columns({k: v[good] for k, v in cast.items()},
                                      np.empty((len(kept), len(schema.FEATURES))))
    np.testing.assert_array_equal(matrix, model_input.from_rows(kept))


def test_an_absent_field_of_a_document_is_a_missing_value():
    record = synthetic.generate(1, seed=7)[schema.column_names(schema.SCORING)].iloc[0].to_dict()
    del record["Gender"]
    _, problems = casting.cast_documents([record], schema.SCORING)
    assert [(p.row, p.column, p.reason) for p in problems] == [(0, "Gender", "missing value")]


_FRAME_CELLS = {  # CSV text as the loader reads it, Python values as MongoDB or a parquet file gives them
    c.name: st.one_of(st.sampled_from(list(c.allowed)) if c.allowed else st.integers(-5, 600),
                      st.sampled_from([str(v) for v in c.allowed]) if c.allowed else st.integers(-5, 600).map(str),
                      st.sampled_from(["", " 44 ", "28.0", "28.5", "1e1", "nan", "inf", "+7", "x", None, True,
                                       float("nan"), 28.0, 28.5, 10**20, -3, "99999999999999999999", "Male"]))
    for c in schema.columns(schema.TRAINING)}


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.fixed_dictionaries(_FRAME_CELLS), min_size=1, max_size=30),
       drop=st.sampled_from([None, "Vintage", "Gender", "id"]), text=st.booleans())
def test_a_frame_is_judged_by_the_one_engine_as_the_frame_rules_judged_it(rows, drop, text):
    """Issue #31: the frame path (`validate_frame`: loader, reproduce, the shadow report) is the column engine
    every other path uses, with the same problems, wording and order as the separate pandas rules it replaced
    (tests/reference_validation.py), and the same typed values in every row without a problem."""
    import numpy as np
    import pandas as pd
    import reference_validation

    raw = pd.DataFrame(rows, dtype=object).infer_objects()  # a column of one kind gets its dtype, as read
    if drop:
        raw = raw.drop(columns=[drop])
    typed, problems = casting.validate_frame(raw, schema.TRAINING, allow_text=text)
    expected_typed, expected = reference_validation.validate_frame(raw, schema.TRAINING, allow_text=text)
    assert [(p.row, p.column, p.reason) for p in problems] == [(p.row, p.column, p.reason) for p in expected]
    good = np.ones(len(raw), dtype=bool)
    good[[p.row for p in problems if p.row is not None]] = False
    for name in typed.columns:
        assert typed[name][good].tolist() == expected_typed[name][good].tolist(), name
    assert {name: str(typed[name].dtype) for name in typed.columns} == \
        {c.name: c.pandas_dtype for c in schema.columns(schema.TRAINING) if c.name in raw.columns}
