"""What each stage returns: small typed records passed task to task through XCom.

Large data never travels here: the records carry S3 objects under the run's prefix (`RunArtifacts`)
as `Artifact`s, counts, hashes and decisions. The DAG, the stages and the tests share these types.

Custody: XCom lives in Airflow's metadata database, out of reach of whoever can write the bucket, so
the sha256 and size of every object one task hands to another travel here, and the reader checks the
object against them before it uses it (`objects.read_artifact`, `RunArtifacts.download`).
"""

from __future__ import annotations

from typing import TypedDict


class Artifact(TypedDict):
    """An object a task wrote, as its writer recorded it."""

    key: str
    sha256: str
    bytes: int


class Extracted(TypedDict):
    snapshot: Artifact  # the Parquet snapshot of the collection
    rows: int
    invalid_rows: int  # rows holding a value of the wrong type (kept in `_invalid_values`)
    fingerprint: str  # order-independent sha256 of the content
    suppressed: int  # erased customers found in the collection and left out


class Validated(TypedDict):
    snapshot: Artifact  # what was validated
    success: bool
    result_key: str  # GX's result JSON
    report_key: str  # the self-contained HTML report
    report: Artifact  # the same report, with its sha256 (MLflow tracking logs it)
    data_docs_key: str  # GX's Data Docs index
    summary: Artifact  # the verdict the evaluation report quotes


class DriftChecked(TypedDict, total=False):
    snapshot: Artifact  # what was compared
    checked: bool  # False before the first champion (then `reason` says so)
    reason: str
    champion_version: str | None
    drifted: list[str]
    max_distance: float  # the largest distance of any feature (PSI or L-infinity)
    report_key: str


class Splits(TypedDict):
    train: Artifact
    validation: Artifact
    test: Artifact


class Lineage(TypedDict):
    """The data a model was trained and tested on, as recorded when it was written (the signed manifest
    keeps it, so the version's lineage can be verified later)."""

    snapshot: Artifact
    splits: Splits


class Transformed(TypedDict):
    splits: Splits
    snapshot: Artifact  # what was split
    rows: dict[str, int]
    seed: int


class Trained(TypedDict):
    model: Artifact  # the fitted estimator (joblib), this run's own file
    onnx: Artifact | None  # what would serve; None when the model cannot be converted
    onnx_parity: dict  # max |ONNX - scikit-learn| on the test split and the schema sweep
    serving_problem: str | None  # why it cannot serve faithfully, if it cannot
    profile: Artifact  # reference profile of the training split (drift, skew)
    version: str  # <run_after>-<sha256 of the estimator file, first 10>
    threshold: float
    trained_at: str
    lineage: Lineage
    seed: int
    excluded_features: list[str]  # features the model was trained without (its input stays the same)
    model_family: str  # `model_families` (the `model` param, default CROSS_SELL_MODEL)
    training: dict  # how it was fitted and its threshold chosen (`training.record`), for the manifest


class Decision(TypedDict):
    bless: bool
    reason: str
    challenger: bool  # not blessed, but good enough to score in shadow beside the champion
    primary_metric: str
    min_roc_auc: float
    margin: float
    candidate_version: str
    candidate_sha256: str  # the candidate's estimator file: what was judged, by its bytes
    candidate: dict  # metrics on the test split
    onnx_parity: dict | None
    champion_version: str | None
    champion_etag: str | None  # etag of the pointer whose champion was scored: push moves it only if unchanged
    champion: dict | None
    # Set when the `replace_unreadable_champion` param let a candidate replace a champion that could not
    # be verified or scored: the version and why (recorded in the decision and the audit record).
    replaced_unreadable: dict | None
    facts: Artifact  # both models' figures on the test split, calibration and fairness included
    # Per model ("candidate", "champion"), per protected attribute: demographic-parity ratio and
    # equalized-odds difference (the per-group figures are in `facts`).
    fairness: dict[str, dict]
    max_equalized_odds_difference: float
    policy: dict  # the deployment policy in force (`governance.policy`): the gates this run could only tighten
    fairness_gated: list[str]  # attributes the cap applies to (schema.PROTECTED_ATTRIBUTES)
    excluded_features: list[str]
    validation: Artifact | None  # the snapshot's validation verdict (the manifest's lineage keeps it)
    report_key: str
    evaluation_key: str


class ApprovalRequest(TypedDict):
    body: str  # markdown, shown to the reviewer (the Airflow UI's Required Actions)
    subject: dict  # what an approval is bound to (`approval.push_subject`)


class Pushed(TypedDict, total=False):
    pushed: bool
    version: str
    reason: str  # when not pushed
    previous_version: str | None
    model_uri: str
    pointer_uri: str


class Shadowed(TypedDict):
    shadow: str  # the challenger now scored in shadow
    champion: str | None
    set_at: str


class RolledBack(TypedDict):
    """The rollback DAG's change: the champion record it wrote (`registry.rollback`)."""

    version: str
    previous_version: str | None
    sequence: int
    by: str
    forced: bool


# The scoring DAG (cross_sell.scoring.batch).
class Scored(TypedDict):
    scores: Artifact
    quarantine: Artifact
    summary: Artifact
    rows: int  # scored
    quarantined: int
    excluded: dict[str, int]  # reason -> customers left out (no marketing consent, contacted recently)
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
    removed: int  # earlier scores of customers this run did not score


# The monitoring DAG (cross_sell.monitoring.daily).
class Monitored(TypedDict):
    day: str
    daily: Artifact  # monitoring/daily/<day>.json
    alerts: list[str]


# The erasure DAG (cross_sell.privacy.erasure.run_request): counts and keys, never an id.
class Erased(TypedDict):
    request: str
    dry_run: bool
    customers: int
    mongodb: dict[str, int]  # collection -> documents deleted (or found, in a dry run)
    object_versions_changed: int
    rows_removed: int
    receipt_key: str | None  # None in a dry run
    models_trained_on_their_data: list[str]
    left: int  # documents and rows of theirs a re-scan after the erasure still found (0, or it failed)
    request_deleted: bool  # the request file (plaintext ids) is gone, a dry run's too


# The housekeeping DAG (cross_sell.privacy.retention.run): what went, by data class, and what stayed and why.
class Retained(TypedDict, total=False):
    dry_run: bool
    kind: str
    at: str
    by: str
    deleted_object_versions: int
    delete: dict[str, dict]  # data class -> units, object versions, bytes
    kept_because: dict[str, str]
    restorable: dict[str, str]  # versions a rollback may restore without force -> why (retention.restorable)
    record_key: str
