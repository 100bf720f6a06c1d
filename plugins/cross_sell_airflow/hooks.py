"""Clients built from Airflow connections, configured by connection id (never by URL)."""

from __future__ import annotations

from typing import Iterator

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.mongo.hooks.mongo import MongoHook

from cross_sell.artifacts import RunArtifacts
from cross_sell.registry import ModelRegistry
from cross_sell.settings import Settings


def customer_documents(settings: Settings) -> Iterator[dict]:
    """Stream the customers collection without `_id`, `extract_batch_size` documents per round trip."""
    with MongoHook(mongo_conn_id=settings.mongo_conn_id) as hook:
        collection = hook.get_collection(settings.mongo_collection, mongo_db=settings.mongo_database)
        yield from collection.find({}, projection={"_id": False}, batch_size=settings.extract_batch_size)


def s3_client(settings: Settings):
    return S3Hook(aws_conn_id=settings.aws_conn_id).get_conn()


def run_artifacts(settings: Settings, run_id: str) -> RunArtifacts:
    return RunArtifacts(s3_client(settings), settings.s3_bucket, settings.s3_prefix, run_id)


def model_registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry(s3_client(settings), settings.s3_bucket, settings.s3_prefix)
