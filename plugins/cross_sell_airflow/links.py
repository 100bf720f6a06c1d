"""Every output one click away from the Airflow UI: operator extra links to the files a task wrote.

Airflow 3 asks each extra link of a task for its URL when the task ends (in the worker, with the task's
connections), keeps the answer in XCom under the link's key, and shows it as a button on the task
instance's page (REST: `GET .../taskInstances/<task>/links`). Each link here names one file in the bucket:
the validation and evaluation reports, the model card rendered as HTML, the campaign list, the scores, the
monitoring page. Its URL is presigned with the task's S3 connection and valid `CROSS_SELL_LINK_HOURS`
(default 24): no bucket credentials in the browser, and an old link stops working (its file's key is in
the task's log). A file that does not exist (a failed or skipped task, a model card never written) gets no
URL, and the UI shows the button without a target. Working out a link never fails the task.

    validated = with_links(validate(extracted), VALIDATION_REPORT)   # in the DAG function
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from airflow.sdk import BaseOperatorLink

from cross_sell.settings import Settings

log = logging.getLogger(__name__)
MAX_SECONDS = 7 * 24 * 3600  # S3's (SigV4) longest presigned URL
# (settings, run id, the task's own XCom record or None, the run's params) -> the object's key, or None
Locate = Callable[[Settings, str, Any, dict], "str | None"]
TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json", ".csv": "text/csv; charset=utf-8",
         ".jsonl": "text/plain; charset=utf-8", ".parquet": "application/octet-stream"}


def link_seconds() -> int:
    hours = float(os.environ.get("CROSS_SELL_LINK_HOURS", "24"))
    return int(min(max(hours * 3600, 60), MAX_SECONDS))


@attrs.define
class OutputLink(BaseOperatorLink):
    """A button named `label` on the task's page, to the object `locate` finds."""

    label: str
    locate: Locate

    @property
    def name(self) -> str:
        return self.label

    @property
    def xcom_key(self) -> str:  # one per link (the default is one per class)
        return "_link_" + re.sub(r"\W+", "_", self.label.lower()).strip("_")

    def get_link(self, operator, *, ti_key) -> str:
        """In the worker, as the task ends (`ti_key` is the running task instance): a presigned URL, or ""."""
        try:
            return self._presigned(ti_key)
        except Exception:  # a link must never fail the task that wrote the file
            log.warning("no %r link for this task", self.label, exc_info=True)
            return ""

    def _presigned(self, ti) -> str:
        from cross_sell_airflow.hooks import s3_client

        settings = Settings.from_env()
        record = ti.xcom_pull(task_ids=ti.task_id) if hasattr(ti, "xcom_pull") else None
        context: dict[str, Any] = dict(ti.get_template_context()) if hasattr(ti, "get_template_context") else {}
        params = dict(context.get("params") or {})
        key = self.locate(settings, ti.run_id, record, params)
        if not key:
            return ""
        s3 = s3_client(settings)
        try:
            s3.head_object(Bucket=settings.s3_bucket, Key=key)
        except s3.exceptions.ClientError:
            log.info("%s: s3://%s/%s is not there (yet): no link", self.label, settings.s3_bucket, key)
            return ""
        suffix = "." + key.rsplit(".", 1)[-1] if "." in key.rsplit("/", 1)[-1] else ""
        params_s3 = {"Bucket": settings.s3_bucket, "Key": key}
        if suffix in TYPES:  # shown in the browser as what it is (a card as a page, not raw text)
            params_s3["ResponseContentType"] = TYPES[suffix]
        if suffix in (".parquet", ".csv"):
            params_s3["ResponseContentDisposition"] = f'attachment; filename="{key.rsplit("/", 1)[-1]}"'
        url = s3.generate_presigned_url("get_object", Params=params_s3, ExpiresIn=link_seconds())
        log.info("%s: s3://%s/%s (link valid %.0f h)", self.label, settings.s3_bucket, key, link_seconds() / 3600)
        return url


# -- where each output is -------------------------------------------------------------------------------
def run_file(*parts: str, area: str = "runs") -> Locate:
    """A file of this run's folder (`<prefix>/<area>/<run id>/...`)."""
    from cross_sell.storage.artifacts import RunArtifacts

    return lambda settings, run_id, record, params: RunArtifacts(
        None, settings.s3_bucket, settings.s3_prefix, run_id, area).key(*parts)


def recorded(*path: str) -> Locate:
    """A key the task's own record holds (e.g. "decision" -> "report_key"); None if it has none."""
    def locate(settings, run_id, record, params):
        value = record
        for step in path:
            value = value.get(step) if isinstance(value, dict) else None
        return value if isinstance(value, str) else None
    return locate


def version_file(name: str, version_field: str = "version", from_params: bool = False) -> Locate:
    """A file of a registry version: the version the task's record (or the run's params) names."""
    from cross_sell.storage.registry import ModelRegistry

    def locate(settings, run_id, record, params):
        source = params if from_params else record
        version = source.get(version_field) if isinstance(source, dict) else None
        if not isinstance(version, str) or (not from_params and record.get("pushed") is False):
            return None
        return ModelRegistry(None, settings.s3_bucket, settings.s3_prefix).version_file_key(version, name)
    return locate


def prefix_file(*parts: str) -> Locate:
    from cross_sell.storage import objects

    return lambda settings, run_id, record, params: objects.join_key(settings.s3_prefix, *parts)


VALIDATION_REPORT = OutputLink("Validation report", run_file("validation", "report.html"))
EVALUATION_REPORT = OutputLink("Evaluation report", run_file("evaluation", "report.html"))
RUN_MODEL_CARD = OutputLink("Model card", run_file("evaluation", "model_card.html"))  # the candidate's
PUSHED_MODEL_CARD = OutputLink("Model card", version_file("model_card.html"))  # the version pushed
SHADOW_MODEL_CARD = OutputLink("Model card", version_file("model_card.html", "shadow"))
RESTORED_MODEL_CARD = OutputLink("Model card", version_file("model_card.html", from_params=True))
SCORES = OutputLink("Scores (Parquet)", run_file("scores.parquet", area="scores"))
LIFT_TABLE = OutputLink("Lift table (JSON)", run_file("summary.json", area="scores"))
QUARANTINE = OutputLink("Quarantined rows", run_file("quarantine.jsonl", area="scores"))
CAMPAIGN = OutputLink("Campaign list (CSV)", run_file("campaign.csv", area="scores"))
MONITORING_PAGE = OutputLink("Monitoring page", prefix_file("monitoring", "report.html"))
MONITORED_DAY = OutputLink("Day's figures (JSON)", recorded("daily", "key"))
ERASURE_RECEIPT = OutputLink("Erasure receipt", recorded("receipt_key"))

T = TypeVar("T")


def with_links(task: T, *links: OutputLink) -> T:
    """`task` (an operator, or the XComArg a TaskFlow call returns) with these extra links; returned."""
    operator: Any = getattr(task, "operator", task)
    operator.operator_extra_links = (*getattr(operator, "operator_extra_links", ()), *links)
    return task
