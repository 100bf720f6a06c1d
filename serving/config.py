"""Service settings, from the environment (the same CROSS_SELL_* names the pipeline uses for S3)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cross_sell.settings import Settings
from cross_sell.storage.signing import PUBLIC_KEY_ENV


@dataclass(frozen=True)
class ServingConfig:
    s3_bucket: str
    s3_prefix: str
    public_key_path: str | None = None  # verifies every manifest; without it no model is trusted
    poll_seconds: float = 15.0  # how often each worker asks S3 whether the champion changed
    # A version that failed to load is retried after this pause, doubling per failure (at most an
    # hour), until the pointer changes: a bad push costs one failed load, not one per poll.
    retry_backoff_seconds: float = 60.0
    max_rows: int = 10_000  # rows per /predict request
    max_body_bytes: int = 16 * 1024 * 1024
    api_key: str | None = None  # when set, /predict and the form require it
    sample_rate: float = 0.01  # share of request rows written to S3 for the skew report (0 turns it off)
    sample_flush_seconds: float = 60.0
    onnx_threads: int = 2  # ONNX Runtime threads per worker: 2 halve a 10,000-row prediction
    # A request may carry this identifier column (a CRM's key): never fed to the model, echoed back with each
    # prediction on every protocol. Empty: none.
    id_column: str | None = "id"
    model_name: str = "cross-sell"  # the model's name in the Open Inference Protocol's paths (/v2/models/<name>)

    @classmethod
    def from_env(cls) -> "ServingConfig":
        settings = Settings.from_env()
        env = os.environ.get
        return cls(
            s3_bucket=settings.s3_bucket,
            s3_prefix=settings.s3_prefix,
            public_key_path=env(PUBLIC_KEY_ENV) or None,
            poll_seconds=float(env("SERVING_POLL_SECONDS", cls.poll_seconds)),
            retry_backoff_seconds=float(env("SERVING_RETRY_BACKOFF_SECONDS", cls.retry_backoff_seconds)),
            max_rows=int(env("SERVING_MAX_ROWS", cls.max_rows)),
            max_body_bytes=int(env("SERVING_MAX_BODY_BYTES", cls.max_body_bytes)),
            api_key=env("SERVING_API_KEY") or None,
            sample_rate=float(env("SERVING_SAMPLE_RATE", cls.sample_rate)),
            sample_flush_seconds=float(env("SERVING_SAMPLE_FLUSH_SECONDS", cls.sample_flush_seconds)),
            onnx_threads=int(env("SERVING_ONNX_THREADS", cls.onnx_threads)),
            id_column=env("SERVING_ID_COLUMN", cls.id_column or "") or None,
            model_name=env("SERVING_MODEL_NAME", cls.model_name),
        )
