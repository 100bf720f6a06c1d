"""Sealed task records: what one Airflow task hands the next through XCom, authenticated.

XCom is not evidence: any Airflow user of role User may create XCom entries through the REST API and clear
tasks, so a record a task read back from XCom (the sha256 of a snapshot, a decision to bless, an approval)
is only as trustworthy as the least trusted user. Every record a stage returns is therefore **sealed**:
an HMAC-SHA256, with a key only the workers hold (CROSS_SELL_CUSTODY_KEY_FILE), over the record, the run id
and the task that wrote it. A task opens each record it receives before it uses it (`Custody.open`): a
record written by anyone else, moved from another run, or edited in any field is refused (`CustodyError`).
The sha256 inside the record then binds the S3 object too, so someone who can write both XCom and the
bucket still cannot swap an artifact between two tasks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import NotRetryable
from ..storage.objects import CustodyError

SEAL = "_seal"
KEY_ENV = "CROSS_SELL_CUSTODY_KEY_FILE"
KEY_BYTES = 32


class CustodyKeyMissing(NotRetryable):
    """No custody key: nothing is handed on unsealed, nothing unsealed is trusted."""


def make_key(path: str | os.PathLike) -> Path:
    """A new custody key file (mode 600), for CROSS_SELL_CUSTODY_KEY_FILE."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_bytes(secrets.token_bytes(KEY_BYTES))
    return path


def keygen(directory: str | os.PathLike, signing_conn_id: str, force: bool = False) -> dict:
    """The `keygen` operation: a model-signing key pair (signing.key, signing.pub) and the workers' custody key
    (custody.key) in `directory`, and where each goes. An existing pair is replaced only with `force`."""
    from ..storage.signing import generate_key_pair

    # Any of the three: a signing.key moved into the Airflow connection leaves the other two in place.
    existing = [str(Path(directory) / name) for name in ("signing.key", "signing.pub", "custody.key")
                if (Path(directory) / name).exists()]
    if existing and not force:
        raise NotRetryable(f"{', '.join(existing)} exist(s) (--force replaces them)")
    private, public = generate_key_pair(directory)
    sealing = make_key(Path(directory) / "custody.key")
    return {"private_key": str(private), "public_key": str(public), "custody_key": str(sealing),
            "workers": f"{KEY_ENV}={sealing} (every Airflow worker; nobody else)",
            "training_side": f"Airflow connection {signing_conn_id!r}: password = the PEM text of {private.name}, "
                             "or extra {\"key_file\": \"<path>\"}",
            "readers": f"CROSS_SELL_SIGNING_PUBLIC_KEY={public}"}


def _canonical(where: tuple[str, str, str], record: Mapping[str, Any]) -> bytes:
    # XCom stores JSON: what was sealed must read back to the same bytes (tuples become lists, both "[...]").
    return json.dumps([*where, record], sort_keys=True, separators=(",", ":"), default=str).encode()


FIELDS = ("dag_id", "run_id", "task_id")


class Custody:
    """Seals and opens task records with the workers' key."""

    def __init__(self, key: bytes):
        if len(key) < 16:
            raise CustodyKeyMissing("the custody key is shorter than 16 bytes: make one with "
                                    "`python -m cross_sell keygen DIR` (custody.key)")
        self._key = key

    @classmethod
    def from_env(cls) -> "Custody":
        path = os.environ.get(KEY_ENV)
        if not path:
            raise CustodyKeyMissing(f"{KEY_ENV} is not set: tasks seal what they hand on with that key and refuse "
                                    "what is not sealed with it (`python -m cross_sell keygen DIR` makes one)")
        try:
            return cls(Path(path).read_bytes())
        except OSError as error:
            raise CustodyKeyMissing(f"{KEY_ENV}: cannot read {path}: {error.strerror}") from None

    def _mac(self, where: tuple[str, str, str], record: Mapping[str, Any]) -> str:
        return hmac.new(self._key, _canonical(where, record), hashlib.sha256).hexdigest()

    def seal(self, record: Mapping[str, Any], dag_id: str, run_id: str, task_id: str) -> dict:
        """`record` with its seal (`_seal`: the DAG, the run and the task that wrote it, and the MAC)."""
        plain = {k: v for k, v in record.items() if k != SEAL}
        where = (dag_id, run_id, task_id)
        return {**plain, SEAL: {**dict(zip(FIELDS, where, strict=True)), "mac": self._mac(where, plain)}}

    def open(self, record: Any, what: str, *, dag_id: str | None = None, run_id: str | None = None,
             task_id: str | None = None) -> dict:
        """The record without its seal, if the seal is this key's over exactly this record and names the
        `dag_id`, `run_id` and `task_id` given (None: any; e.g. an Asset event's record of another run);
        CustodyError otherwise."""
        if not isinstance(record, Mapping):
            raise CustodyError(f"{what}: expected a sealed task record, got {type(record).__name__}; refusing it")
        seal = record.get(SEAL)
        if not isinstance(seal, Mapping) or not all(isinstance(seal.get(k), str) for k in (*FIELDS, "mac")):
            raise CustodyError(f"{what}: the record carries no seal (not written by a task of this pipeline, e.g. "
                               "an XCom created through the REST API); refusing it")
        plain = {k: v for k, v in record.items() if k != SEAL}
        where = (seal["dag_id"], seal["run_id"], seal["task_id"])
        if not hmac.compare_digest(seal["mac"], self._mac(where, plain)):
            raise CustodyError(f"{what}: the record's seal does not match its content (changed after task "
                               f"{seal['task_id']!r} wrote it); refusing it")
        for field, expected in zip(FIELDS, (dag_id, run_id, task_id), strict=True):
            if expected is not None and seal[field] != expected:
                raise CustodyError(f"{what}: the record was sealed by {field.removesuffix('_id')} {seal[field]!r}, "
                                   f"not {expected!r}; refusing it")
        return plain
