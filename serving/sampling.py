"""Sampling request rows to S3: the rows and the champion's answer, for train/serve skew, prediction
drift and, when a challenger is in shadow, the challenger's answer to the same rows.

Each worker keeps the sampled rows in memory and a daemon thread writes them as one JSON-lines object
every `flush_seconds` (or sooner when `flush_rows` are waiting), so a request never waits on S3. The
shadow model scores the rows in that same thread, just before they are written: off the request path.
A failed write is logged and its rows dropped: sampling must never hurt serving.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time

from cross_sell import clock
from cross_sell.monitoring import skew
from cross_sell.storage import objects

log = logging.getLogger(__name__)
SHADOW_PIECE = 50  # rows the shadow scores between two chances for the request threads to run


class RequestSampler:
    def __init__(self, s3, bucket: str, prefix: str, rate: float, flush_seconds: float = 60.0,
                 flush_rows: int = 1_000, seed: int | None = None, shadow=None):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"sample rate must be within [0, 1], not {rate}")
        self.s3, self.bucket, self.prefix, self.rate = s3, bucket, prefix, rate
        self.flush_seconds, self.flush_rows = flush_seconds, flush_rows
        self.shadow = shadow  # a ChampionHolder on shadow.json, or None
        self._random = random.Random(seed)
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def choose(self, count: int) -> list[int]:
        """Which of `count` rows to keep: each with probability `rate`."""
        if self.rate <= 0.0:
            return []
        with self._lock:
            return [i for i in range(count) if self._random.random() < self.rate]

    def add(self, chosen: list[dict], model_version: str) -> None:
        """Queue chosen rows (already cast by the schema) for the next write."""
        if not chosen:
            return
        now = clock.stamp("milliseconds")
        with self._lock:
            self._rows += [{**row, "model_version": model_version, "sampled_at": now} for row in chosen]
            if len(self._rows) >= self.flush_rows:
                self._wake.set()
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="request-sampler", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> str | None:
        """Write what is waiting now; returns the S3 key written, if any.

        Returns only once rows queued before the call are in S3, also when the background thread
        took them first (one write at a time), so a report run right after a flush sees them all.
        """
        with self._writing:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return None
            self._score_in_shadow(rows)
            key = skew.sample_key(self.prefix, clock.now(), skew.source_name(os.getpid()))
            body = "\n".join(json.dumps(row, default=str) for row in rows).encode()
            try:
                objects.put(self.s3, self.bucket, key, body, "application/x-ndjson")
            except Exception:  # never let sampling break serving
                log.exception("could not write %s sampled rows to s3://%s/%s", len(rows), self.bucket, key)
                return None
            return key

    def _score_in_shadow(self, rows: list[dict]) -> None:
        """The challenger's answers, a few rows at a time: this thread gives the interpreter back to the
        requests between pieces (`sleep(0)`) instead of holding it for a whole flush."""
        challenger = self.shadow.current if self.shadow is not None else None
        if challenger is None:
            return
        from cross_sell.model import model_input

        for start in range(0, len(rows), SHADOW_PIECE):
            piece = rows[start:start + SHADOW_PIECE]
            try:
                probabilities, _ = challenger.predict(model_input.from_rows(piece))
            except Exception:  # the challenger must never cost the samples
                log.exception("shadow %s could not score %s sampled rows", challenger.version, len(piece))
                return
            for row, probability in zip(piece, probabilities, strict=True):
                row["shadow_version"], row["shadow_probability"] = challenger.version, probability
            time.sleep(0)
