"""Great Expectations validation of a raw snapshot, with the suite generated from the schema.

`great_expectations` takes seconds to import, so it is imported inside the functions only.

No value of the data leaves this module through GX: it runs with no sample of unexpected values (its
Data Docs render them as raw HTML), so its result (`result.json`) and Data Docs hold counts only. The
samples shown in the project's own report, the failure message (the `validate` task's log and its alert)
and `summary.json` are taken here, from the frame: for a failed value-set or range expectation, the most
frequent unexpected values, at most `SAMPLE_VALUES`, each quoted and cut to `SAMPLE_CHARS`. The identifier
and the personal columns (`schema.PERSONAL_COLUMNS`) and the column quoting a row's mistyped values
(`schema.INVALID_VALUES_COLUMN`) are never sampled: their failures give counts only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import NotRetryable
from . import schema

SUITE_NAME = "cross_sell_raw_snapshot"
DOCS_SITE = "run_data_docs"
SAMPLE_VALUES = 5  # distinct offending values quoted per failed expectation
SAMPLE_CHARS = 40  # each quoted value cut to this many characters
# Never sampled: who a row is (the key), what describes the person, and a row's mistyped raw values.
MASKED_COLUMNS = schema.PERSONAL_COLUMNS | {schema.INVALID_VALUES_COLUMN}
_SAMPLED_EXPECTATIONS = ("expect_column_values_to_be_in_set", "expect_column_values_to_be_between")


class DataValidationError(NotRetryable):
    """The snapshot broke the data contract; the message lists every failed expectation."""


@dataclass
class ValidationReport:
    success: bool
    statistics: dict
    failures: list[dict] = field(default_factory=list)
    result: dict = field(default_factory=dict)  # the full GX validation result as JSON

    def summary(self) -> str:
        head = (f"{self.statistics.get('successful_expectations')}/{self.statistics.get('evaluated_expectations')} "
                f"expectations passed")
        if self.success:
            return head
        lines = [f"{head}; {len(self.failures)} failed:"]
        for failure in self.failures:
            lines.append(f"  - {failure['expectation']}: {failure['detail']}")
        return "\n".join(lines)


# pandas 3 gives string columns the "str" dtype, checked with ExpectColumnValuesToBeOfType("str").
_NUMERIC_TYPES = {"integer": ["int64", "Int64"], "float": ["float64", "Float64"]}


def build_suite(min_rows: int):
    """The contract as an ExpectationSuite: one list of rules, derived from `schema.COLUMNS`."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=SUITE_NAME)
    add = suite.add_expectation
    add(gxe.ExpectTableRowCountToBeBetween(min_value=min_rows))
    for column in schema.columns(schema.TRAINING):
        add(gxe.ExpectColumnToExist(column=column.name))
        add(gxe.ExpectColumnValuesToNotBeNull(column=column.name))
        if column.kind == "category":
            add(gxe.ExpectColumnValuesToBeOfType(column=column.name, type_="str"))
        else:
            add(gxe.ExpectColumnValuesToBeInTypeList(column=column.name, type_list=_NUMERIC_TYPES[column.kind]))
        if column.allowed is not None:
            add(gxe.ExpectColumnValuesToBeInSet(column=column.name, value_set=list(column.allowed)))
        if column.minimum is not None or column.maximum is not None:
            add(gxe.ExpectColumnValuesToBeBetween(column=column.name, min_value=column.minimum,
                                                  max_value=column.maximum))
    add(gxe.ExpectColumnValuesToBeUnique(column=schema.KEY))
    low, high = schema.LABEL_RATE_BOUNDS
    add(gxe.ExpectColumnMeanToBeBetween(column=schema.LABEL, min_value=low, max_value=high))
    # Values that could not take their declared type at extraction are kept here, one JSON per row.
    add(gxe.ExpectColumnValuesToBeNull(column=schema.INVALID_VALUES_COLUMN))
    return suite


def run_suite(frame: pd.DataFrame, min_rows: int, docs_dir: str | Path | None = None) -> ValidationReport:
    """Run the suite on `frame`; optionally render the Data Docs HTML site under `docs_dir`."""
    # GX logs ~200 INFO lines per run ("Skipping registering function ... because it is a closure");
    # the task log keeps the project's lines and GX's warnings.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # keep task logs readable
    if docs_dir is not None:
        context.add_data_docs_site(site_name=DOCS_SITE, site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        })
    batch_definition = (
        context.data_sources.add_pandas(name="snapshot")
        .add_dataframe_asset(name="raw")
        .add_batch_definition_whole_dataframe(name="whole")
    )
    suite = context.suites.add(build_suite(min_rows))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="raw_snapshot", data=batch_definition, suite=suite)
    )
    actions: list = []
    if docs_dir is not None:
        from great_expectations.checkpoint import UpdateDataDocsAction

        actions.append(UpdateDataDocsAction(name="docs", site_names=[DOCS_SITE]))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(name="raw_snapshot", validation_definitions=[definition], actions=actions,
                      # counts, no sample: GX's Data Docs would print a sampled value as raw HTML
                      result_format={"result_format": "SUMMARY", "partial_unexpected_count": 0})
    )
    run = checkpoint.run(batch_parameters={"dataframe": frame})
    result = next(iter(run.run_results.values()))
    payload = json.loads(json.dumps(result.to_json_dict(), default=str))
    for item in payload["results"]:  # whatever GX adds in a later version: no value list leaves
        for key in _VALUE_LISTS & set(item.get("result") or {}):
            del item["result"][key]
    return ValidationReport(
        success=bool(result.success),
        statistics=payload.get("statistics", {}),
        failures=[_failure(r, frame) for r in payload["results"] if not r["success"]],
        result=payload,
    )


_VALUE_LISTS = {"partial_unexpected_list", "partial_unexpected_counts", "partial_unexpected_index_list",
                "unexpected_list", "unexpected_index_list", "unexpected_index_query", "unexpected_rows"}


def label(config: dict) -> str:
    """An expectation as the failure message and the report name it, e.g. `expect_..._in_set(Gender)`."""
    return f"{config['type']}({config['kwargs'].get('column') or 'table'})"


def quoted(value) -> str:
    """One data value as a sample shows it: Python's repr (line breaks and control characters escaped),
    cut to `SAMPLE_CHARS`."""
    text = repr(value.item() if hasattr(value, "item") else value)
    return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS - 1] + "…"


_INERT = {ord(c): f"\\u{ord(c):04x}" for c in "<>&[]()`|"}


def inert(text: str) -> str:
    """`text` for a plain-text message read where markup may be rendered (a task log in a browser, an alert
    in chat or e-mail): the characters that open a tag, a link or a code span written as \\uXXXX."""
    return text.translate(_INERT)


def unexpected_values(frame: pd.DataFrame, config: dict) -> list[dict] | None:
    """The sample of a failed expectation: its most frequent unexpected values (`quoted`) with their counts,
    for a value-set or range expectation on a column that is not masked; None otherwise."""
    column = config["kwargs"].get("column")
    if config["type"] not in _SAMPLED_EXPECTATIONS or column in MASKED_COLUMNS or column not in frame:
        return None
    series = frame[column]
    if config["type"] == "expect_column_values_to_be_in_set":
        broken = series.notna() & ~series.isin(list(config["kwargs"]["value_set"]))
    else:
        numbers = pd.to_numeric(series, errors="coerce")
        low, high = config["kwargs"].get("min_value"), config["kwargs"].get("max_value")
        broken = pd.Series(False, index=series.index)
        if low is not None:
            broken |= numbers < low
        if high is not None:
            broken |= numbers > high
    counts = series[broken].value_counts().head(SAMPLE_VALUES)
    return [{"value": quoted(value), "count": int(count)} for value, count in counts.items()]


def expectation_rows(result: dict, failures: list[dict] | None = None) -> list[dict]:
    """Every expectation of a validation result, flat, for the HTML report: what was expected, what
    was observed, how many rows broke it and the sample of their values `failures` hold (None: masked)."""
    samples = {failure["expectation"]: failure.get("sample") for failure in failures or []}
    rows = []
    for item in result.get("results", []):
        config = item["expectation_config"]
        kwargs = {k: v for k, v in config["kwargs"].items() if k not in ("batch_id", "result_format", "column")}
        details = item.get("result") or {}
        observed = details.get("observed_value")
        masked = config["kwargs"].get("column") in MASKED_COLUMNS
        if item.get("exception_info", {}).get("raised_exception"):
            message = str(item["exception_info"].get("exception_message"))[:200]
            observed = ("could not be evaluated (its message is not shown: the column is personal or identifying)"
                        if masked else f"could not be evaluated: {message}")
        rows.append({
            "type": config["type"], "column": config["kwargs"].get("column"), "success": bool(item["success"]),
            "expected": _expected(kwargs) if kwargs else "", "observed": "" if observed is None else observed,
            "element_count": details.get("element_count"), "unexpected_count": details.get("unexpected_count"),
            "unexpected_percent": details.get("unexpected_percent"),
            "sample": samples.get(label(config)),
            "masked": masked,
        })
    return sorted(rows, key=lambda row: row["success"])  # failures first


def _failure(result: dict, frame: pd.DataFrame) -> dict:
    """One failed expectation: its label, the message line (counts; a sample of the values of a column that
    is not masked, `inert`) and the sample itself (`unexpected_values`)."""
    config = result["expectation_config"]
    kwargs = {k: v for k, v in config["kwargs"].items() if k not in ("batch_id", "result_format")}
    column = kwargs.get("column")
    masked = column in MASKED_COLUMNS
    details = result.get("result") or {}
    sample = None
    if result.get("exception_info", {}).get("raised_exception"):
        message = str(result["exception_info"].get("exception_message"))
        detail = ("could not be evaluated (its message is not shown: the column is personal or identifying)"
                  if masked else f"could not be evaluated: {inert(message[:200])}")
    elif "unexpected_count" in details and details.get("unexpected_count") is not None:
        detail = (f"{details['unexpected_count']} of {details.get('element_count')} rows unexpected "
                  f"({details.get('unexpected_percent', 0):.3g} %)")
        sample = unexpected_values(frame, config)
        if masked and config["type"] != "expect_column_values_to_not_be_null":  # a null has nothing to hide
            detail += "; values not shown (personal or identifying column)"
        elif sample:
            detail += ", most frequent: " + ", ".join(f"{inert(s['value'])} ({s['count']:,})" for s in sample)
    elif "observed_value" in details:
        detail = f"observed {details['observed_value']!r}, expected {_expected(kwargs)}"
    else:
        detail = f"failed, expected {_expected(kwargs)}"
    return {"expectation": label(config), "column": column, "detail": detail, "sample": sample, "masked": masked,
            "unexpected_count": details.get("unexpected_count"), "kwargs": kwargs}


def _expected(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k != "column") or "success"
