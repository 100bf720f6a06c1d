"""Clients built from Airflow connections, configured by connection id (never by URL)."""

from __future__ import annotations

from typing import Iterator

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.mongo.hooks.mongo import MongoHook
from airflow.sdk import BaseHook

from cross_sell.settings import Settings
from cross_sell.storage.artifacts import RunArtifacts
from cross_sell.storage.registry import ModelRegistry
from cross_sell.storage.signing import ManifestSigner, ManifestVerifier, SignatureError


def customer_documents(settings: Settings, fields: tuple[str, ...] | None = None,
                       conn_id: str | None = None) -> Iterator[dict]:
    """Stream the customers collection without `_id` (or only `fields`), `extract_batch_size` per round trip,
    through `conn_id` (the DAG's MongoDB role; default the training side's)."""
    projection = {"_id": False, **{name: True for name in fields or ()}}
    with MongoHook(mongo_conn_id=conn_id or settings.mongo_conn_id) as hook:
        collection = hook.get_collection(settings.mongo_collection, mongo_db=settings.mongo_database)
        yield from collection.find({}, projection=projection, batch_size=settings.extract_batch_size)


def s3_client(settings: Settings, aws_conn_id: str | None = None):
    return S3Hook(aws_conn_id=aws_conn_id or settings.aws_conn_id).get_conn()


def run_artifacts(settings: Settings, run_id: str) -> RunArtifacts:
    return RunArtifacts(s3_client(settings), settings.s3_bucket, settings.s3_prefix, run_id)


def model_registry(settings: Settings, aws_conn_id: str | None = None) -> ModelRegistry:
    """The registry, reading versions only through the public key (CROSS_SELL_SIGNING_PUBLIC_KEY)."""
    return ModelRegistry(s3_client(settings, aws_conn_id), settings.s3_bucket, settings.s3_prefix,
                         ManifestVerifier.from_env(), audit_lock_days=settings.audit_lock_days)


def manifest_signer(settings: Settings) -> ManifestSigner:
    """The model-signing private key, from the Airflow connection `settings.signing_conn_id`.

    The key is the connection's password (the PEM text), or a file named by its extra `key_file`
    (e.g. a Docker or Kubernetes secret); an encrypted key takes its passphrase from extra `passphrase`.
    Only the training side has this connection.
    """
    connection = BaseHook.get_connection(settings.signing_conn_id)
    extra = connection.extra_dejson
    if extra.get("key_file"):
        return ManifestSigner.from_file(extra["key_file"], extra.get("passphrase"))
    if connection.password:
        return ManifestSigner(connection.password.encode(), extra.get("passphrase"))
    raise SignatureError(f"connection {settings.signing_conn_id!r} holds no private key (password or extra key_file)")
