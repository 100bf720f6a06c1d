"""Where things live, read from the environment so the same code runs locally, in compose and in prod."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .governance.policy import Policy
from .model.model_families import DEFAULT as DEFAULT_MODEL
from .model.model_families import ENV as MODEL_ENV


@dataclass(frozen=True)
class Settings:
    s3_bucket: str = "cross-sell"
    s3_prefix: str = "vehicle-insurance"
    mongo_database: str = "insurance"
    mongo_collection: str = "customers"
    # Airflow connection ids (the DAG side); the CLI reads MONGO_URI and the AWS_* variables instead.
    mongo_conn_id: str = "mongo_default"
    aws_conn_id: str = "aws_default"
    # The training side's model-signing private key (see cross_sell_airflow.hooks.manifest_signer).
    signing_conn_id: str = "cross_sell_signing"
    # Where alerts go: an HTTP (webhook) or SMTP connection; absent, alerts are only logged.
    alert_conn_id: str = "cross_sell_alerts"
    extract_batch_size: int = 5_000
    schedule: str | None = "@weekly"  # CROSS_SELL_SCHEDULE; "none" for triggered runs only
    # Scoring runs when a new champion lands and on this cron (CROSS_SELL_SCORING_CRON; "none": only then).
    scoring_cron: str | None = "0 5 * * *"
    scores_collection: str = "customer_scores"
    outcomes_collection: str = "customer_outcomes"  # {id, Response, observed_at}: what customers did
    monitoring_cron: str = "0 6 * * *"
    housekeeping_cron: str = "0 4 * * *"  # retention (the cross_sell_housekeeping DAG)
    retry_delay_seconds: float = 15.0  # first pause before an I/O task retries (doubles each time)
    # > 0: each champion audit record is written under S3 Object Lock (COMPLIANCE) for this many days; the
    # bucket must have Object Lock enabled (compose's minio-init creates it so). 0: conditional writes only.
    audit_lock_days: int = 0
    # Customer data an insurer may lawfully keep (docs/data-governance.md): days each class is kept...
    retention_runs_days: int = 90  # training runs' snapshots and splits (unless a kept model used them)
    retention_scores_days: int = 90  # scoring runs: scores, campaign lists, quarantine files
    retention_samples_days: int = 30  # the service's sampled request rows
    retention_reports_days: int = 400  # monitoring days
    retention_keep_versions: int = 3  # ...and the last N registry versions keep their training runs
    # Who may delete: the housekeeping user (retention, erasure), never the training side.
    housekeeping_aws_conn_id: str = "aws_default"
    # MongoDB connection of each role (compose: a user per role; locally one connection for all).
    scoring_mongo_conn_id: str = "mongo_default"
    monitoring_mongo_conn_id: str = "mongo_default"
    erasure_mongo_conn_id: str = "mongo_default"
    consent_collection: str = "customer_consent"  # {id, contact_allowed, updated_at}: marketing opt-outs
    contacts_collection: str = "customer_contacts"  # {id, contacted_at}: who was called when
    erased_collection: str = "erased_customers"  # the suppression list: keyed hashes of erased ids
    # The secret key of those hashes (a file): whoever loads, extracts or erases customers needs it.
    erasure_key_file: str | None = None
    # Model governance (docs/model-governance.md): the gates of promotion and rollback, which a run's params
    # may tighten, never loosen (`cross_sell.governance.policy`).
    policy: Policy = field(default_factory=Policy)
    # The model family training runs use unless a run's `model` param says another (CROSS_SELL_MODEL; the
    # policy's CROSS_SELL_ALLOWED_MODELS may restrict both): `cross_sell.model_families`.
    model: str = DEFAULT_MODEL
    approval_timeout_hours: float = 72.0  # no answer by then: no push (nor forced rollback)

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ.get
        defaults = cls()
        return cls(
            s3_bucket=env("CROSS_SELL_S3_BUCKET", defaults.s3_bucket),
            s3_prefix=env("CROSS_SELL_S3_PREFIX", defaults.s3_prefix).strip("/"),
            mongo_database=env("CROSS_SELL_MONGO_DATABASE", defaults.mongo_database),
            mongo_collection=env("CROSS_SELL_MONGO_COLLECTION", defaults.mongo_collection),
            mongo_conn_id=env("CROSS_SELL_MONGO_CONN_ID", defaults.mongo_conn_id),
            aws_conn_id=env("CROSS_SELL_AWS_CONN_ID", defaults.aws_conn_id),
            signing_conn_id=env("CROSS_SELL_SIGNING_CONN_ID", defaults.signing_conn_id),
            alert_conn_id=env("CROSS_SELL_ALERT_CONN_ID", defaults.alert_conn_id),
            extract_batch_size=int(env("CROSS_SELL_EXTRACT_BATCH_SIZE", defaults.extract_batch_size)),
            schedule=None if env("CROSS_SELL_SCHEDULE", "").lower() == "none" else
            env("CROSS_SELL_SCHEDULE") or defaults.schedule,
            retry_delay_seconds=float(env("CROSS_SELL_RETRY_DELAY_SECONDS", defaults.retry_delay_seconds)),
            scoring_cron=None if env("CROSS_SELL_SCORING_CRON", "").lower() == "none" else
            env("CROSS_SELL_SCORING_CRON") or defaults.scoring_cron,
            scores_collection=env("CROSS_SELL_SCORES_COLLECTION", defaults.scores_collection),
            outcomes_collection=env("CROSS_SELL_OUTCOMES_COLLECTION", defaults.outcomes_collection),
            monitoring_cron=env("CROSS_SELL_MONITORING_CRON", defaults.monitoring_cron),
            housekeeping_cron=env("CROSS_SELL_HOUSEKEEPING_CRON", defaults.housekeeping_cron),
            audit_lock_days=int(env("CROSS_SELL_AUDIT_LOCK_DAYS", defaults.audit_lock_days)),
            retention_runs_days=int(env("CROSS_SELL_RETENTION_RUNS_DAYS", defaults.retention_runs_days)),
            retention_scores_days=int(env("CROSS_SELL_RETENTION_SCORES_DAYS", defaults.retention_scores_days)),
            retention_samples_days=int(env("CROSS_SELL_RETENTION_SAMPLES_DAYS", defaults.retention_samples_days)),
            retention_reports_days=int(env("CROSS_SELL_RETENTION_REPORTS_DAYS", defaults.retention_reports_days)),
            retention_keep_versions=int(env("CROSS_SELL_RETENTION_KEEP_VERSIONS", defaults.retention_keep_versions)),
            housekeeping_aws_conn_id=env("CROSS_SELL_HOUSEKEEPING_AWS_CONN_ID", defaults.housekeeping_aws_conn_id),
            scoring_mongo_conn_id=env("CROSS_SELL_SCORING_MONGO_CONN_ID", defaults.scoring_mongo_conn_id),
            monitoring_mongo_conn_id=env("CROSS_SELL_MONITORING_MONGO_CONN_ID", defaults.monitoring_mongo_conn_id),
            erasure_mongo_conn_id=env("CROSS_SELL_ERASURE_MONGO_CONN_ID", defaults.erasure_mongo_conn_id),
            consent_collection=env("CROSS_SELL_CONSENT_COLLECTION", defaults.consent_collection),
            contacts_collection=env("CROSS_SELL_CONTACTS_COLLECTION", defaults.contacts_collection),
            erased_collection=env("CROSS_SELL_ERASED_COLLECTION", defaults.erased_collection),
            erasure_key_file=env("CROSS_SELL_ERASURE_KEY_FILE") or None,
            policy=Policy.from_env(),
            model=env(MODEL_ENV) or defaults.model,
            approval_timeout_hours=float(env("CROSS_SELL_APPROVAL_TIMEOUT_HOURS", defaults.approval_timeout_hours)),
        )


def mongo_uri() -> str:
    return os.environ.get("MONGO_URI", "mongodb://127.0.0.1:27017")


def s3_client():
    """A boto3 S3 client for the CLI; boto3 itself reads AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, etc."""
    import boto3

    return boto3.client("s3", region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
