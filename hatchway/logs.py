"""Structured logging: one event per line, to DIR/logs, as text or JSON."""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
from pathlib import Path

from .private import open_private, private_dir

_STANDARD = set(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        event.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = {
            k: v
            for k, v in vars(record).items()
            if k not in _STANDARD and k not in ("message", "asctime")
        }
        if extra:
            line += " " + " ".join(f"{k}={v}" for k, v in extra.items())
        return line


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotated log that only its owner may read, rotated files included: logs name
    users, nodes and addresses."""

    def _open(self) -> io.TextIOWrapper:
        # Header values that are not UTF-8 reach us as surrogate escapes; written as
        # \udcff rather than failing the write (and printing a traceback per line).
        return open_private(
            Path(self.baseFilename), self.mode, self.encoding or "utf-8", "backslashreplace"
        )


def setup(log_dir: Path, name: str, *, json_lines: bool, level: int = logging.INFO) -> None:
    """Log to ``log_dir/<name>.log`` (rotated) and to stderr at warning and above."""
    private_dir(log_dir)
    formatter: logging.Formatter = (
        JsonFormatter()
        if json_lines
        else TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger("hatchway")
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    file_handler = PrivateRotatingFileHandler(
        log_dir / f"{name}.log", maxBytes=10 * 1024 * 1024, backupCount=5
    )
    file_handler.setFormatter(formatter)
    root.addHandler(file_handler)
    errors = PrivateRotatingFileHandler(
        log_dir / "errors.log", maxBytes=10 * 1024 * 1024, backupCount=5
    )
    errors.setLevel(logging.ERROR)
    errors.setFormatter(formatter)
    root.addHandler(errors)
