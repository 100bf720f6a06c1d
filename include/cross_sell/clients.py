"""What an operation reaches, as one object: the settings, the registry through S3 (a reader's, and the
housekeeping user's who may delete), the model-signing key, MongoDB's collections and the suppression list.

Operations take a `Clients`, so a DAG task and a CLI command run the same function with clients built two
ways: `EnvClients` here, for the command line (MONGO_URI, the standard AWS_* variables, the signing key
file), and `cross_sell_airflow.stage.StageRun` for a task (its Airflow connections, one per role).

    with EnvClients.from_env() as clients:
        erasure.erase_ids(clients, ids, request="ticket-4711", reason="art. 17", by="dpo", dry_run=True)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from .errors import NotRetryable
from .settings import Settings, s3_client
from .settings import mongo_uri as default_mongo_uri

if TYPE_CHECKING:  # types only: boto3, pymongo and the registry are imported when first used
    from .privacy.suppression import Suppression
    from .storage.registry import ModelRegistry
    from .storage.signing import ManifestSigner

SIGNING_KEY_ENV = "CROSS_SELL_SIGNING_KEY"  # a private key file: the CLI's break-glass pointer commands


class UsageError(NotRetryable):
    """A command given without what it needs."""


class Clients(Protocol):
    """What every operation may use; each builder opens a client only when an operation first asks."""

    settings: Settings

    @property
    def registry(self) -> ModelRegistry: ...

    @property
    def housekeeping_registry(self) -> ModelRegistry: ...

    @property
    def signer(self) -> ManifestSigner: ...

    def collection(self, name: str, conn_id: str | None = None, written: bool = False) -> Any: ...

    def suppression(self, conn_id: str | None = None) -> Suppression: ...

    def customer_documents(self, fields: tuple[str, ...] | None = None, conn_id: str | None = None
                           ) -> Iterator[dict]: ...


@dataclass
class EnvClients:
    """`Clients` for the command line: one S3 client (boto3 reads the AWS_* variables, AWS_ENDPOINT_URL for
    MinIO or a local server), one MongoDB client (`mongo_uri`, its database from the settings; connection ids
    are the DAGs' roles and mean nothing here), the signing key from a file. Close it (or use `with`)."""

    settings: Settings
    mongo_uri: str
    signing_key: str | None = None
    database: str | None = None  # another database than the settings' (the CLI's --database)
    _mongo: Any = field(default=None, init=False, repr=False)

    @classmethod
    def from_env(cls, mongo_uri: str | None = None, signing_key: str | None = None,
                 database: str | None = None) -> EnvClients:
        return cls(Settings.from_env(), mongo_uri or default_mongo_uri(),
                   signing_key or os.environ.get(SIGNING_KEY_ENV) or None, database)

    @cached_property
    def s3(self):
        return s3_client()

    @cached_property
    def registry(self) -> ModelRegistry:
        """Versions are read only through the public key (CROSS_SELL_SIGNING_PUBLIC_KEY)."""
        from .storage.registry import ModelRegistry
        from .storage.signing import ManifestVerifier

        return ModelRegistry(self.s3, self.settings.s3_bucket, self.settings.s3_prefix, ManifestVerifier.from_env(),
                             audit_lock_days=self.settings.audit_lock_days)

    @property
    def housekeeping_registry(self) -> ModelRegistry:
        return self.registry  # the command's own AWS credentials decide what it may delete

    @cached_property
    def signer(self) -> ManifestSigner:
        from .storage.signing import ManifestSigner, check_pair

        if not self.signing_key:
            raise UsageError(f"moving a pointer or writing a receipt needs the model-signing private key: "
                             f"--signing-key FILE or {SIGNING_KEY_ENV}")
        try:
            signer = ManifestSigner.from_file(self.signing_key)
        except OSError as error:
            raise UsageError(f"the model-signing private key {self.signing_key}: {error.strerror}") from None
        return check_pair(signer, self.registry.verifier)

    def collection(self, name: str, conn_id: str | None = None, written: bool = False):
        if self._mongo is None:
            from pymongo import MongoClient

            self._mongo = MongoClient(self.mongo_uri, serverSelectionTimeoutMS=10_000)
        return self._mongo[self.database or self.settings.mongo_database][name]

    def suppression(self, conn_id: str | None = None) -> Suppression:
        from .privacy.suppression import Suppression, read_key

        return Suppression.from_collection(self.collection(self.settings.erased_collection),
                                           read_key(self.settings.erasure_key_file))

    def customer_documents(self, fields: tuple[str, ...] | None = None, conn_id: str | None = None
                           ) -> Iterator[dict]:
        """The customers collection without `_id` (or only `fields`), `extract_batch_size` per round trip."""
        projection = {"_id": False, **{name: True for name in fields or ()}}
        yield from self.collection(self.settings.mongo_collection).find(
            {}, projection=projection, batch_size=self.settings.extract_batch_size)

    def close(self) -> None:
        if self._mongo is not None:
            self._mongo.close()
            self._mongo = None

    def __enter__(self) -> EnvClients:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if TYPE_CHECKING:
    def _env_clients_are_clients(clients: EnvClients) -> Clients:  # mypy checks EnvClients against the protocol
        return clients
