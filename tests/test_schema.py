import pytest

from cross_sell import schema, synthetic


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
    typed, problems = schema.validate_frame(frame)
    assert problems == []
    for column in schema.COLUMNS:
        assert str(typed[column.name].dtype) == column.pandas_dtype


def test_kaggle_float_codes_are_integers_but_fractions_are_not():
    raw = synthetic.generate(3, seed=2).astype("object")
    raw.loc[0, "Region_Code"] = "28.0"
    raw.loc[1, "Region_Code"] = 28.5
    typed, problems = schema.validate_frame(raw)
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
    _, problems = schema.validate_frame(raw)
    assert len(problems) == 1
    assert (problems[0].row, problems[0].column) == (2, column)
    assert fragment in problems[0].reason


def test_missing_column_is_reported_once():
    raw = synthetic.generate(5, seed=4).drop(columns=["Vintage"])
    _, problems = schema.validate_frame(raw)
    assert [(p.row, p.column, p.reason) for p in problems] == [(None, "Vintage", "missing column")]


def test_serving_records_reject_unknown_and_missing_fields_but_not_id_or_label():
    good = synthetic.generate(2, seed=5)[list(schema.FEATURES)].to_dict("records")
    typed, problems = schema.validate_records(good)
    assert problems == [] and len(typed) == 2
    bad = [dict(good[0], colour="red"), {k: v for k, v in good[1].items() if k != "Age"}]
    _, problems = schema.validate_records(bad)
    assert {(p.row, p.column, p.reason) for p in problems} == {(0, "colour", "unknown field"),
                                                               (1, "Age", "missing field")}


def test_arrow_schema_matches_columns():
    names = schema.arrow_schema(schema.TRAINING, with_invalid_values=True).names
    assert names == schema.column_names(schema.TRAINING) + [schema.INVALID_VALUES_COLUMN]
