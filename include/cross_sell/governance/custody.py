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


def _canonical(run_id: str, task_id: str, record: Mapping[str, Any]) -> bytes:
    # XCom stores JSON: what was sealed must read back to the same bytes (tuples become lists, both "[...]").
    return json.dumps([run_id, task_id, record], sort_keys=True, separators=(",", ":"), default=str).encode()


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

    def _mac(self, run_id: str, task_id: str, record: Mapping[str, Any]) -> str:
        return hmac.new(self._key, _canonical(run_id, task_id, record), hashlib.sha256).hexdigest()

    def seal(self, record: Mapping[str, Any], run_id: str, task_id: str) -> dict:
        """`record` with its seal (`_seal`: the run, the task and the MAC)."""
        plain = {k: v for k, v in record.items() if k != SEAL}
        return {**plain, SEAL: {"run_id": run_id, "task_id": task_id, "mac": self._mac(run_id, task_id, plain)}}

    def open(self, record: Any, run_id: str | None, what: str) -> dict:
        """The record without its seal, if the seal is this key's over exactly this record and (unless
        `run_id` is None: a record of another run, e.g. an Asset event's) this run; CustodyError otherwise."""
        if not isinstance(record, Mapping):
            raise CustodyError(f"{what}: expected a sealed task record, got {type(record).__name__}; refusing it")
        seal = record.get(SEAL)
        if not isinstance(seal, Mapping) or not all(isinstance(seal.get(k), str) for k in ("run_id", "task_id", "mac")):
            raise CustodyError(f"{what}: the record carries no seal (not written by a task of this pipeline, e.g. "
                               "an XCom created through the REST API); refusing it")
        plain = {k: v for k, v in record.items() if k != SEAL}
        if not hmac.compare_digest(seal["mac"], self._mac(seal["run_id"], seal["task_id"], plain)):
            raise CustodyError(f"{what}: the record's seal does not match its content (changed after task "
                               f"{seal['task_id']!r} wrote it); refusing it")
        if run_id is not None and seal["run_id"] != run_id:
            raise CustodyError(f"{what}: the record was sealed by run {seal['run_id']!r}, not this run "
                               f"{run_id!r}; refusing it")
        return plain
