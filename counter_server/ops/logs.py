"""Logs: one JSON object per line for collectors, or short plain lines for a terminal.

Every record made while a request is handled carries its request id (a context variable set
by the request middleware), so the lines of one request can be found together. Fields given
with ``extra=`` (counter, token, route, status...) become keys of the JSON object.

What a client sends reaches the logs (a path, a token id from the URL, a header): control
characters in it are written escaped (``\\n``), so a path with ``%0A`` cannot start a line that
reads like one of the app's, and in text logs every line after a record's first (a
traceback's) is indented. Requests aiohttp cannot parse (an oversized header, sent by anyone,
without a key) are logged as one short line per client a minute, without the traceback.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import re
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TextIO

import orjson
from aiohttp.http_exceptions import HttpProcessingError

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
FORMATS = ("json", "text")

# What every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id"}


# An API key must never reach a log, even inside an exception's text: aiohttp's HTTP parser
# quotes a malformed header line whole ("Invalid header value char: b'Authorization: Bearer
# ccq_...'") and logs it at error level, and an access log line carries the query string.
_SECRETS = re.compile(r"(ccq_)[A-Za-z0-9_\-]{4,}|(authorization[\"']?\s*[:=]\s*[\"']?(?:[a-z]+\s+)?)[^\s'\"\\]+",
                      re.IGNORECASE)


# A phone follows its token by a link (the token's id and a MAC) in the URL: whoever holds it
# can cancel the token, so the access log's request line must not carry it.
_PHONE_LINKS = re.compile(r"(/api/v1/public/tokens/|/q/t/)[^/\s?#\"'\\]+")


def redact(text: str) -> str:
    """``text`` with API keys, Authorization values and phone links replaced by ``[redacted]``."""
    if text.isascii():
        # Most lines hold none of them, and a look for the words is a tenth of the patterns'
        # cost (they were a third of a logged line's). For ASCII, lower() folds case exactly
        # as the patterns' IGNORECASE does; other text takes the patterns (dotless i matches i).
        lowered = text.lower()
        if ("ccq_" not in lowered and "authorization" not in lowered
                and "/q/t/" not in text and "/api/v1/public/tokens/" not in text):
            return text
    text = _PHONE_LINKS.sub(r"\1[redacted]", text)
    return _SECRETS.sub(lambda m: (m.group(1) or m.group(2)) + "[redacted]", text)


# C0 controls, DEL, C1 controls (U+0085 ends a line for some readers) and the Unicode line and
# paragraph separators: in a logged value they could end the line or move a terminal's cursor.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# What json.dumps leaves raw inside strings (it escapes only U+0000-U+001F).
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029]")


def _escaped(char: str) -> str:
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``)."""
    return _CONTROLS.sub(lambda m: _escaped(m.group(0)), text)


def _indented(text: str) -> str:
    """A traceback under its record: each line escaped and indented, so none can pass for a
    record of its own (those start at the line's start with the time)."""
    return "\n".join("    " + escape_controls(line) for line in text.split("\n"))


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = REQUEST_ID.get()
        return True


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and v is not None}


def _json_line(body: dict[str, object]) -> str:
    """One JSON object, by orjson (a tenth of the standard library's time); what orjson
    cannot write (an integer past 64 bits) goes through the standard library."""
    try:
        return orjson.dumps(body, default=str).decode()
    except TypeError:
        return json.dumps(body, ensure_ascii=False, default=str)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", "request_id", ...extra}`` on one line."""

    def __init__(self) -> None:
        super().__init__()
        self._second: int | None = None      # the second whose text is kept, and that text
        self._second_text = ""

    def _ts(self, created: float) -> str:
        """``2026-12-03T12:42:30.123+00:00``, as isoformat writes it to the millisecond; the
        date and time up to the second are made once a second (a change's line asked a
        datetime for all of it, about a fifth of its formatting)."""
        fraction, whole = math.modf(created)      # rounded to the microsecond as datetime does
        second, micros = int(whole), round(fraction * 1_000_000)
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        if second != self._second:
            self._second = second
            self._second_text = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._second_text}.{micros // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, object] = {
            "ts": self._ts(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if getattr(record, "request_id", None):
            body["request_id"] = record.request_id
        body.update(_extras(record))
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        line = _json_line(body)
        if not line.isascii() or "\x7f" in line:   # DEL is the one unsafe character in ASCII
            line = _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", line)
        return redact(line)


class TextFormatter(logging.Formatter):
    """``10:21:03 INFO  name: message  key=value ...`` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extras = _extras(record)
        if getattr(record, "request_id", None):
            extras = {"req": record.request_id, **extras}
        tail = "  " + " ".join(f"{k}={escape_controls(str(v))}" for k, v in extras.items()) if extras else ""
        line = f"{moment} {record.levelname:<5} {record.name}: {escape_controls(record.getMessage())}{tail}"
        if record.exc_info:
            line += "\n" + _indented(self.formatException(record.exc_info))
        return redact(line)


class MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse with its traceback (an oversized header: 800
    bytes), and anyone can send such requests, keyless, as fast as they like. Keep one short
    warning per client a minute, naming how many more were left out."""

    def __init__(self, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000) -> None:
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self.max_clients = max_clients
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name != "aiohttp.server" or not isinstance(exc, HttpProcessingError):
            return True
        client = str(record.args[0]) if isinstance(record.args, tuple) and record.args else "unknown"
        now = self.clock()
        last = self._last.get(client)
        if last is not None and now - last < self.every_s:
            self._left_out[client] = self._left_out.get(client, 0) + 1
            return False
        if len(self._last) >= self.max_clients:
            self._forget_before(now - self.every_s)
        self._last[client] = now
        left_out = self._left_out.pop(client, 0)
        reason = f"{type(exc).__name__}: {str(exc.message).splitlines()[0] if exc.message else exc.code}"
        record.msg = "refused a malformed request from %s (%s)" + (
            f"; {left_out} more from it in the last {self.every_s:g} s not logged" if left_out else "")
        record.args = (client, reason[:120])
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True

    def _forget_before(self, moment: float) -> None:
        for client in [c for c, at in self._last.items() if at < moment]:
            del self._last[client]
            self._left_out.pop(client, None)
        if len(self._last) >= self.max_clients:   # a flood from as many addresses: start again
            self._last.clear()
            self._left_out.clear()


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
    # No record names its caller's file and line (neither format writes them): finding them
    # walked the stack on every line, an eighth of a change's log line (the logging HOWTO's
    # "Optimization" table).
    logging._srcfile = None
    # Nor its thread's and process's names, which neither writes either (the same table).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    handler.addFilter(MalformedRequests())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
