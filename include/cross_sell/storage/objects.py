"""S3 objects, read and written safely. Reads are bounded by size before a byte of the body is read and,
for what one task hands to the next, checked against the sha256 and size its writer recorded. Writes are
encrypted at rest, every one: server-side encryption as CROSS_SELL_S3_SSE says (`AES256`, SSE-S3, by
default; `aws:kms` with CROSS_SELL_S3_KMS_KEY_ID for SSE-KMS).

The writer of a run's artifact returns an `Artifact` (key, sha256, bytes) that travels to the reader
through XCom, which lives in Airflow's metadata database: someone who can write the bucket cannot change
it. The reader refuses an object that is larger than recorded before downloading it, and one whose
sha256 differs after, naming the key and both hashes (`CustodyError`, which retrying cannot fix).
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path

from ..contracts import Artifact
from ..errors import NotRetryable

# Upper bounds of reads that have no recorded size (JSON records, pointers, manifests, signatures).
MAX_JSON_BYTES = 8 * 1024 * 1024
BLOCK = 1 << 20


class TooLarge(NotRetryable):
    """An object larger than anything of its kind may be: refused before its body was read."""

    def __init__(self, key: str, length: int, max_bytes: int):
        super().__init__(f"{key}: {length:,} bytes, more than the {max_bytes:,} an object of its kind may have; "
                         "not read")
        self.length = length


class CustodyError(NotRetryable):
    """A run's artifact is not the one its writer recorded: the bucket changed between two tasks."""


def join_key(*parts: str) -> str:
    """An S3 key from its parts, empty ones (an empty prefix) left out: `join_key("vi", "audit", "x.json")`."""
    return "/".join(part.strip("/") for part in parts if part and part.strip("/"))


def folder(*parts: str) -> str:
    """The key prefix of a folder (`join_key` with a trailing slash), for listing under it."""
    return join_key(*parts) + "/"


def _refuse_length(key: str, length: int | None, max_bytes: int) -> None:
    if length is not None and length > max_bytes:
        raise TooLarge(key, length, max_bytes)


def read(s3, bucket: str, key: str, max_bytes: int = MAX_JSON_BYTES, **get_args) -> tuple[bytes, dict]:
    """(body, response) of an object of at most `max_bytes`; `TooLarge` before reading otherwise."""
    response = s3.get_object(Bucket=bucket, Key=key, **get_args)
    stream = response["Body"]
    try:
        _refuse_length(key, response.get("ContentLength"), max_bytes)
        body = stream.read(max_bytes + 1)
    finally:
        stream.close()
    _refuse_length(key, len(body), max_bytes)  # a server that gave no length, or a wrong one
    return body, response


def download(s3, bucket: str, key: str, path: str | Path, max_bytes: int, **get_args) -> tuple[str, int]:
    """Stream an object of at most `max_bytes` to `path` (`get_args`: e.g. a VersionId); its (sha256, size)."""
    response = s3.get_object(Bucket=bucket, Key=key, **get_args)
    stream = response["Body"]
    digest, size = hashlib.sha256(), 0
    try:
        _refuse_length(key, response.get("ContentLength"), max_bytes)
        with open(path, "wb") as handle:
            for block in iter(lambda: stream.read(BLOCK), b""):
                size += len(block)
                _refuse_length(key, size, max_bytes)
                digest.update(block)
                handle.write(block)
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise
    finally:
        stream.close()
    return digest.hexdigest(), size


def _mismatch(artifact: Artifact, found: str) -> CustodyError:
    return CustodyError(f"{artifact['key']} is not the object its writer recorded: {found}, recorded sha256 "
                        f"{artifact['sha256']} ({artifact['bytes']:,} bytes); refusing to use it")


def check(artifact: Artifact, sha256: str, size: int) -> None:
    """Raise `CustodyError` unless (sha256, size) are what the writer recorded in `artifact`."""
    if sha256 != artifact["sha256"] or size != artifact["bytes"]:
        raise _mismatch(artifact, f"found sha256 {sha256} ({size:,} bytes)")


def read_artifact(s3, bucket: str, artifact: Artifact) -> bytes:
    """The bytes of a recorded artifact, verified; a larger object is refused before it is read."""
    try:
        body, _ = read(s3, bucket, artifact["key"], max_bytes=artifact["bytes"])
    except TooLarge as large:
        raise _mismatch(artifact, f"found {large.length:,} bytes (not read)") from None
    check(artifact, sha256_bytes(body), len(body))
    return body


def download_artifact(s3, bucket: str, artifact: Artifact, path: str | Path) -> Path:
    """A recorded artifact streamed to `path`, verified (the file is removed when it does not match)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        sha256, size = download(s3, bucket, artifact["key"], path, max_bytes=artifact["bytes"])
    except TooLarge as large:
        raise _mismatch(artifact, f"found {large.length:,} bytes (not read)") from None
    try:
        check(artifact, sha256, size)
    except CustodyError:
        path.unlink(missing_ok=True)
        raise
    return path


def artifact(key: str, body: bytes) -> Artifact:
    return Artifact(key=key, sha256=sha256_bytes(body), bytes=len(body))


def sha256_bytes(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


@cache
def encryption() -> dict:
    """The server-side-encryption arguments of every PUT (read once from the environment)."""
    mode = os.environ.get("CROSS_SELL_S3_SSE", "AES256")
    if mode == "aws:kms":
        key = os.environ.get("CROSS_SELL_S3_KMS_KEY_ID")
        return {"ServerSideEncryption": "aws:kms", **({"SSEKMSKeyId": key} if key else {})}
    if mode != "AES256":
        raise ValueError(f"CROSS_SELL_S3_SSE must be AES256 or aws:kms, not {mode!r}")
    return {"ServerSideEncryption": "AES256"}


def put(s3, bucket: str, key: str, body: bytes, content_type: str | None = None, **conditions) -> dict:
    """PUT one object, encrypted at rest; `conditions` are passed on (IfMatch, IfNoneMatch, Object Lock...)."""
    extra = {"ContentType": content_type} if content_type else {}
    return s3.put_object(Bucket=bucket, Key=key, Body=body, **extra, **encryption(), **conditions)


def upload(s3, bucket: str, key: str, path: str | Path) -> None:
    """Upload a file (multipart when large), encrypted at rest, with at most two 8 MB parts in flight:
    boto3's default of ten holds far more memory than a streaming job needs for the rest of its work."""
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_chunksize=8 * 1024 * 1024, max_concurrency=2)
    s3.upload_file(str(path), bucket, key, ExtraArgs=dict(encryption()), Config=config)
