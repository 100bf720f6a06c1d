"""What each stage returns: small typed records passed task to task through XCom.

Large data never travels here: the records carry S3 keys under the run's prefix (`RunArtifacts`),
counts, hashes and decisions. The DAG, the stages and the tests share these types.
"""

from __future__ import annotations

from typing import TypedDict


class Extracted(TypedDict):
    raw_key: str  # the Parquet snapshot of the collection
    rows: int
    invalid_rows: int  # rows holding a value of the wrong type (kept in `_invalid_values`)
    fingerprint: str  # order-independent sha256 of the content
    bytes: int  # size of the Parquet snapshot


class Validated(TypedDict):
    success: bool
    result_key: str  # GX's result JSON
    report_key: str  # the self-contained HTML report
    data_docs_key: str  # GX's Data Docs index


class DriftChecked(TypedDict, total=False):
    checked: bool  # False before the first champion (then `reason` says so)
    reason: str
    champion_version: str | None
    drifted: list[str]
    report_key: str


class SplitKeys(TypedDict):
    train: str
    validation: str
    test: str


class Transformed(TypedDict):
    split_keys: SplitKeys
    rows: dict[str, int]
    seed: int


class Trained(TypedDict):
    model_key: str  # the fitted estimator (joblib), this run's own file
    sha256: str
    onnx_key: str | None  # what would serve; None when the model cannot be converted
    onnx_sha256: str | None
    onnx_parity: dict  # max |ONNX - scikit-learn| on the test split and the schema sweep
    serving_problem: str | None  # why it cannot serve faithfully, if it cannot
    profile_key: str  # reference profile of the training split (drift, skew)
    version: str  # <run_after>-<sha256[:10]>
    threshold: float
    trained_at: str


class Decision(TypedDict):
    bless: bool
    reason: str
    challenger: bool  # not blessed, but good enough to score in shadow beside the champion
    primary_metric: str
    min_roc_auc: float
    margin: float
    candidate_version: str
    candidate: dict  # metrics on the test split
    onnx_parity: dict | None
    champion_version: str | None
    champion_etag: str | None  # the pointer's etag when read: push moves it only if unchanged
    champion: dict | None
    facts_key: str
    report_key: str
    evaluation_key: str


class Pushed(TypedDict, total=False):
    pushed: bool
    version: str
    reason: str  # when not pushed
    previous_version: str | None
    model_uri: str
    pointer_uri: str


# The scoring DAG (cross_sell.scoring).
class Scored(TypedDict):
    scores_key: str
    quarantine_key: str
    summary_key: str
    rows: int  # scored
    quarantined: int
    model_version: str
    scored_at: str


class Campaign(TypedDict):
    csv_key: str
    parquet_key: str
    customers: int
    cutoff_probability: float
    expected_buyers: float


class Published(TypedDict):
    collection: str
    documents: int
    inserted: int
    updated: int
