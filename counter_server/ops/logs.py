"""Logs: one JSON object per line for collectors, or short plain lines for a terminal.

Every record made while a request is handled carries its request id (a context variable set
by the request middleware), so the lines of one request can be found together. Fields given
with ``extra=`` (counter, token, route, status...) become keys of the JSON object.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import TextIO

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
FORMATS = ("json", "text")

# What every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id"}


# An API key must never reach a log, even inside an exception's text: aiohttp's HTTP parser
# quotes a malformed header line whole ("Invalid header value char: b'Authorization: Bearer
# ccq_...'") and logs it at error level, and an access log line carries the query string.
_SECRETS = re.compile(r"(ccq_)[A-Za-z0-9_\-]{4,}|(authorization[\"']?\s*[:=]\s*[\"']?(?:[a-z]+\s+)?)[^\s'\"\\]+",
                      re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with API keys and Authorization values replaced by ``[redacted]``."""
    return _SECRETS.sub(lambda m: (m.group(1) or m.group(2)) + "[redacted]", text)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = REQUEST_ID.get()
        return True


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and v is not None}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "request_id", ...extra}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if getattr(record, "request_id", None):
            body["request_id"] = record.request_id
        body.update(_extras(record))
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(body, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """``10:21:03 INFO  name: message  key=value ...`` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extras = _extras(record)
        if getattr(record, "request_id", None):
            extras = {"req": record.request_id, **extras}
        tail = "  " + " ".join(f"{k}={v}" for k, v in extras.items()) if extras else ""
        line = f"{moment} {record.levelname:<5} {record.name}: {record.getMessage()}{tail}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def default_format(stream: TextIO | None = None) -> str:
    """Plain text when a person watches the terminal, JSON when stderr goes to a file or a pipe."""
    stream = stream or sys.stderr
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def configure_logging(fmt: str | None = None, level: int = logging.INFO,
                      stream: TextIO | None = None) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stderr) in the chosen format."""
    stream = stream or sys.stderr
    fmt = fmt or default_format(stream)
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
