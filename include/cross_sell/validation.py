"""Great Expectations validation of a raw snapshot, with the suite generated from the schema.

`great_expectations` takes seconds to import, so it is imported inside the functions only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import schema
from .errors import NotRetryable

SUITE_NAME = "cross_sell_raw_snapshot"
DOCS_SITE = "run_data_docs"
SAMPLE_VALUES = 5  # offending values quoted per failed expectation


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
                      result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_VALUES})
    )
    run = checkpoint.run(batch_parameters={"dataframe": frame})
    result = next(iter(run.run_results.values()))
    payload = json.loads(json.dumps(result.to_json_dict(), default=str))
    return ValidationReport(
        success=bool(result.success),
        statistics=payload.get("statistics", {}),
        failures=[_failure(r) for r in payload["results"] if not r["success"]],
        result=payload,
    )


def expectation_rows(result: dict) -> list[dict]:
    """Every expectation of a validation result, flat, for the HTML report: what was expected, what
    was observed, how many rows broke it and a sample of their values."""
    rows = []
    for item in result.get("results", []):
        config = item["expectation_config"]
        kwargs = {k: v for k, v in config["kwargs"].items() if k not in ("batch_id", "result_format", "column")}
        details = item.get("result") or {}
        observed = details.get("observed_value")
        if item.get("exception_info", {}).get("raised_exception"):
            observed = f"could not be evaluated: {item['exception_info'].get('exception_message')}"
        rows.append({
            "type": config["type"], "column": config["kwargs"].get("column"), "success": bool(item["success"]),
            "expected": _expected(kwargs) if kwargs else "", "observed": "" if observed is None else observed,
            "element_count": details.get("element_count"), "unexpected_count": details.get("unexpected_count"),
            "unexpected_percent": details.get("unexpected_percent"),
            "sample": [repr(v) for v in (details.get("partial_unexpected_list") or [])[:SAMPLE_VALUES]],
        })
    return sorted(rows, key=lambda row: row["success"])  # failures first


def _failure(result: dict) -> dict:
    config = result["expectation_config"]
    kwargs = {k: v for k, v in config["kwargs"].items() if k not in ("batch_id", "result_format")}
    name = config["type"]
    target = kwargs.get("column", "table")
    details = result.get("result") or {}
    if result.get("exception_info", {}).get("raised_exception"):
        detail = f"could not be evaluated: {result['exception_info'].get('exception_message')}"
    elif "unexpected_count" in details and details.get("unexpected_count") is not None:
        sample = details.get("partial_unexpected_list") or []
        detail = (f"{details['unexpected_count']} of {details.get('element_count')} rows unexpected "
                  f"({details.get('unexpected_percent', 0):.3g} %), e.g. {sample[:SAMPLE_VALUES]}")
    elif "observed_value" in details:
        detail = f"observed {details['observed_value']!r}, expected {_expected(kwargs)}"
    else:
        detail = f"failed, expected {_expected(kwargs)}"
    return {"expectation": f"{name}({target})", "column": kwargs.get("column"), "detail": detail,
            "unexpected_count": details.get("unexpected_count"), "kwargs": kwargs}


def _expected(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k != "column") or "success"
