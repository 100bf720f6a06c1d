import json
import re

import pyarrow.parquet as pq
import pytest

from cross_sell.data import schema, snapshot, synthetic, validation


@pytest.fixture(scope="module")
def documents():
    return synthetic.generate(6_000, seed=21).to_dict("records")


def test_snapshot_streams_in_bounded_chunks_with_an_order_free_fingerprint(tmp_path, documents):
    stats = snapshot.write(iter(documents), str(tmp_path / "a.parquet"), chunk_rows=1_000)
    assert stats.rows == 6_000 and stats.invalid_rows == 0
    assert pq.ParquetFile(tmp_path / "a.parquet").metadata.num_row_groups == 6
    shuffled = snapshot.write(reversed(documents), str(tmp_path / "b.parquet"), chunk_rows=2_500)
    assert shuffled.fingerprint == stats.fingerprint
    changed = [dict(d) for d in documents]
    changed[0]["Age"] += 1
    assert snapshot.write(changed, str(tmp_path / "c.parquet")).fingerprint != stats.fingerprint
    frame = snapshot.read(str(tmp_path / "a.parquet"))
    assert list(frame.columns) == schema.column_names() + [schema.INVALID_VALUES_COLUMN]


def test_wrongly_typed_values_are_kept_for_validation_not_lost(tmp_path, documents):
    bad = [dict(d) for d in documents[:100]]
    bad[3]["Age"] = "forty"
    bad[4]["Vehicle_Age"] = 3
    stats = snapshot.write(bad, str(tmp_path / "bad.parquet"))
    frame = snapshot.read(str(tmp_path / "bad.parquet"))
    assert stats.invalid_rows == 2
    assert json.loads(frame[schema.INVALID_VALUES_COLUMN][3]) == {"Age": "forty"}
    assert json.loads(frame[schema.INVALID_VALUES_COLUMN][4]) == {"Vehicle_Age": 3}


def test_suite_is_generated_from_the_schema():
    import great_expectations as gx

    gx.get_context(mode="ephemeral")  # suites need an active context
    suite = validation.build_suite(min_rows=10)
    columns_checked = {e.column for e in suite.expectations if getattr(e, "column", None)}
    assert set(schema.column_names()) <= columns_checked
    in_sets = {e.column: list(e.value_set) for e in suite.expectations
               if type(e).__name__ == "ExpectColumnValuesToBeInSet"}
    assert in_sets["Vehicle_Age"] == list(schema.BY_NAME["Vehicle_Age"].allowed)


def test_clean_snapshot_passes_and_writes_data_docs(tmp_path, documents):
    snapshot.write(documents, str(tmp_path / "s.parquet"))
    report = validation.run_suite(snapshot.read(str(tmp_path / "s.parquet")), min_rows=1_000,
                                  docs_dir=tmp_path / "docs")
    assert report.success, report.summary()
    assert report.failures == []
    assert "cross_sell_raw_snapshot" in (tmp_path / "docs" / "index.html").read_text()


def test_corrupted_snapshot_fails_naming_every_broken_rule(tmp_path, documents):
    bad = [dict(d) for d in documents]
    bad[1]["Age"] = "forty"
    bad[2]["Gender"] = "Robot"
    bad[3]["Annual_Premium"] = None
    bad[4]["id"] = bad[5]["id"]
    bad[6]["Vehicle_Age"] = bad[7]["Vehicle_Age"] = "Hovercraft"
    bad[8]["Vehicle_Age"] = "Robot"
    snapshot.write(bad, str(tmp_path / "bad.parquet"))
    report = validation.run_suite(snapshot.read(str(tmp_path / "bad.parquet")), min_rows=10_000)
    assert not report.success
    failed = {f["expectation"]: f for f in report.failures}
    # a personal column (Gender) and the mistyped values of a row: counted, never quoted
    assert failed["expect_column_values_to_be_in_set(Gender)"]["unexpected_count"] == 1
    assert "values not shown" in failed["expect_column_values_to_be_in_set(Gender)"]["detail"]
    assert failed["expect_column_values_to_not_be_null(Annual_Premium)"]["unexpected_count"] == 1
    assert "forty" not in failed[f"expect_column_values_to_be_null({schema.INVALID_VALUES_COLUMN})"]["detail"]
    assert failed["expect_column_values_to_be_unique(id)"]["unexpected_count"] == 2
    assert "expect_table_row_count_to_be_between(table)" in failed
    # a category column that is not personal: its unexpected values, most frequent first, with their counts
    vehicle_age = failed["expect_column_values_to_be_in_set(Vehicle_Age)"]
    assert vehicle_age["sample"] == [{"value": "'Hovercraft'", "count": 2}, {"value": "'Robot'", "count": 1}]
    assert "most frequent: 'Hovercraft' (2), 'Robot' (1)" in report.summary()


def test_label_rate_out_of_bounds_fails(tmp_path, documents):
    positives = [dict(d, Response=1) for d in documents]
    snapshot.write(positives, str(tmp_path / "p.parquet"))
    report = validation.run_suite(snapshot.read(str(tmp_path / "p.parquet")), min_rows=10)
    assert [f["expectation"] for f in report.failures] == ["expect_column_mean_to_be_between(Response)"]


def test_no_identifier_or_personal_value_leaves_validation(tmp_path, documents):
    """Issue #30 (from item 4): the GX result, its Data Docs, the failure message (the `validate` task's log
    and its alert) and the samples count the unexpected values of the key and the personal columns and never
    quote one; a hostile value of a column that is not personal is quoted bounded and inert."""
    bad = [dict(d) for d in documents]
    bad[10]["id"] = bad[11]["id"] = 7_770_001  # duplicated key
    bad[12]["id"] = -6_660_002  # key out of range
    bad[13]["Gender"] = "Gender-of-customer-4242"
    bad[14]["Age"] = "Age-of-customer-4343"  # mistyped: kept in the row's _invalid_values
    bad[15]["Age"] = 1_717
    bad[16]["Vehicle_Age"] = "<img src=x onerror=alert(1)>" + "x" * 100
    snapshot.write(bad, str(tmp_path / "bad.parquet"))
    report = validation.run_suite(snapshot.read(str(tmp_path / "bad.parquet")), min_rows=1,
                                  docs_dir=tmp_path / "docs")
    failed = {f["expectation"]: f for f in report.failures}
    assert failed["expect_column_values_to_be_unique(id)"]["unexpected_count"] == 2
    assert failed["expect_column_values_to_be_between(id)"]["unexpected_count"] == 1
    assert failed["expect_column_values_to_be_in_set(Gender)"]["unexpected_count"] == 1
    assert failed["expect_column_values_to_be_between(Age)"]["unexpected_count"] == 1
    docs = "".join(page.read_text() for page in (tmp_path / "docs").rglob("*.html"))
    assert "validations" in docs  # the validation page was written
    for where, text in (("result", json.dumps(report.result)), ("failures", json.dumps(report.failures, default=str)),
                        ("message", report.summary()), ("data docs", docs)):
        for secret in ("7770001", "6660002", "customer-4242", "customer-4343", "1717"):
            # a whole number, not digits of a timestamp the page carries (CI saw "...T164710.171716Z")
            assert not re.search(rf"(?<![0-9]){secret}(?![0-9])", text), (where, secret)
        assert "onerror" not in text or where in ("failures", "message"), where
    message = report.summary()
    assert "<img" not in message and "\\u003cimg src=x onerror=alert\\u0028" in message  # inert, and cut short
    assert max(len(line) for line in message.splitlines()) < 200
