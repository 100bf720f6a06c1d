"""Run-scoped artifacts in S3: everything one DAG run produces lives under `<prefix>/<area>/<run id>/`:
`runs/` for training runs, `scores/` for scoring runs."""

from __future__ import annotations

import json
import re
from pathlib import Path


def safe_run_id(run_id: str) -> str:
    """Run ids hold ':' and '+' (timestamps); keep keys readable and URL-safe."""
    return re.sub(r"[^A-Za-z0-9._=-]", "_", run_id)


class RunArtifacts:
    def __init__(self, s3, bucket: str, prefix: str, run_id: str, area: str = "runs"):
        self.s3 = s3
        self.bucket = bucket
        self.run_id = run_id
        self.root = "/".join(p for p in (prefix, area, safe_run_id(run_id)) if p)

    def key(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def upload_file(self, path: str | Path, *parts: str) -> str:
        from boto3.s3.transfer import TransferConfig

        key = self.key(*parts)
        # Two 8 MB parts in flight at most: boto3's default (ten) held ~30 MB more while a 3.8M-row
        # scores file went up than the whole scoring of it needed (benchmarks/bench_scoring.py).
        self.s3.upload_file(str(path), self.bucket, key,
                            Config=TransferConfig(multipart_chunksize=8 * 1024 * 1024, max_concurrency=2))
        return key

    def upload_dir(self, directory: str | Path, *parts: str) -> str:
        directory = Path(directory)
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            self.upload_file(path, *parts, *path.relative_to(directory).parts)
        return self.key(*parts)

    def download(self, key: str, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.s3.download_file(self.bucket, key, str(path))
        return path

    def put_json(self, payload: dict, *parts: str) -> str:
        key = self.key(*parts)
        body = json.dumps(payload, indent=2, sort_keys=True, default=str).encode()
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        return key

    def put_bytes(self, body: bytes, content_type: str, *parts: str) -> str:
        key = self.key(*parts)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        return key

    def get_json(self, key: str) -> dict:
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

