"""Run-scoped artifacts in S3: everything one DAG run produces lives under `<prefix>/<area>/<run id>/`:
`runs/` for training runs, `scores/` for scoring runs.

Every write returns the object as an `Artifact` (key, sha256, size); every read of another task's object
takes that record and verifies the object against it (`objects`), so a file changed in the bucket between
two tasks is refused, never used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..contracts import Artifact
from . import objects


def safe_run_id(run_id: str) -> str:
    """Run ids hold ':' and '+' (timestamps); keep keys readable and URL-safe."""
    return re.sub(r"[^A-Za-z0-9._=-]", "_", run_id)


def json_bytes(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, indent=2, sort_keys=True, default=str).encode()


class RunArtifacts:
    def __init__(self, s3, bucket: str, prefix: str, run_id: str, area: str = "runs"):
        self.s3 = s3
        self.bucket = bucket
        self.run_id = run_id
        self.root = objects.join_key(prefix, area, safe_run_id(run_id))
        # What this task read and wrote, as recorded (OpenLineage reports the data among them).
        self.read_log: list[Artifact] = []
        self.write_log: list[Artifact] = []

    def key(self, *parts: str) -> str:
        return objects.join_key(self.root, *parts)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # -- writing: each returns what the reader will check ---------------------------------------
    def upload_file(self, path: str | Path, *parts: str) -> Artifact:
        key = self.key(*parts)
        recorded = Artifact(key=key, sha256=objects.sha256_file(path), bytes=Path(path).stat().st_size)
        objects.upload(self.s3, self.bucket, key, path)
        self.write_log.append(recorded)
        return recorded

    def upload_dir(self, directory: str | Path, *parts: str) -> str:
        """A folder of files for people (GX's Data Docs), not read by a later task; its key prefix."""
        directory = Path(directory)
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            self.upload_file(path, *parts, *path.relative_to(directory).parts)
        return self.key(*parts)

    def put_bytes(self, body: bytes, content_type: str, *parts: str) -> Artifact:
        key = self.key(*parts)
        objects.put(self.s3, self.bucket, key, body, content_type)
        recorded = objects.artifact(key, body)
        self.write_log.append(recorded)
        return recorded

    def put_json(self, payload: Mapping[str, Any], *parts: str) -> Artifact:
        return self.put_bytes(json_bytes(payload), "application/json", *parts)

    # -- reading another task's objects: verified against its record ----------------------------
    def download(self, artifact: Artifact, path: str | Path) -> Path:
        downloaded = objects.download_artifact(self.s3, self.bucket, artifact, path)
        self.read_log.append(artifact)
        return downloaded

    def read(self, artifact: Artifact) -> bytes:
        body = objects.read_artifact(self.s3, self.bucket, artifact)
        self.read_log.append(artifact)
        return body

    def read_json(self, artifact: Artifact) -> dict:
        return json.loads(self.read(artifact))

    def get_json(self, key: str) -> dict:
        """A JSON object with no record to check it against (for people and tests), bounded in size."""
        return json.loads(objects.read(self.s3, self.bucket, key)[0])
