"""Structured JSON logs (python-json-logger) for the app and gunicorn alike; the access line of every request
by `access_line`, formatted by `AccessFormatter` into the same JSON fields at a fraction of the cost, and
written by `AccessHandler` in batches: at most a second late, as nginx's `access_log ... buffer= flush=1s`."""

from __future__ import annotations

import logging
import os
import threading
import time

import orjson

access_log = logging.getLogger("serving.access")


class _Process:
    """This process's id, renewed in a forked child (os.getpid() is a system call per access line)."""

    def __init__(self):
        self.pid = os.getpid()
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        self.pid = os.getpid()


_process = _Process()

LOGCONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.orjson.OrjsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
        },
        "access": {"()": "serving.logging_config.AccessFormatter"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
        "access": {"class": "serving.logging_config.AccessHandler", "formatter": "access",
                   "stream": "ext://sys.stderr"},
    },
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "serving.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "WARNING", "handlers": ["stderr"], "propagate": False},  # the app logs access
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}


def access_line(fields: dict) -> None:
    """One access line (`serving.access`, INFO) with the request's `fields`. As configured (one
    `AccessHandler` with an `AccessFormatter`, no filter), the line goes straight to the handler's buffer;
    otherwise a record is made directly (logging's `info` would first walk the stack for the caller's file
    and line, which the line never shows). The access line was a third of a one-row request's CPU in the
    app (benchmarks/README.md)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    handlers = access_log.handlers
    if len(handlers) == 1 and not access_log.propagate and not access_log.filters:
        handler = handlers[0]
        if type(handler) is AccessHandler and not handler.filters and handler.level <= logging.INFO \
                and type(handler.formatter) is AccessFormatter:
            handler.add(handler.formatter.line(time.time(), fields))
            return
    access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, __file__, 0, "request", (), None,
                                            extra={"access": fields}))


class AccessFormatter(logging.Formatter):
    """The access line as one JSON object: the fields of every other line (time, level, logger, pid,
    message; as the `json` formatter names them) and the request's, in one orjson call. The `json`
    formatter finds a record's extra fields by walking all its attributes; here they come as one dict."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._second, self._stamp = -1, ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """As logging's default (`2026-12-05 09:01:02,123`), the date part made once a second."""
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime(self.default_time_format, self.converter(second))
        return f"{self._stamp},{int(record.msecs):03d}"  # logging's default_msec_format

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                "pid": record.process, "message": record.getMessage()}
        line.update(getattr(record, "access", None) or {})
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()

    def line(self, created: float, fields: dict) -> str:
        """What `format` makes of an INFO record "request" of `serving.access` with `fields`, made at `created`
        (`time.time()`), without the record."""
        second = int(created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime(self.default_time_format, self.converter(second))
        line = {"time": f"{self._stamp},{int((created - second) * 1000):03d}", "level": "INFO",
                "logger": access_log.name, "pid": _process.pid, "message": "request"}
        line.update(fields)
        return orjson.dumps(line, default=str).decode()


class AccessHandler(logging.StreamHandler):
    """Access lines written to the stream in batches: every `FLUSH_SECONDS` (a daemon thread), when
    `BUFFER_CHARS` are waiting, and at exit (`logging.shutdown` flushes every handler). One write for many
    requests instead of a write and a flush each; a line is at most a second late, and a worker killed
    outright loses at most its last second of access lines (never an error line: those are not buffered)."""

    FLUSH_SECONDS = 1.0
    BUFFER_CHARS = 64 * 1024

    def __init__(self, stream=None):
        super().__init__(stream)
        self._waiting: list[str] = []
        self._chars = 0
        self._flushing = False  # whether this process runs the flushing thread
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:  # a gunicorn worker: its own lines and thread (logging renews the lock)
        self._waiting, self._chars, self._flushing = [], 0, False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.add(self.format(record))
        except Exception:
            self.handleError(record)

    def add(self, line: str) -> None:
        with self.lock:  # type: ignore[union-attr]  # logging's createLock made it
            self._waiting.append(line + self.terminator)
            self._chars += len(line) + 1
            full = self._chars >= self.BUFFER_CHARS
            start, self._flushing = not self._flushing, True
        if start:
            threading.Thread(target=self._flush_every, name="access-log-flush", daemon=True).start()
        if full:
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            waiting, self._waiting, self._chars = self._waiting, [], 0
            if waiting and self.stream is not None:
                self.stream.write("".join(waiting))
            super().flush()

    def _flush_every(self) -> None:
        while True:
            time.sleep(self.FLUSH_SECONDS)
            self.flush()
