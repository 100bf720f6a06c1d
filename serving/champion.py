"""Loading the champion from the registry and swapping in a new one without dropping a request.

Each worker process holds one `ChampionHolder`. A request reads `holder.current` once and uses that
object to the end, so a swap (a single reference assignment) never changes a model under a request.
A new champion is loaded the one way the registry allows: its manifest's signature verified with
the public key, the model-input layout checked, `model.onnx` checked against the signed sha256 and
opened by ONNX Runtime (nothing is unpickled), then warmed with a prediction before it is swapped
in. If any step fails the old model keeps serving, /model says why, and that (version, pointer etag)
is not tried again until the pointer changes or its back-off has passed.

The pointer is read only as the project's signed writing (`ModelRegistry.champion`); a champion pointer
set back to an older signed change (a downgrade: a newer change is in the audit log) is refused. No
failure of a poll, whatever its step, ends the poll thread; `/model` says when polls stopped completing.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from cross_sell import clock
from cross_sell.model import model_input
from cross_sell.model.onnx_model import OnnxModel
from cross_sell.storage.registry import UNCHANGED, ModelRegistry, PointerError

log = logging.getLogger(__name__)


class _StateFailed(Exception):
    """`cause` went wrong for the pointer state `etag` naming `version`: the poller backs off on that state."""

    def __init__(self, cause: Exception, etag: str | None, version: str | None):
        super().__init__(str(cause))
        self.cause, self.etag, self.version = cause, etag, version
MAX_BACKOFF_SECONDS = 3600.0


@dataclass(frozen=True)
class LoadedModel:
    version: str
    model: OnnxModel
    manifest: dict
    loaded_at: str
    load_seconds: float

    @property
    def threshold(self) -> float:
        return self.model.threshold

    def predict(self, matrix: np.ndarray) -> tuple[list[float], list[int]]:
        """Probabilities and labels for rows of `model_input`."""
        probability = self.model.probability(matrix)
        return probability.tolist(), self.model.labels(probability).tolist()


@dataclass
class FailedLoad:
    """A pointer state (etag) whose version could not be loaded, and when to try it again."""

    etag: str | None
    version: str | None
    attempts: int
    retry_at: float  # time.monotonic()


@dataclass
class ReloadStatus:
    last_check_at: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    failed_version: str | None = None
    next_retry_in_seconds: float | None = None
    reloads: dict = field(default_factory=lambda: {"success": 0, "failure": 0})
    # What the pointer named at the last poll that read it, and what is wrong with its audit trail.
    pointer_version: str | None = None
    pointer_problems: list = field(default_factory=list)
    # When a poll last ran to its end, whatever it found (time.monotonic(), and as UTC text).
    last_poll_completed: float | None = None
    last_poll_completed_at: str | None = None


class ChampionHolder:
    """The model a pointer names (`champion.json`, or `shadow.json` for the challenger in shadow)."""

    def __init__(self, registry: ModelRegistry, poll_seconds: float, on_reload=None, onnx_threads: int = 2,
                 retry_backoff_seconds: float = 60.0, pointer_key: str | None = None, clock=time.monotonic):
        self.registry = registry
        self.pointer_key = pointer_key  # None: the champion
        self.shadow = pointer_key is not None
        self.poll_seconds = poll_seconds
        self.onnx_threads = onnx_threads
        self.retry_backoff_seconds = retry_backoff_seconds
        self.clock = clock
        self.status = ReloadStatus()
        self._current: LoadedModel | None = None
        self._etag: str | None = None
        self._failed: FailedLoad | None = None
        self._unrecorded = None  # the served pointer, while its audit record has not been found
        self._refreshing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_reload = on_reload or (lambda result, model: None)

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def refresh(self) -> bool:
        """Ask S3 whether the pointer changed (If-None-Match); load and swap if so. True when swapped.

        Nothing that goes wrong here escapes: the old model keeps serving and /model says why."""
        with self._refreshing:
            self.status.last_check_at = clock.stamp()
            try:
                swapped = self._refresh()
            except _StateFailed as failed:
                self._record_failure(failed.etag, failed.version, failed.cause)
                swapped = False
            except Exception as error:  # keep serving the old model whatever went wrong
                self._record_failure(error.etag if isinstance(error, PointerError) else None, None, error)
                swapped = False
            self.status.last_poll_completed = self.clock()
            self.status.last_poll_completed_at = clock.stamp()
            return swapped

    def _refresh(self) -> bool:
        champion = self.registry.champion(if_none_match=self._etag, key=self.pointer_key)
        if champion is UNCHANGED:
            if self._unrecorded is not None:  # read between the pointer's write and its audit record's
                self._check_audit(self._unrecorded)
            return False
        if champion is None or not champion.version:
            self.status.pointer_version = None
            if self.shadow and self._current is not None:  # the shadow was cleared: stop scoring
                log.info("shadow %s cleared", self._current.version)
                self._current, self._etag = None, getattr(champion, "etag", None)
            return False  # (a champion is never unloaded: the old one keeps serving)
        self.status.pointer_version = champion.version
        if self._waiting(champion.etag):
            return False
        if not self.shadow:
            self._check_audit(champion)
        if self._current is not None and champion.version == self._current.version:
            self._etag = champion.etag  # pointer rewritten or back on what serves: nothing to load
            self._clear_failure()
            return False
        try:
            loaded = self._load(champion.version)
        except Exception as error:
            raise _StateFailed(error, champion.etag, champion.version) from error
        previous = self._version()
        self._current = loaded  # the swap: one reference assignment
        self._etag = champion.etag
        self._clear_failure()
        self.status.reloads["success"] += 1
        self._on_reload("success", loaded)
        log.info("serving champion %s (was %s), loaded in %.2f s", loaded.version, previous,
                 loaded.load_seconds, extra={"model_version": loaded.version, "previous_version": previous})
        return True

    def _check_audit(self, champion) -> None:
        """A pointer set back to an older signed change (a downgrade) is refused; a change with no audit
        record, or unsigned records, are shown on /model and logged, and the version still serves (the
        pointer itself is signed by the training side)."""
        problems = self.registry.audit_problems(champion)
        self.status.pointer_problems = [{"kind": p.kind, "message": p.message} for p in problems]
        # A record not there yet is looked for again on the next polls (its writer may be a moment behind).
        self._unrecorded = champion if any(p.kind == "unrecorded" for p in problems) else None
        for problem in problems:
            log.error("champion pointer: %s", problem.message, extra={"pointer_problem": problem.kind})
        downgrade = next((p for p in problems if p.kind == "downgrade"), None)
        if downgrade is not None:
            raise _StateFailed(PointerError(downgrade.message, champion.etag), champion.etag, champion.version)

    def _waiting(self, etag: str) -> bool:
        failed = self._failed
        if failed is None or failed.etag != etag:
            return False
        self.status.next_retry_in_seconds = round(max(failed.retry_at - self.clock(), 0.0), 1)
        return self.clock() < failed.retry_at

    def _record_failure(self, etag: str | None, version: str | None, error: Exception) -> None:
        try:
            attempts = self._failed.attempts + 1 if self._failed and self._failed.etag == etag and etag else 1
            backoff = min(self.retry_backoff_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
            # Only a failure tied to a pointer state waits: an S3 outage before the pointer was read is
            # retried on the next poll.
            self._failed = FailedLoad(etag, version, attempts, self.clock() + (backoff if etag else 0.0))
            self.status.last_error = f"{type(error).__name__}: {error}"[:2000]
            self.status.last_error_at = clock.stamp()
            self.status.failed_version = version
            self.status.next_retry_in_seconds = backoff if etag else None
            self.status.reloads["failure"] += 1
            self._on_reload("failure", self._current)
            log.error("champion reload failed; still serving %s", self._version(),
                      extra={"error": self.status.last_error, "failed_version": version, "attempt": attempts})
        except Exception:  # recording a failure must never end the poller either
            log.exception("could not record a reload failure")

    def _clear_failure(self) -> None:
        self._failed = None
        self.status.last_error = self.status.last_error_at = self.status.failed_version = None
        self.status.next_retry_in_seconds = None

    def _version(self) -> str | None:
        return self._current.version if self._current else None

    def _load(self, version: str) -> LoadedModel:
        started = time.perf_counter()
        model, manifest = self.registry.served_model(version, threads=self.onnx_threads)
        warm = model.probability(model_input.example())
        if not 0.0 <= warm[0] <= 1.0:
            raise ValueError(f"warm-up prediction of {version} is not a probability: {warm[0]}")
        return LoadedModel(version, model, manifest, clock.stamp(), time.perf_counter() - started)

    def stale_since(self) -> str | None:
        """When the last poll completed, if none has for three intervals (the poller is stuck or S3 is
        unreachable: what serves may no longer be what the pointer names); None while polls complete."""
        completed = self.status.last_poll_completed
        if completed is None or self.clock() - completed <= 3 * self.poll_seconds:
            return None
        return self.status.last_poll_completed_at

    def poller_alive(self) -> bool:
        """False when the poll thread was started and has ended without being stopped (liveness)."""
        return self._thread is None or self._thread.is_alive() or self._stop.is_set()

    def start(self) -> None:
        """Poll in a daemon thread of this worker process (every worker converges on its own)."""
        if self._thread is None:
            name = "shadow-poller" if self.shadow else "champion-poller"
            self._thread = threading.Thread(target=self._poll, name=name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # refresh catches everything itself; this is the last line of defence
                log.exception("champion poll failed; polling on")
