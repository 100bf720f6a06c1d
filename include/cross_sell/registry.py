"""The model registry in S3: immutable signed versions, one champion pointer, an append-only audit log.

    <prefix>/models/<version>/model.onnx       what serves: ONNX, run by ONNX Runtime (never unpickled)
    <prefix>/models/<version>/model.joblib     the fitted scikit-learn estimator (for analysis, not serving)
    <prefix>/models/<version>/profile.json     reference profile of the training data (drift, skew)
    <prefix>/models/<version>/model_card.md    the human-readable model card
    <prefix>/models/<version>/manifest.json    sha256 of every file above, metrics, threshold, lineage...
    <prefix>/models/<version>/manifest.sig     the manifest's signature (see `signing`)
    <prefix>/champion.json                     the pointer: which version serves; written last
    <prefix>/shadow.json                       which version, if any, scores sampled requests in shadow
    <prefix>/audit/champion/<time>_<version>.json   one object per pointer change

Readers trust nothing they have not verified: a manifest only with a valid signature from the
training side's key, a file only when its sha256 matches the signed manifest. The pointer names a
version and nothing else is taken from it.

The pointer is only ever written with a conditional PUT (If-None-Match: * for the first champion,
If-Match: <etag read before evaluation> afterwards), so of two runs racing, exactly one wins, and a
run that crashes before the pointer write leaves the old champion serving.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import NotRetryable
from .signing import MANIFEST, SIGNATURE, ManifestSigner, ManifestVerifier, SignatureError

POINTER = "champion.json"
SHADOW = "shadow.json"
UNCHANGED = object()  # `champion(if_none_match=etag)` when the pointer still has that etag


class ChampionChanged(Exception):
    """The pointer moved since it was read: another run (or a rollback) got there first."""


class IntegrityError(NotRetryable):
    """A file does not match the sha256 its signed manifest records, or the manifest is not trusted."""


class RegistryError(NotRetryable):
    """A registry request that cannot be honoured (unknown version, ...)."""


@dataclass
class Champion:
    pointer: dict
    etag: str

    @property
    def version(self) -> str:
        return self.pointer["version"]


def sha256_bytes(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _status(error) -> tuple[str, int]:
    response = getattr(error, "response", {}) or {}
    return response.get("Error", {}).get("Code", ""), response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


class ModelRegistry:
    """`verifier` (the public key) is needed to read versions; `publish` also takes the signer."""

    ONNX = "model.onnx"
    ESTIMATOR = "model.joblib"

    def __init__(self, s3, bucket: str, prefix: str = "", verifier: ManifestVerifier | None = None):
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.verifier = verifier

    # -- keys -------------------------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def version_file_key(self, version: str, name: str) -> str:
        return self._key("models", version, name)

    def model_key(self, version: str) -> str:
        return self.version_file_key(version, self.ONNX)

    def manifest_key(self, version: str) -> str:
        return self.version_file_key(version, MANIFEST)

    @property
    def pointer_key(self) -> str:
        return self._key(POINTER)

    @property
    def shadow_key(self) -> str:
        return self._key(SHADOW)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # -- reading ----------------------------------------------------------------------------
    def champion(self, if_none_match: str | None = None, key: str | None = None):
        """The current pointer and its etag, None when there is no champion yet, or UNCHANGED when
        `if_none_match` is given and still matches (a cheap 304 for pollers). `key`: another pointer
        of the same form (`shadow_key`)."""
        from botocore.exceptions import ClientError

        condition = {"IfNoneMatch": if_none_match} if if_none_match else {}
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key or self.pointer_key, **condition)
        except ClientError as error:
            code, status = _status(error)
            if code in ("NoSuchKey", "404") or status == 404:
                return None
            if code in ("304", "NotModified") or status == 304:
                return UNCHANGED
            raise
        return Champion(json.loads(response["Body"].read()), response["ETag"])

    def _get(self, key: str, missing: str | None = None) -> bytes | None:
        """An object's bytes; None when it does not exist (or RegistryError(`missing`) when given)."""
        from botocore.exceptions import ClientError

        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as error:
            if _status(error)[1] == 404 or _status(error)[0] in ("NoSuchKey", "404"):
                if missing:
                    raise RegistryError(missing) from None
                return None
            raise

    def manifest(self, version: str) -> dict:
        """The version's manifest, only once its signature is verified with the public key."""
        body = self._get(self.manifest_key(version),
                         missing=f"no model version {version!r} in {self.uri(self._key('models'))}")
        what = f"manifest of {version} ({self.uri(self.manifest_key(version))})"
        if self.verifier is None:
            raise SignatureError(f"{what}: no public key to verify it with (set CROSS_SELL_SIGNING_PUBLIC_KEY)")
        self.verifier.verify(body, self._get(self.version_file_key(version, SIGNATURE)), what)
        manifest = json.loads(body)
        if manifest.get("version") != version:  # a validly signed manifest copied to another version's place
            raise SignatureError(f"{what} is signed for version {manifest.get('version')!r}")
        return manifest

    def artifact(self, version: str, name: str, manifest: dict | None = None) -> bytes | None:
        """A version's file, checked against the signed manifest; None when the version has no such file."""
        manifest = manifest or self.manifest(version)
        expected = manifest.get("artifacts", {}).get(name)
        if expected is None:
            return None
        body = self._get(self.version_file_key(version, name), missing=f"{version}/{name} is missing")
        actual = sha256_bytes(body)
        if actual != expected:
            raise IntegrityError(f"{version}/{name}: sha256 {actual} does not match the signed manifest's {expected}")
        return body

    def download_artifact(self, version: str, name: str, path: str | Path, manifest: dict | None = None) -> Path:
        """Like `artifact`, to a file (large files); the file is removed when it does not match."""
        manifest = manifest or self.manifest(version)
        expected = manifest.get("artifacts", {}).get(name)
        if expected is None:
            raise RegistryError(f"model {version} has no {name}")
        path = Path(path)
        self.s3.download_file(self.bucket, self.version_file_key(version, name), str(path))
        actual = sha256_file(path)
        if actual != expected:
            path.unlink(missing_ok=True)
            raise IntegrityError(f"{version}/{name}: sha256 {actual} does not match the signed manifest's {expected}")
        return path

    def version_json(self, version: str, name: str) -> dict | None:
        """A verified JSON file of a version (e.g. `profile.json`); None when that version has none."""
        body = self.artifact(version, name)
        return None if body is None else json.loads(body)

    def served_model(self, version: str, threads: int = 1):
        """(OnnxModel, manifest) of a version: verified manifest, model-input layout, verified ONNX file.

        The one way anything scores a registered model; no pickle is ever loaded from the registry."""
        from . import model_input
        from .onnx_model import OnnxModel

        manifest = self.manifest(version)
        mismatch = model_input.mismatch(version, manifest)
        if mismatch:  # it would silently mis-predict
            raise RegistryError(mismatch)
        onnx = self.artifact(version, self.ONNX, manifest)
        if onnx is None:
            raise RegistryError(f"model {version} has no {self.ONNX} (pushed by an older release?)")
        return OnnxModel(onnx, manifest["threshold"], threads=threads), manifest

    def history(self) -> list[dict]:
        paginator = self.s3.get_paginator("list_objects_v2")
        entries = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key("audit", "champion") + "/"):
            for item in page.get("Contents", []):
                entries.append(json.loads(self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()))
        return sorted(entries, key=lambda e: e["updated_at"])

    # -- writing ----------------------------------------------------------------------------
    def publish(self, manifest: dict, files: dict[str, bytes | Path], signer: ManifestSigner) -> dict:
        """Upload a version's files, then its manifest (with every file's sha256) and the manifest's
        signature, last. Versions are immutable: a retry re-uploads the same bytes."""
        if not isinstance(signer, ManifestSigner):
            raise TypeError("publishing needs the training side's ManifestSigner")
        version = manifest["version"]
        digests = {}
        for name, body in files.items():
            key = self.version_file_key(version, name)
            if isinstance(body, Path):
                self.s3.upload_file(str(body), self.bucket, key)
                digests[name] = sha256_file(body)
            else:
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
                digests[name] = sha256_bytes(body)
        manifest = {**manifest, "artifacts": digests}
        body = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
        self.s3.put_object(Bucket=self.bucket, Key=self.manifest_key(version), Body=body,
                           ContentType="application/json")
        self.s3.put_object(Bucket=self.bucket, Key=self.version_file_key(version, SIGNATURE),
                           Body=signer.sign(body), ContentType="application/json")
        return manifest

    def set_champion(self, version: str, expected_etag: str | None, action: str, run_id: str | None = None,
                     reason: str = "") -> dict:
        """Point the champion at `version` if the pointer still has `expected_etag` (None: no pointer yet).

        Raises ChampionChanged when another writer got there first. Idempotent: when the pointer
        already names `version` (a retried task whose first try did write it), nothing changes.
        """
        from botocore.exceptions import ClientError

        self.manifest(version)  # only a version whose signature verifies can become champion
        current = self.champion()
        if current is not None and current.version == version and current.pointer.get("run_id") == run_id:
            self._audit(current.pointer)  # the first try may have died between the two writes
            return current.pointer
        pointer = {
            "version": version,
            "model_key": self.model_key(version),
            "manifest_key": self.manifest_key(version),
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

    def shadow(self):
        """The shadow pointer (a challenger scored beside the champion, off the request path), or None."""
        pointer = self.champion(key=self.shadow_key)
        return pointer if pointer is not None and pointer.pointer.get("version") else None

    def set_shadow(self, version: str, reason: str, run_id: str | None = None) -> dict:
        """Name the challenger to shadow; only a version whose signature verifies. Promotion stays the
        pipeline's: the shadow never answers a request."""
        self.manifest(version)
        pointer = {"version": version, "reason": reason, "run_id": run_id, "updated_at": _now()}
        self.s3.put_object(Bucket=self.bucket, Key=self.shadow_key, ContentType="application/json",
                           Body=json.dumps(pointer, indent=2, sort_keys=True).encode())
        return pointer

    def clear_shadow(self, reason: str = "cleared") -> None:
        """No shadow any more (a pointer naming no version: the training side never deletes)."""
        self.s3.put_object(Bucket=self.bucket, Key=self.shadow_key, ContentType="application/json",
                           Body=json.dumps({"version": None, "reason": reason, "updated_at": _now()}).encode())

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
