"""Structured JSON logs (python-json-logger) for the app and gunicorn alike; the access line of every request
by `access_line`, formatted by `AccessFormatter` into the same JSON fields at a fraction of the cost."""

from __future__ import annotations

import logging
import time

import orjson

access_log = logging.getLogger("serving.access")

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
        "access": {"class": "logging.StreamHandler", "formatter": "access", "stream": "ext://sys.stderr"},
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
    """One access line (`serving.access`, INFO) with the request's `fields`. The record is made directly
    (logging's `info` would first walk the stack for the caller's file and line, which the line never
    shows): the access line was a third of a one-row request's CPU in the app (benchmarks/README.md)."""
    if access_log.isEnabledFor(logging.INFO):
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
