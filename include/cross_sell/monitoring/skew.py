"""Train/serve skew: request rows sampled by the service, compared with the champion's training profile.

The service writes samples as JSON lines under `<prefix>/serving-samples/date=YYYY-MM-DD/`;
`python -m cross_sell skew` reads them back and prints the same distances as the pipeline's drift check.
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING

from ..data import schema
from ..storage import objects

if TYPE_CHECKING:  # the service writes samples with this module and has no SciPy for `drift`
    import pandas as pd

    from .drift import DriftReport

log = logging.getLogger(__name__)

SAMPLES = "serving-samples"
# Besides the request's fields, a sample holds what was answered (and by the shadow, if any).
ANSWER_COLUMNS = ("model_version", "sampled_at", "probability", "shadow_version", "shadow_probability")
# A flush holds at most SERVING_SAMPLE_FLUSH_SECONDS of one worker's sampled rows; anything far larger was
# not written by the service (samples come from the serving side: they feed reports, never training).
MAX_SAMPLE_BYTES = 64 * 1024 * 1024


def sample_key(prefix: str, when: datetime, source: str) -> str:
    """Where one flush of sampled rows goes; `source` keeps writers (host, process) apart."""
    stamp = when.astimezone(timezone.utc)
    return objects.join_key(prefix, SAMPLES, f"date={stamp:%Y-%m-%d}", f"{stamp:%H%M%S%f}-{source}.jsonl")


def samples_prefix(prefix: str) -> str:
    return objects.folder(prefix, SAMPLES)


def source_name(pid: int) -> str:
    return f"{socket.gethostname()}-{pid}"


def read_samples(s3, bucket: str, prefix: str, since: date | None = None,
                 until: date | None = None) -> pd.DataFrame:
    """Every sampled row (on or after `since`, up to and including `until`), typed by the schema's
    serving columns."""
    import pandas as pd

    from ..data import casting

    root = samples_prefix(prefix)
    rows: list[dict] = []
    unreadable = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root):
        for item in page.get("Contents", []):
            day = item["Key"][len(root):].split("/", 1)[0].removeprefix("date=")
            if (since is not None and day < since.isoformat()) or (until is not None and day > until.isoformat()):
                continue
            body = objects.read(s3, bucket, item["Key"], MAX_SAMPLE_BYTES)[0].decode(errors="replace")
            for line in filter(str.strip, body.splitlines()):
                row = _json_object(line)
                if row is None:
                    unreadable += 1
                else:
                    rows.append(row)
    # The service writes only rows that passed its checks; a row that does not (planted by someone who can
    # write the bucket, or cut short) is left out and counted, never judged, and never stops the report.
    broken = {problem.row for problem in casting.cast_documents(rows, schema.SERVING)[1]}
    if unreadable or broken:
        log.warning("serving samples: %s line(s) that are no JSON object and %s row(s) outside the serving "
                    "schema left out (the service writes neither)", f"{unreadable:,}", f"{len(broken):,}")
        rows = [row for i, row in enumerate(rows) if i not in broken]
    frame = pd.DataFrame(rows, columns=[*schema.column_names(schema.SERVING), *ANSWER_COLUMNS])
    for answer in ("probability", "shadow_probability"):
        frame[answer] = pd.to_numeric(frame[answer], errors="coerce")
    return frame.astype({c.name: c.pandas_dtype for c in schema.columns(schema.SERVING)})


def _json_object(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def report(registry, samples: pd.DataFrame, version: str | None = None,
           thresholds: dict | None = None) -> tuple[str, "DriftReport"]:
    """Distances of sampled serving rows from a model's training profile (the champion by default)."""
    from . import drift

    version, reference = drift.reference_profile(registry, version)
    return version, drift.compare(reference, samples, thresholds)


@dataclass
class Checked:
    """What the `skew` operation found: `rows` sampled since the day asked; `too_few` says why nothing was
    judged; otherwise the distances from `version`'s training profile."""

    rows: int
    too_few: str | None = None
    version: str | None = None
    found: DriftReport | None = None

    def text(self) -> str:
        if self.found is None:
            return f"train/serve skew: {self.rows:,} sampled serving rows: {self.too_few}; nothing judged"
        return "\n".join([f"train/serve skew: {self.rows:,} sampled serving rows vs the training data of "
                          f"{self.version} ({self.found.reference_rows:,} rows)", self.found.table(),
                          f"drifted: {', '.join(self.found.drifted) or 'none'}"])


def check(clients, since: date | None = None, version: str | None = None, thresholds: dict | None = None) -> Checked:
    """The `skew` operation: sampled serving rows since `since` against the training profile of the champion
    (or `version`). Raises NothingToDo when there is no sample, NotRetryable for an unknown version."""
    from ..errors import NothingToDo, NotRetryable
    from .drift import too_few

    registry, settings = clients.registry, clients.settings
    samples = read_samples(registry.s3, settings.s3_bucket, settings.s3_prefix, since)
    if samples.empty:
        raise NothingToDo(f"no sampled serving rows under {registry.uri(samples_prefix(settings.s3_prefix))}"
                          f"{f' since {since}' if since else ''} (is SERVING_SAMPLE_RATE > 0?)")
    if too_few(len(samples)):
        return Checked(len(samples), too_few=too_few(len(samples)))
    try:
        version, found = report(registry, samples, version, thresholds)
    except LookupError as error:
        raise NotRetryable(str(error)) from error
    return Checked(len(samples), version=version, found=found)
