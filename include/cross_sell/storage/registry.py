"""The model registry in S3: immutable signed versions, signed pointers, a write-once audit log.

    <prefix>/models/<version>/model.onnx       what serves: ONNX, run by ONNX Runtime (never unpickled)
    <prefix>/models/<version>/model.joblib     the fitted scikit-learn estimator (for analysis, not serving)
    <prefix>/models/<version>/profile.json     reference profile of the training data (drift, skew)
    <prefix>/models/<version>/model_card.md    the human-readable model card
    <prefix>/models/<version>/manifest.json    sha256 and size of every file above, metrics, lineage...
    <prefix>/models/<version>/manifest.sig     the manifest's signature (see `signing`)
    <prefix>/champion.json                     the pointer: which version serves; written last
    <prefix>/shadow.json                       which version, if any, scores sampled requests in shadow
    <prefix>/audit/champion/<sequence>.json     the signed record of each champion change, write-once

Readers trust nothing they have not verified: a manifest only with a valid signature from the
training side's key, a file only when its sha256 matches the signed manifest. A pointer is a signed
record too (`{"record": {...}, "signature": ...}`): its shape is checked first (an object of bounded
size naming a version of the registry's form), then its signature, so a pointer written by anyone
without the key is refused, whatever it holds. Each champion record carries a sequence number one
above the record it replaced, and the same record is kept, write-once, in the audit log: a pointer
that an older record was copied back into (a downgrade by someone who can only write the bucket) is
told apart from the newest change (`audit_problems`).

The pointer is only ever written with a conditional PUT (If-None-Match: * for the first champion,
If-Match: <etag of the pointer whose champion was scored> afterwards), so of two runs racing, exactly
one wins, and a run that crashes before the pointer write leaves the old champion serving.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import overload

from .. import clock
from ..errors import NothingToDo, NotRetryable
from . import objects
from .objects import sha256_bytes, sha256_file  # noqa: F401  (the registry's readers import them from here)
from .signing import MANIFEST, SIGNATURE, ManifestSigner, ManifestVerifier, SignatureError

POINTER = "champion.json"
SHADOW = "shadow.json"
UNCHANGED = object()  # `champion(if_none_match=etag)` when the pointer still has that etag
# A version name is one safe path component (`training.version_for` makes `<UTC time>-<sha256[:10]>`).
VERSION_FORM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_POINTER_BYTES = 64 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_SIGNATURE_BYTES = 64 * 1024
MAX_MODEL_BYTES = 512 * 1024 * 1024  # a version's file whose size its manifest does not record (older releases)


class ChampionChanged(Exception):
    """The pointer moved since it was read: another run (or a rollback) got there first."""


class IntegrityError(NotRetryable):
    """A file does not match the sha256 its signed manifest records, or the manifest is not trusted."""


class RegistryError(NotRetryable):
    """A registry request that cannot be honoured (unknown version, ...)."""


class NoChampionYet(NothingToDo):
    """No champion has been pushed yet."""


class PointerError(IntegrityError):
    """A pointer that is malformed, unsigned, or signed for something else: not the project's writing.
    `etag` is the pointer state it was read in (a poller backs off on that state)."""

    def __init__(self, message: str, etag: str | None = None):
        super().__init__(message)
        self.etag = etag


@dataclass(frozen=True)
class AuditProblem:
    """Something wrong with the audit trail of the current pointer (`ModelRegistry.audit_problems`)."""

    kind: str  # "downgrade" | "unrecorded" | "unsigned_record"
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class Champion:
    """A verified pointer: its signed record and the etag it was read with."""

    pointer: dict
    etag: str
    signed: bytes = b""  # the pointer object as read: the record with its signature

    @property
    def version(self) -> str | None:
        return self.pointer.get("version")


def _pointer_time() -> str:
    """A pointer's `updated_at`: microseconds and a Z, the format every written pointer has (readers compare
    them as text)."""
    return clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _status(error) -> tuple[str, int]:
    response = getattr(error, "response", {}) or {}
    return response.get("Error", {}).get("Code", ""), response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


def _missing(error) -> bool:
    code, status = _status(error)
    return code in ("NoSuchKey", "404") or status == 404


def _precondition_failed(error) -> bool:
    code, status = _status(error)
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412)


def record_bytes(record: dict) -> bytes:
    """The exact bytes a pointer or audit record is signed over."""
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def check_version_name(version, what: str) -> str:
    if not isinstance(version, str) or not VERSION_FORM.fullmatch(version):
        raise RegistryError(f"{what}: {version!r} is not a version name of the registry's form "
                            f"({VERSION_FORM.pattern})")
    return version


class ModelRegistry:
    """`verifier` (the public key) is needed to read versions and pointers; writes also take the signer.
    `audit_lock_days` > 0: each audit record is put under S3 Object Lock (COMPLIANCE) for that long (the
    bucket must have Object Lock enabled)."""

    ONNX = "model.onnx"
    ESTIMATOR = "model.joblib"

    def __init__(self, s3, bucket: str, prefix: str = "", verifier: ManifestVerifier | None = None,
                 audit_lock_days: int = 0, retention_policy=None):
        self.s3 = s3
        self.retention_policy = retention_policy  # `retention.Policy` of the restorable rule (None: the settings')
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.verifier = verifier
        self.audit_lock_days = audit_lock_days
        # Versions whose model this client loaded or published (what a task reports to OpenLineage).
        self.loaded_versions: list[str] = []
        self.published_versions: list[str] = []

    # -- keys -------------------------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return objects.join_key(self.prefix, *parts)

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

    @property
    def audit_prefix(self) -> str:
        return self._key("audit", "champion") + "/"

    def audit_key(self, sequence: int) -> str:
        return f"{self.audit_prefix}{sequence:012d}.json"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # -- reading ----------------------------------------------------------------------------
    def _verify(self, body: bytes, signature: bytes | None, what: str) -> None:
        if self.verifier is None:
            raise SignatureError(f"{what}: no public key to verify it with (set CROSS_SELL_SIGNING_PUBLIC_KEY)")
        self.verifier.verify(body, signature, what)

    def champion(self, if_none_match: str | None = None, key: str | None = None):
        """The current pointer, verified, and its etag; None when there is no champion yet, or UNCHANGED
        when `if_none_match` is given and still matches (a cheap 304 for pollers). `key`: the shadow
        pointer (`shadow_key`). A pointer that is not the project's signed writing raises PointerError."""
        from botocore.exceptions import ClientError

        key = key or self.pointer_key
        condition = {"IfNoneMatch": if_none_match} if if_none_match else {}
        try:
            body, response = objects.read(self.s3, self.bucket, key, MAX_POINTER_BYTES, **condition)
        except ClientError as error:
            code, status = _status(error)
            if _missing(error):
                return None
            if code in ("304", "NotModified") or status == 304:
                return UNCHANGED
            raise
        except objects.TooLarge as large:
            raise PointerError(f"{self.uri(key)}: {large}") from None
        return Champion(self._pointer_record(body, key, response["ETag"]), response["ETag"], body)

    def _pointer_record(self, body: bytes, key: str, etag: str) -> dict:
        """The signed record of a pointer, or PointerError: shape first, then the signature."""
        what = f"pointer {self.uri(key)}"
        kind = "shadow" if key == self.shadow_key else "champion"
        try:
            document = json.loads(body)
        except ValueError:
            raise PointerError(f"{what} is not JSON", etag) from None
        if not isinstance(document, dict) or not isinstance(document.get("record"), dict) \
                or not isinstance(document.get("signature"), str):
            raise PointerError(f"{what} is not a signed pointer (an object with a record and its signature): "
                               f"changed outside the project", etag)
        record = document["record"]
        if record.get("kind") != kind:
            raise PointerError(f"{what} holds a record of kind {record.get('kind')!r}, not {kind!r}", etag)
        if record.get("version") is not None or kind == "champion":
            try:
                check_version_name(record.get("version"), what)
            except RegistryError as error:
                raise PointerError(str(error), etag) from None
        if kind == "champion" and not isinstance(record.get("sequence"), int):
            raise PointerError(f"{what} has no sequence number", etag)
        import base64

        try:
            signature = base64.b64decode(document["signature"], validate=True)
            self._verify(record_bytes(record), signature, what)
        except SignatureError as error:
            raise PointerError(f"{error} (changed outside the project?)", etag) from None
        except ValueError:
            raise PointerError(f"{what}: its signature is not base64", etag) from None
        return record

    @overload
    def _get(self, key: str, max_bytes: int, missing: str) -> bytes: ...
    @overload
    def _get(self, key: str, max_bytes: int, missing: None = None) -> bytes | None: ...
    def _get(self, key: str, max_bytes: int, missing: str | None = None) -> bytes | None:
        """An object's bytes (at most `max_bytes`); None when it does not exist (or RegistryError(`missing`))."""
        from botocore.exceptions import ClientError

        try:
            return objects.read(self.s3, self.bucket, key, max_bytes)[0]
        except ClientError as error:
            if _missing(error):
                if missing:
                    raise RegistryError(missing) from None
                return None
            raise

    def manifest(self, version: str) -> dict:
        """The version's manifest, only once its signature is verified with the public key."""
        check_version_name(version, "model version")
        what = f"manifest of {version} ({self.uri(self.manifest_key(version))})"
        try:
            body = self._get(self.manifest_key(version), MAX_MANIFEST_BYTES,
                             missing=f"no model version {version!r} in {self.uri(self._key('models'))}")
            signature = self._get(self.version_file_key(version, SIGNATURE), MAX_SIGNATURE_BYTES)
        except objects.TooLarge as large:
            raise IntegrityError(f"{what}: {large}") from None
        self._verify(body, signature, what)
        manifest = json.loads(body)
        if manifest.get("version") != version:  # a validly signed manifest copied to another version's place
            raise SignatureError(f"{what} is signed for version {manifest.get('version')!r}")
        return manifest

    def _expected(self, version: str, name: str, manifest: dict) -> tuple[str | None, int]:
        """A file's signed sha256 (None: the version has no such file) and the most bytes it may have."""
        return (manifest.get("artifacts", {}).get(name),
                int(manifest.get("artifact_bytes", {}).get(name, MAX_MODEL_BYTES)))

    @staticmethod
    def _too_large(version: str, name: str, large: objects.TooLarge, max_bytes: int) -> IntegrityError:
        return IntegrityError(f"{version}/{name}: {large.length:,} bytes does not match the signed manifest "
                              f"(at most {max_bytes:,}); not read")

    def artifact(self, version: str, name: str, manifest: dict | None = None) -> bytes | None:
        """A version's file, checked against the signed manifest; None when the version has no such file."""
        manifest = manifest or self.manifest(version)
        expected, max_bytes = self._expected(version, name, manifest)
        if expected is None:
            return None
        try:
            body = self._get(self.version_file_key(version, name), max_bytes, missing=f"{version}/{name} is missing")
        except objects.TooLarge as large:
            raise self._too_large(version, name, large, max_bytes) from None
        actual = sha256_bytes(body)
        if actual != expected:
            raise IntegrityError(f"{version}/{name}: sha256 {actual} does not match the signed manifest's {expected}")
        return body

    def download_artifact(self, version: str, name: str, path: str | Path, manifest: dict | None = None) -> Path:
        """Like `artifact`, to a file (large files); the file is removed when it does not match."""
        manifest = manifest or self.manifest(version)
        expected, max_bytes = self._expected(version, name, manifest)
        if expected is None:
            raise RegistryError(f"model {version} has no {name}")
        path = Path(path)
        try:
            actual, _ = objects.download(self.s3, self.bucket, self.version_file_key(version, name), path, max_bytes)
        except objects.TooLarge as large:
            raise self._too_large(version, name, large, max_bytes) from None
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
        from ..model import model_input
        from ..model.onnx_model import OnnxModel

        manifest = self.manifest(version)
        mismatch = model_input.mismatch(version, manifest)
        if mismatch:  # it would silently mis-predict
            raise RegistryError(mismatch)
        onnx = self.artifact(version, self.ONNX, manifest)
        if onnx is None:
            raise RegistryError(f"model {version} has no {self.ONNX} (pushed by an older release?)")
        self.loaded_versions.append(version)
        return OnnxModel(onnx, manifest["threshold"], threads=threads), manifest

    def versions(self) -> list[str]:
        """Every version under models/ (by name: `training.version_for` names sort by training time)."""
        root = self._key("models") + "/"
        paginator = self.s3.get_paginator("list_objects_v2")
        return sorted(common["Prefix"][len(root):].rstrip("/")
                      for page in paginator.paginate(Bucket=self.bucket, Prefix=root, Delimiter="/")
                      for common in page.get("CommonPrefixes", []))

    def champion_version(self) -> str:
        """The version the verified champion pointer names; RegistryError when there is none yet."""
        champion = self.champion()
        if champion is None:
            raise NoChampionYet(f"no champion yet in {self.uri(self.pointer_key)}: run cross_sell_training first")
        return champion.version

    def resolve(self, which: str) -> str:
        """"champion" -> the champion's version; anything else must be a version name."""
        return self.champion_version() if which == "champion" else check_version_name(which, "model version")

    # -- the audit log ----------------------------------------------------------------------
    def _audit_record(self, key: str) -> tuple[bool, dict | None]:
        """(whether the object exists, its record when it is the project's signed writing for that key)."""
        import base64

        from botocore.exceptions import ClientError

        try:
            body = self._get(key, MAX_POINTER_BYTES)
        except objects.TooLarge:
            return True, None
        except ClientError as error:
            if _status(error)[0] != "AccessDenied":
                raise
            # S3 answers 403, not 404, for a missing key to a reader without ListBucket (the service);
            # a record that exists is readable with GetObject alone, so this is an absent one.
            body = None
        if body is None:
            return False, None
        try:
            document = json.loads(body)
            record = document["record"]
            self._verify(record_bytes(record), base64.b64decode(document["signature"]), key)
        except (ValueError, TypeError, KeyError, SignatureError):
            return True, None
        if not isinstance(record.get("sequence"), int) or key != self.audit_key(record["sequence"]):
            return True, None  # a genuine record copied to another key
        return True, record

    def _audit_keys(self) -> list[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        return [item["Key"] for page in paginator.paginate(Bucket=self.bucket, Prefix=self.audit_prefix)
                for item in page.get("Contents", [])]

    def history(self) -> list[dict]:
        """Every verified champion change, oldest first (objects under audit/ that are not records signed
        by the training side are left out: `audit_problems` reports the ones that matter)."""
        records = (self._audit_record(key)[1] for key in self._audit_keys())
        return sorted((r for r in records if r is not None), key=lambda r: r["sequence"])

    def audit_problems(self, champion: Champion) -> list[AuditProblem]:
        """What is wrong with the audit trail of the current (verified) pointer: the next change is on
        record (the pointer was set back: a downgrade), a record there not signed by the training side, or
        no record of this change. Empty when the pointer is the newest recorded change. Two reads, no
        listing: the service, which may not list the bucket, checks this on every pointer change."""
        record = champion.pointer
        sequence = record["sequence"]
        problems = []
        exists, own = self._audit_record(self.audit_key(sequence))
        if not exists:
            problems.append(AuditProblem("unrecorded", f"no audit record of this change "
                                         f"({self.uri(self.audit_key(sequence))}): its writer died before "
                                         "recording it, or the record was removed"))
        elif own != record:
            problems.append(AuditProblem("unsigned_record", f"{self.uri(self.audit_key(sequence))} is not the "
                                         "training side's signed record of this change"))
        exists, newer = self._audit_record(self.audit_key(sequence + 1))
        if newer is not None:
            problems.append(AuditProblem("downgrade", (
                f"the pointer names {record['version']} (change {sequence}), but change {newer['sequence']} to "
                f"{newer['version']} at {newer['updated_at']} is on record: an older pointer was put back "
                "outside the project (a downgrade)")))
        elif exists:
            problems.append(AuditProblem("unsigned_record", f"{self.uri(self.audit_key(sequence + 1))} is not an "
                                         "audit record signed by the training side"))
        return problems

    def hidden_audit_records(self) -> list[str]:
        """Audit records hidden or rewritten in a versioned bucket: a delete marker over a record (Object
        Lock keeps the record's version but cannot stop a delete marker, and a hidden newest record would
        let a replayed pointer pass `audit_problems`), or a record with more than one version. Needs
        ListBucketVersions (the training side's policy; the service has no list rights)."""
        paginator = self.s3.get_paginator("list_object_versions")
        versions: dict[str, int] = {}
        hidden = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.audit_prefix):
            for marker in page.get("DeleteMarkers", []):
                hidden.append(f"{self.uri(marker['Key'])} is hidden by a delete marker "
                              f"(version {marker.get('VersionId')}, {marker.get('LastModified')})")
            for version in page.get("Versions", []):
                versions[version["Key"]] = versions.get(version["Key"], 0) + 1
        hidden += [f"{self.uri(key)} was written {count} times (audit records are written once)"
                   for key, count in versions.items() if count > 1]
        return hidden

    def _next_sequence(self, current: Champion | None) -> int:
        if current is not None:
            return int(current.pointer["sequence"]) + 1
        recorded = [r["sequence"] for r in self.history()]
        return max(recorded, default=0) + 1

    # -- writing ----------------------------------------------------------------------------
    def publish(self, manifest: dict, files: Mapping[str, bytes | Path], signer: ManifestSigner) -> dict:
        """Upload a version's files, then its manifest (with every file's sha256 and size) and the manifest's
        signature, last. Versions are immutable: a retry re-uploads the same bytes."""
        if not isinstance(signer, ManifestSigner):
            raise TypeError("publishing needs the training side's ManifestSigner")
        version = check_version_name(manifest["version"], "model version")
        digests, sizes = {}, {}
        for name, body in files.items():
            key = self.version_file_key(version, name)
            if isinstance(body, Path):
                objects.upload(self.s3, self.bucket, key, body)
                digests[name], sizes[name] = sha256_file(body), body.stat().st_size
            else:
                objects.put(self.s3, self.bucket, key, body)
                digests[name], sizes[name] = sha256_bytes(body), len(body)
        manifest = {**manifest, "artifacts": digests, "artifact_bytes": sizes}
        body = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
        objects.put(self.s3, self.bucket, self.manifest_key(version), body, "application/json")
        objects.put(self.s3, self.bucket, self.version_file_key(version, SIGNATURE), signer.sign(body),
                    "application/json")
        self.published_versions.append(version)
        return manifest

    @staticmethod
    def _signed(record: dict, signer: ManifestSigner) -> bytes:
        import base64

        if not isinstance(signer, ManifestSigner):
            raise TypeError("moving a pointer needs the training side's ManifestSigner")
        signature = base64.b64encode(signer.sign(record_bytes(record))).decode()
        return json.dumps({"record": record, "signature": signature}, indent=2, sort_keys=True).encode()

    def set_champion(self, version: str, expected_etag: str | None, action: str, signer: ManifestSigner,
                     run_id: str | None = None, reason: str = "", by: str | None = None,
                     note: dict | None = None) -> dict:
        """Point the champion at `version` if the pointer still has `expected_etag` (None: no pointer yet).

        Raises ChampionChanged when another writer got there first. Idempotent: when the pointer
        already names `version` for this run (a retried task whose first try did write it), nothing
        changes but the audit record that try may not have written. `by` names the person or run that
        decided; `note` is recorded as it is (e.g. an unreadable champion that was replaced)."""
        from botocore.exceptions import ClientError

        self.manifest(version)  # only a version whose signature verifies can become champion
        try:
            current = self.champion()
        except PointerError:
            current = None  # an unreadable pointer: only `expected_etag` (its etag) lets it be replaced
        if current is not None and current.version == version and run_id and current.pointer.get("run_id") == run_id:
            self._put_audit(self.audit_key(current.pointer["sequence"]), current.signed)  # the first try may have died
            # between its two writes
            return current.pointer
        record = {
            "kind": "champion",
            "version": version,
            "sequence": self._next_sequence(current),
            "model_key": self.model_key(version),
            "manifest_key": self.manifest_key(version),
            "action": action,
            "reason": reason,
            "run_id": run_id,
            "by": by,
            "previous_version": current.version if current else None,
            "updated_at": _pointer_time(),
            **({"note": note} if note else {}),
        }
        condition = {"IfNoneMatch": "*"} if expected_etag is None else {"IfMatch": expected_etag}
        try:
            objects.put(self.s3, self.bucket, self.pointer_key, self._signed(record, signer), "application/json",
                        **condition)
        except ClientError as error:
            if _precondition_failed(error):
                try:
                    now = self.champion()
                    named = now.version if now else "absent"
                except PointerError:
                    named = "unreadable"
                raise ChampionChanged(
                    f"champion pointer changed since it was read (now {named}); not promoting {version}"
                ) from None
            raise
        self._audit_signed(record, signer)
        return record

    def _audit_signed(self, record: dict, signer: ManifestSigner) -> None:
        self._put_audit(self.audit_key(record["sequence"]), self._signed(record, signer))

    def _put_audit(self, key: str, body: bytes) -> None:
        """Write-once: a conditional PUT (never over an existing record), under Object Lock when configured."""
        from botocore.exceptions import ClientError

        lock = {}
        if self.audit_lock_days > 0:
            lock = {"ObjectLockMode": "COMPLIANCE",
                    "ObjectLockRetainUntilDate": datetime.now(timezone.utc) + timedelta(days=self.audit_lock_days)}
        try:
            objects.put(self.s3, self.bucket, key, body, "application/json", IfNoneMatch="*", **lock)
        except ClientError as error:
            if not _precondition_failed(error):
                raise  # already recorded: a retry of the same change

    def shadow(self):
        """The shadow pointer (a challenger scored beside the champion, off the request path), or None."""
        pointer = self.champion(key=self.shadow_key)
        return pointer if pointer is not None and pointer.version else None

    def set_shadow(self, version: str, signer: ManifestSigner, reason: str, run_id: str | None = None) -> dict:
        """Name the challenger to shadow; only a version whose signature verifies. Promotion stays the
        pipeline's: the shadow never answers a request."""
        self.manifest(version)
        record = {"kind": "shadow", "version": version, "reason": reason, "run_id": run_id,
                  "updated_at": _pointer_time()}
        objects.put(self.s3, self.bucket, self.shadow_key, self._signed(record, signer), "application/json")
        return record

    def clear_shadow(self, signer: ManifestSigner, reason: str = "cleared") -> None:
        """No shadow any more (a pointer naming no version: the training side never deletes)."""
        record = {"kind": "shadow", "version": None, "reason": reason, "run_id": None, "updated_at": _pointer_time()}
        objects.put(self.s3, self.bucket, self.shadow_key, self._signed(record, signer), "application/json")

    def status(self) -> dict:
        """The champion's pointer, its signed manifest and what the audit trail says against it (`champion
        show`); no champion yet: where its pointer will be."""
        champion = self.champion()
        if champion is None:
            return {"champion": None, "pointer": self.uri(self.pointer_key)}
        return {"pointer": champion.pointer, "manifest": self.manifest(champion.version),
                "audit_problems": [p.message for p in self.audit_problems(champion)] + self.hidden_audit_records()}

    def served_versions(self) -> set[str]:
        """Every version the audit trail records as champion at some time (a rollback's candidates)."""
        return {record["version"] for record in self.history() if record.get("version")}

    def rollback(self, version: str, signer: ManifestSigner, reason: str = "manual rollback",
                 by: str | None = None, run_id: str | None = None, force: bool = False,
                 note: dict | None = None) -> dict:
        """Point the champion back at `version`: one the restorable rule keeps (`retention.restorable`: it
        served before, is not the current shadow, its training run is still kept, it was not trained on
        customers erased since), unless `force` says a person decided otherwise (recorded, with `note`). The
        retention policy is `self.retention_policy`, else the settings'."""
        current = self.champion()
        if current is not None and current.version == version:
            if run_id and current.pointer.get("run_id") == run_id:  # a retried task whose first try wrote it
                return self.set_champion(version, current.etag, "rollback", signer, run_id=run_id, reason=reason,
                                         by=by)
            raise RegistryError(f"{version} is already the champion")
        self.manifest(version)  # an unknown or unsigned version is refused before anything else
        if not force:
            from ..privacy.retention import Policy, restorable
            from ..settings import Settings

            rule = restorable(self, self.retention_policy or Policy.from_settings(Settings.from_env()))
            if version not in rule.versions:
                named = ", ".join(sorted(rule.versions)) or "none"
                why = rule.refused.get(version) or "never served as champion"
                raise RegistryError(f"{version} {why}, so it is not restorable (restorable: {named}); force it if a "
                                    "person decided so")
        note = {**(note or {}), **({"forced": True} if force else {})} or None
        return self.set_champion(version, current.etag if current else None, "rollback", signer, run_id=run_id,
                                 reason=reason, by=by, note=note)
