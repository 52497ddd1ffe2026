"""Logging: `log.level`, `log.formatter` (text, json, logstash), `log.fields` on every line,
secrets masked on every handler, and one access log line per request."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from moorage.config.schema import Config
from moorage.config.secrets import Redactor

if TYPE_CHECKING:  # the HTTP stack loads with the server, not with every command
    from aiohttp import web
    from aiohttp.abc import AbstractAccessLogger

_LEVELS = {"warn": logging.WARNING, "warning": logging.WARNING}
# Attributes every LogRecord has: anything else on a record came in through `extra`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
ACCESS = "moorage.access"
_FORWARDED_FOR = re.compile(r'for="?\[?([^;,"\]]+)', re.IGNORECASE)


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


@functools.lru_cache(maxsize=4)
def _second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _timestamp(created: float) -> str:
    whole = int(created)
    return f"{_second(whole)}.{int((created - whole) * 1000):03d}Z"


def _parts(record: logging.LogRecord) -> tuple[float, str, str, str, dict[str, Any]]:
    """What a formatter's `line` takes, from a record: time, level, logger, message, extra."""
    return (
        record.created,
        record.levelname.lower(),
        record.name,
        record.getMessage(),
        _extra(record),
    )


# Characters that would break a line or fool a terminal: text from the network (a request's
# path, a header) passes through logs, and every event must stay one line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    return json.dumps(match.group())[1:-1]  # \n, \t, \u0000, ...


def one_line(text: str) -> str:
    """The text with control characters (newlines included) escaped as JSON writes them."""
    return _CONTROL.sub(_escaped, text) if _CONTROL.search(text) else text


def _value(value: Any) -> Any:
    if isinstance(value, str) and (" " in value or '"' in value or _CONTROL.search(value)):
        return json.dumps(value)
    return value


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ...`, always one line: control characters in the
    message are escaped, values with spaces or control characters are JSON strings, and a
    traceback is the value of `error=`."""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__()
        self.fields = fields

    def line(
        self, created: float, level: str, logger: str, message: str, extra: dict[str, Any]
    ) -> str:
        pairs = " ".join(f"{k}={_value(v)}" for k, v in {**extra, **self.fields}.items())
        line = f"{_timestamp(created)} {level} {logger}: {one_line(message)}"
        return f"{line} {pairs}" if pairs else line

    def format(self, record: logging.LogRecord) -> str:
        created, level, logger, message, extra = _parts(record)
        trace = _trace(self, record)
        if trace:
            extra["error"] = trace
        return self.line(created, level, logger, message, extra)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `logstash` adds the `@timestamp`/`@version` keys Logstash
    expects."""

    def __init__(self, fields: dict[str, Any], logstash: bool = False) -> None:
        super().__init__()
        self.fields = fields
        self.logstash = logstash

    def entry(
        self, created: float, level: str, logger: str, message: str, extra: dict[str, Any]
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "time": _timestamp(created),
            "level": level,
            "logger": logger,
            "msg": message,
            **self.fields,
            **extra,
        }
        if self.logstash:
            entry = {
                "@timestamp": entry.pop("time"),
                "@version": "1",
                "message": entry.pop("msg"),
                **entry,
            }
        return entry

    def line(
        self, created: float, level: str, logger: str, message: str, extra: dict[str, Any]
    ) -> str:
        return json.dumps(self.entry(created, level, logger, message, extra), default=str)

    def format(self, record: logging.LogRecord) -> str:
        entry = self.entry(*_parts(record))
        trace = _trace(self, record)
        if trace:
            entry["error"] = trace
        return json.dumps(entry, default=str)


def _trace(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The record's traceback and stack, if any, as the standard formatter writes them."""
    parts = []
    if record.exc_info:
        parts.append(record.exc_text or formatter.formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return "\n".join(parts)


PIPE_BUF = 4096  # writes up to this size to a pipe are never interleaved with other writers'


class CoalescingHandler(logging.Handler):
    """Writes lines to a file descriptor of its own (a copy of the stream's), the lines of one
    event-loop iteration together at its end: under load, one system call for many access
    lines. Elsewhere (other threads, no loop) each line goes at once.

    Writes are whole lines of at most PIPE_BUF bytes together (a longer line alone), so that
    the workers sharing one stderr pipe (docker, systemd) never splice their lines into each
    other's. Text that is not valid UTF-8 (a client's header bytes) is escaped, never
    refused; a stream that cannot be written loses its lines, as logging does."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._fd = os.dup(stream.fileno())
        self._lines: list[bytes] = []
        self._scheduled: asyncio.AbstractEventLoop | None = None  # a flush is due on this loop

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_line(self.format(record))
        except Exception:
            self.handleError(record)

    def write_line(self, text: str) -> None:
        """Queues one line; written at the end of this loop iteration, or now."""
        with self.lock:  # type: ignore[union-attr]
            self._lines.append(f"{text}\n".encode("utf-8", "backslashreplace"))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # another thread, or no loop (start-up, shutdown): write now
            self.flush()
            return
        if self._scheduled is not loop:
            self._scheduled = loop
            loop.call_soon(self._flush_scheduled)

    def _flush_scheduled(self) -> None:
        self._scheduled = None
        with contextlib.suppress(OSError):  # a broken stream: nowhere left to say so
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines, self._lines = self._lines, []
            for chunk in _chunks(lines, PIPE_BUF):
                while chunk:
                    chunk = chunk[os.write(self._fd, chunk) :]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.flush()
        with self.lock:  # type: ignore[union-attr]
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        super().close()


def _chunks(lines: list[bytes], limit: int) -> list[bytes]:
    """Consecutive lines joined up to `limit` bytes a piece (a longer line alone)."""
    chunks: list[bytes] = []
    piece: list[bytes] = []
    size = 0
    for line in lines:
        if piece and size + len(line) > limit:
            chunks.append(b"".join(piece))
            piece, size = [], 0
        piece.append(line)
        size += len(line)
    if piece:
        chunks.append(b"".join(piece))
    return chunks


def _handler(stream: TextIO) -> logging.Handler:
    """The coalescing handler on a real file, a plain one on anything else (tests' buffers)."""
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return logging.StreamHandler(stream)
    return CoalescingHandler(stream)


class _AccessLines:
    """The access log's own path to the handler, one line per request without the cost of a
    LogRecord: the same formatter, fields and redaction as every other line, minus what an
    access line never has (arguments, tracebacks)."""

    def __init__(
        self,
        handler: logging.Handler,
        formatter: TextFormatter | JsonFormatter,
        redactor: Redactor,
    ) -> None:
        self.handler = handler
        self.formatter = formatter
        self.redactor = redactor

    def write(self, message: str, extra: dict[str, Any]) -> None:
        try:
            secrets = self.redactor.secrets
            if secrets:
                texts = "\n".join([message, *(v for v in extra.values() if isinstance(v, str))])
                if any(secret in texts for secret in secrets):
                    redact = self.redactor.redact
                    message = redact(message)
                    extra = {k: redact(v) if isinstance(v, str) else v for k, v in extra.items()}
            line = self.formatter.line(time.time(), "info", ACCESS, message, extra)
            handler = self.handler
            if isinstance(handler, CoalescingHandler):
                handler.write_line(line)
            else:
                assert isinstance(handler, logging.StreamHandler)
                with handler.lock:  # type: ignore[union-attr]
                    handler.stream.write(line + handler.terminator)
                    handler.flush()
        except Exception:  # as a handler's emit does: logging never fails the request
            self.handler.handleError(logging.makeLogRecord({"name": ACCESS, "msg": message}))


_access_lines: _AccessLines | None = None  # set by configure()


_ACCESS_LOGGER = logging.getLogger(ACCESS)


def access(message: str, extra: dict[str, Any]) -> None:
    """Logs one access line at info on `moorage.access`."""
    logger = _ACCESS_LOGGER
    if logger.disabled or not logger.isEnabledFor(logging.INFO):
        return
    if _access_lines is None:  # logging not configured by moorage: the plain way
        logger.info(message, extra=extra)
    else:
        _access_lines.write(message, extra)


def configure(config: Config, redactor: Redactor, stream: TextIO | None = None) -> None:
    """Sends every logger's records to one handler on stderr, formatted and redacted; records
    held since bootstrap(hold=True) go out first, in this format."""
    global _access_lines
    handler = _handler(stream or sys.stderr)
    handler.addFilter(redactor)
    fields = dict(config.log.fields)
    formatter: TextFormatter | JsonFormatter
    if config.log.formatter == "text":
        formatter = TextFormatter(fields)
    else:
        formatter = JsonFormatter(fields, logstash=config.log.formatter == "logstash")
    handler.setFormatter(formatter)
    _access_lines = _AccessLines(handler, formatter, redactor)
    logging.getLogger(ACCESS).disabled = config.log.accesslog.disabled
    # No formatter here shows threads or processes: records need not look them up (the
    # logging HOWTO's "Optimization"), which is a good part of a record's cost.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    _install(handler, _LEVELS.get(config.log.level, config.log.level.upper()))


class _Held(logging.Handler):
    """Keeps records until the handler that will write them is known."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _text_handler(redactor: Redactor) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(redactor)
    handler.setFormatter(TextFormatter({}))
    return handler


def _install(handler: logging.Handler, level: int | str) -> None:
    """Makes `handler` the only one, replaying the records held so far that pass `level`."""
    root = logging.getLogger()
    held = [r for h in root.handlers if isinstance(h, _Held) for r in h.records]
    root.handlers = [handler]
    root.setLevel(level)
    for record in held:
        if record.levelno >= root.level:
            handler.handle(record)


def bootstrap(redactor: Redactor, *, hold: bool = False) -> None:
    """Logging before the config is loaded (warnings about the config itself): text on
    stderr, redacted; with `hold`, kept for configure() to write in the configured format
    (or for release(), when loading fails)."""
    _install(_Held() if hold else _text_handler(redactor), logging.INFO)


def release(redactor: Redactor) -> None:
    """Writes the records held by bootstrap(hold=True) as text: there will be no configure()."""
    if any(isinstance(h, _Held) for h in logging.getLogger().handlers):
        _install(_text_handler(redactor), logging.INFO)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusts(trusted: list[Network]) -> Callable[[str], bool]:
    """Whether an address is in one of the `trusted` networks; answers are remembered (peers
    repeat)."""

    @functools.lru_cache(maxsize=4096)
    def check(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in trusted)

    return check


def client_address(request: web.BaseRequest, trusted: Callable[[str], bool]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the one the
    proxies report (`X-Forwarded-For`, or `Forwarded: for=`): the last hop not itself a
    trusted proxy, since a proxy appends to what the client sent and earlier entries can be
    forged; the first hop when every one is trusted."""
    peer = request.remote or ""
    if not trusted(peer):
        return peer
    forwarded_for = request.headers.get("X-Forwarded-For")
    if forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    else:
        # Parsed here rather than by request.forwarded: the access log also sees the stand-in
        # requests aiohttp makes for unparseable input, whose headers are a plain dict.
        hops = _FORWARDED_FOR.findall(request.headers.get("Forwarded", ""))
    for hop in reversed(hops):
        if not trusted(hop):
            return hop
    return hops[0] if hops else peer


def access_logger(trusted: list[Network]) -> type[AbstractAccessLogger]:
    """The access logger class for aiohttp: one line per request with method, route, status,
    bytes, duration, client address (through trusted proxies), user and request id."""
    from aiohttp.abc import AbstractAccessLogger

    from moorage.metrics import body_bytes

    is_trusted = trusts(trusted)

    class AccessLogger(AbstractAccessLogger):
        def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
            route = request.get("route", request.path)  # set by the API's request_id middleware
            access(
                f"{request.method} {request.path} {response.status}",
                {
                    "method": request.method,
                    "route": route,
                    "status": response.status,
                    "bytes_in": request.content_length or 0,
                    "bytes_out": body_bytes(request.method, response),
                    "duration_ms": round(time * 1000, 2),
                    "remote": client_address(request, is_trusted),
                    "user": request.get("user", "-"),
                    "request_id": request.get("request_id", "-"),
                },
            )

    return AccessLogger
