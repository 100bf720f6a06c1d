"""Loading the champion from the registry and swapping in a new one without dropping a request.

Each worker process holds one `ChampionHolder`. A request reads `holder.current` once and uses that
object to the end, so a swap (a single reference assignment) never changes a model under a request.
A new champion is downloaded, checked against its manifest's sha256 before unpickling, and warmed
with a prediction before it is swapped in; if any step fails the old model keeps serving.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import joblib
import numpy as np

from cross_sell import features, schema
from cross_sell.registry import UNCHANGED, ModelRegistry

from . import onnx_engine
from .onnx_engine import OnnxEngine

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class LoadedModel:
    version: str
    model: object
    threshold: float
    manifest: dict
    loaded_at: str
    load_seconds: float
    onnx: OnnxEngine | None = None  # the same model run by ONNX Runtime, when it converts faithfully
    onnx_note: str | None = None  # why it is served by scikit-learn instead

    @property
    def engine(self) -> str:
        return "onnxruntime" if self.onnx is not None else "scikit-learn"

    def predict(self, matrix: np.ndarray) -> tuple[list[float], list[int]]:
        """Probabilities and labels for rows of `features.model_input` / `features.model_input_rows`."""
        if self.onnx is not None:
            probability = self.onnx.positive_probability(matrix)
        else:
            probability = self.model.predict_proba(matrix)[:, 1]
        return probability.tolist(), (probability >= self.threshold).astype(int).tolist()


@dataclass
class ReloadStatus:
    last_check_at: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    reloads: dict = field(default_factory=lambda: {"success": 0, "failure": 0})


class ChampionHolder:
    def __init__(self, registry: ModelRegistry, poll_seconds: float, on_reload=None, onnx_threads: int | None = 2):
        self.registry = registry
        self.poll_seconds = poll_seconds
        self.onnx_threads = onnx_threads  # None: always serve with scikit-learn
        self.status = ReloadStatus()
        self._current: LoadedModel | None = None
        self._etag: str | None = None
        self._refreshing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_reload = on_reload or (lambda result, model: None)

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def refresh(self) -> bool:
        """Ask S3 whether the pointer changed (If-None-Match); load and swap if so. True when swapped."""
        with self._refreshing:
            self.status.last_check_at = _now()
            try:
                champion = self.registry.champion(if_none_match=self._etag)
                if champion is UNCHANGED or champion is None:
                    return False
                if self._current is not None and champion.version == self._current.version:
                    self._etag = champion.etag  # pointer rewritten (e.g. audit retry), same model
                    return False
                loaded = self._load(champion.version)
            except Exception as error:  # keep serving the old model whatever went wrong
                self.status.last_error = f"{type(error).__name__}: {error}"
                self.status.last_error_at = _now()
                self.status.reloads["failure"] += 1
                self._on_reload("failure", self._current)
                log.error("champion reload failed; still serving %s", self._version(),
                          extra={"error": self.status.last_error})
                return False
            previous = self._version()
            self._current = loaded  # the swap: one reference assignment
            self._etag = champion.etag
            self.status.last_error = None
            self.status.reloads["success"] += 1
            self._on_reload("success", loaded)
            log.info("serving champion %s (was %s), loaded in %.2f s", loaded.version, previous,
                     loaded.load_seconds, extra={"model_version": loaded.version, "previous_version": previous})
            return True

    def _version(self) -> str | None:
        return self._current.version if self._current else None

    def _load(self, version: str) -> LoadedModel:
        started = time.perf_counter()
        manifest = self.registry.manifest(version)
        mismatch = features.input_mismatch(version, manifest)
        if mismatch:  # it would silently mis-predict
            raise ValueError(mismatch)
        with tempfile.TemporaryDirectory() as tmp:
            path = self.registry.download_verified(version, Path(tmp) / "model.joblib", manifest["sha256"])
            model = joblib.load(path)
        threshold = float(manifest.get("threshold", getattr(model, "best_threshold_", 0.5)))
        onnx, onnx_note = (onnx_engine.convert(model, self.onnx_threads) if self.onnx_threads
                           else (None, "ONNX Runtime is switched off (SERVING_ENGINE=sklearn)"))
        if onnx_note:
            log.warning("serving %s with scikit-learn: %s", version, onnx_note)
        loaded = LoadedModel(version, model, threshold, manifest, _now(), 0.0, onnx, onnx_note)
        warm, _ = loaded.predict(features.model_input_rows(schema.cast_records([schema.example_record()])[0]))
        if not 0.0 <= warm[0] <= 1.0:  # through the engine that will serve
            raise ValueError(f"warm-up prediction of {version} is not a probability: {warm[0]}")
        return dataclasses.replace(loaded, loaded_at=_now(), load_seconds=time.perf_counter() - started)

    def start(self) -> None:
        """Poll in a daemon thread of this worker process (every worker converges on its own)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="champion-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.refresh()
