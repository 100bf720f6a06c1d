"""The model registry in S3: immutable versions, one champion pointer, an append-only audit log.

    <prefix>/models/<version>/model.joblib     the scikit-learn estimator (joblib)
    <prefix>/models/<version>/manifest.json    sha256, metrics, threshold, data fingerprint, versions...
    <prefix>/models/<version>/profile.json     reference profile of the training data (drift, skew)
    <prefix>/models/<version>/model_card.md    the human-readable model card
    <prefix>/champion.json                     the pointer: which version serves; written last
    <prefix>/audit/champion/<time>_<version>.json   one object per pointer change

The pointer is only ever written with a conditional PUT (If-None-Match: * for the first champion,
If-Match: <etag read before evaluation> afterwards), so of two runs racing, exactly one wins, and a
run that crashes before the pointer write leaves the old champion serving.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

POINTER = "champion.json"
UNCHANGED = object()  # `champion(if_none_match=etag)` when the pointer still has that etag


class ChampionChanged(Exception):
    """The pointer moved since it was read: another run (or a rollback) got there first."""


class IntegrityError(Exception):
    """A model file does not match the sha256 recorded for it; it is never unpickled."""


class RegistryError(Exception):
    """A registry request that cannot be honoured (unknown version, ...)."""


@dataclass
class Champion:
    pointer: dict
    etag: str

    @property
    def version(self) -> str:
        return self.pointer["version"]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _status(error) -> tuple[str, int]:
    response = getattr(error, "response", {}) or {}
    return response.get("Error", {}).get("Code", ""), response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


class ModelRegistry:
    def __init__(self, s3, bucket: str, prefix: str = ""):
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    # -- keys -------------------------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def model_key(self, version: str) -> str:
        return self._key("models", version, "model.joblib")

    def manifest_key(self, version: str) -> str:
        return self._key("models", version, "manifest.json")

    def version_file_key(self, version: str, name: str) -> str:
        return self._key("models", version, name)

    @property
    def pointer_key(self) -> str:
        return self._key(POINTER)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # -- reading ----------------------------------------------------------------------------
    def champion(self, if_none_match: str | None = None):
        """The current pointer and its etag, None when there is no champion yet, or UNCHANGED when
        `if_none_match` is given and still matches (a cheap 304 for pollers)."""
        from botocore.exceptions import ClientError

        condition = {"IfNoneMatch": if_none_match} if if_none_match else {}
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=self.pointer_key, **condition)
        except ClientError as error:
            code, status = _status(error)
            if code in ("NoSuchKey", "404") or status == 404:
                return None
            if code in ("304", "NotModified") or status == 304:
                return UNCHANGED
            raise
        return Champion(json.loads(response["Body"].read()), response["ETag"])

    def manifest(self, version: str) -> dict:
        from botocore.exceptions import ClientError

        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.manifest_key(version))["Body"].read()
        except ClientError as error:
            if _status(error)[1] == 404 or _status(error)[0] == "NoSuchKey":
                raise RegistryError(f"no model version {version!r} in {self.uri(self._key('models'))}") from None
            raise
        return json.loads(body)

    def version_json(self, version: str, name: str) -> dict | None:
        """A JSON file stored with a version (e.g. `profile.json`); None when that version has none."""
        from botocore.exceptions import ClientError

        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.version_file_key(version, name))["Body"].read()
        except ClientError as error:
            if _status(error)[1] == 404 or _status(error)[0] == "NoSuchKey":
                return None
            raise
        return json.loads(body)

    def download_verified(self, version: str, path: str | Path, sha256: str | None = None) -> Path:
        """Download a version's model file and check its sha256 against the manifest before use."""
        from .training import sha256_of

        expected = sha256 or self.manifest(version)["sha256"]
        path = Path(path)
        self.s3.download_file(self.bucket, self.model_key(version), str(path))
        actual = sha256_of(str(path))
        if actual != expected:
            path.unlink(missing_ok=True)
            raise IntegrityError(f"model {version}: sha256 {actual} does not match the manifest's {expected}")
        return path

    def load(self, version: str, workdir: str | Path | None = None):
        import joblib

        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            return joblib.load(self.download_verified(version, Path(tmp) / "model.joblib"))

    def history(self) -> list[dict]:
        paginator = self.s3.get_paginator("list_objects_v2")
        entries = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key("audit", "champion") + "/"):
            for item in page.get("Contents", []):
                entries.append(json.loads(self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()))
        return sorted(entries, key=lambda e: e["updated_at"])

    # -- writing ----------------------------------------------------------------------------
    def publish(self, model_path: str | Path, manifest: dict,
                files: dict[str, tuple[bytes, str]] | None = None) -> None:
        """Upload a version's files, the manifest last. Versions are immutable: a retry re-uploads the same.

        `files` maps a file name to (bytes, content type): the profile and the model card.
        """
        version = manifest["version"]
        self.s3.upload_file(str(model_path), self.bucket, self.model_key(version))
        for name, (body, content_type) in (files or {}).items():
            self.s3.put_object(Bucket=self.bucket, Key=self.version_file_key(version, name), Body=body,
                               ContentType=content_type)
        self.s3.put_object(Bucket=self.bucket, Key=self.manifest_key(version),
                           Body=json.dumps(manifest, indent=2, sort_keys=True, default=str).encode(),
                           ContentType="application/json")

    def set_champion(self, version: str, expected_etag: str | None, action: str, run_id: str | None = None,
                     reason: str = "") -> dict:
        """Point the champion at `version` if the pointer still has `expected_etag` (None: no pointer yet).

        Raises ChampionChanged when another writer got there first. Idempotent: when the pointer
        already names `version` (a retried task whose first try did write it), nothing changes.
        """
        from botocore.exceptions import ClientError

        manifest = self.manifest(version)
        current = self.champion()
        if current is not None and current.version == version and current.pointer.get("run_id") == run_id:
            self._audit(current.pointer)  # the first try may have died between the two writes
            return current.pointer
        pointer = {
            "version": version,
            "model_key": self.model_key(version),
            "manifest_key": self.manifest_key(version),
            "sha256": manifest["sha256"],
            "action": action,
            "reason": reason,
            "run_id": run_id,
            "previous_version": current.version if current else None,
            "updated_at": _now(),
        }
        condition = {"IfNoneMatch": "*"} if expected_etag is None else {"IfMatch": expected_etag}
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self.pointer_key, ContentType="application/json",
                               Body=json.dumps(pointer, indent=2, sort_keys=True).encode(), **condition)
        except ClientError as error:
            code, status = _status(error)
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                now = self.champion()
                raise ChampionChanged(
                    f"champion pointer changed since it was read (now {now.version if now else 'absent'}); "
                    f"not promoting {version}"
                ) from None
            raise
        self._audit(pointer)
        return pointer

    def rollback(self, version: str, reason: str = "manual rollback") -> dict:
        current = self.champion()
        if current is not None and current.version == version:
            raise RegistryError(f"{version} is already the champion")
        return self.set_champion(version, current.etag if current else None, "rollback", reason=reason)

    def _audit(self, pointer: dict) -> None:
        stamp = pointer["updated_at"].replace(":", "").replace("-", "")
        key = self._key("audit", "champion", f"{stamp}_{pointer['version']}.json")
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(pointer, sort_keys=True).encode(),
                           ContentType="application/json")
