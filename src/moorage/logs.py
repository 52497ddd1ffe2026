"""Logging: `log.level`, `log.formatter` (text, json, logstash), `log.fields` on every line,
secrets masked on every handler, and one access log line per request."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import sys
import time
from typing import Any, TextIO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from moorage.config.schema import Config
from moorage.config.secrets import Redactor
from moorage.metrics import body_bytes

_LEVELS = {"warn": logging.WARNING, "warning": logging.WARNING}
# Attributes every LogRecord has: anything else on a record came in through `extra`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
ACCESS = "moorage.access"
_FORWARDED_FOR = re.compile(r'for="?\[?([^;,"\]]+)', re.IGNORECASE)


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


def _timestamp(record: logging.LogRecord) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{whole}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """`time level logger: message key=value ...`"""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__()
        self.fields = fields

    def format(self, record: logging.LogRecord) -> str:
        extra = {**_extra(record), **self.fields}
        pairs = " ".join(
            f"{k}={json.dumps(v) if isinstance(v, str) and ' ' in v else v}"
            for k, v in extra.items()
        )
        line = (
            f"{_timestamp(record)} {record.levelname.lower()} {record.name}: {record.getMessage()}"
        )
        if pairs:
            line = f"{line} {pairs}"
        if record.exc_info or record.exc_text:
            line = f"{line}\n{record.exc_text or self.formatException(record.exc_info)}"  # type: ignore[arg-type]
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `logstash` adds the `@timestamp`/`@version` keys Logstash
    expects."""

    def __init__(self, fields: dict[str, Any], logstash: bool = False) -> None:
        super().__init__()
        self.fields = fields
        self.logstash = logstash

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **self.fields,
            **_extra(record),
        }
        if self.logstash:
            entry = {
                "@timestamp": entry.pop("time"),
                "@version": "1",
                "message": entry.pop("msg"),
                **entry,
            }
        if record.exc_info or record.exc_text:
            entry["error"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, default=str)


def configure(config: Config, redactor: Redactor, stream: TextIO | None = None) -> None:
    """Sends every logger's records to one handler on stderr, formatted and redacted; records
    held since bootstrap(hold=True) go out first, in this format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(redactor)
    fields = dict(config.log.fields)
    formatter: logging.Formatter
    if config.log.formatter == "text":
        formatter = TextFormatter(fields)
    else:
        formatter = JsonFormatter(fields, logstash=config.log.formatter == "logstash")
    handler.setFormatter(formatter)
    logging.getLogger(ACCESS).disabled = config.log.accesslog.disabled
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


def _trusted(address: str, trusted: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(request: web.BaseRequest, trusted: list[Network]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the one the
    proxies report (`X-Forwarded-For`, or `Forwarded: for=`): the last hop not itself a
    trusted proxy, since a proxy appends to what the client sent and earlier entries can be
    forged; the first hop when every one is trusted."""
    peer = request.remote or ""
    if not _trusted(peer, trusted):
        return peer
    forwarded_for = request.headers.get("X-Forwarded-For")
    if forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    else:
        # Parsed here rather than by request.forwarded: the access log also sees the stand-in
        # requests aiohttp makes for unparseable input, whose headers are a plain dict.
        hops = _FORWARDED_FOR.findall(request.headers.get("Forwarded", ""))
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def access_logger(trusted: list[Network]) -> type[AbstractAccessLogger]:
    """The access logger class for aiohttp: one line per request with method, route, status,
    bytes, duration, client address (through trusted proxies), user and request id."""

    class AccessLogger(AbstractAccessLogger):
        def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
            route = request.get("route", request.path)  # set by the API's request_id middleware
            self.logger.info(
                "%s %s %d",
                request.method,
                request.path,
                response.status,
                extra={
                    "method": request.method,
                    "route": route,
                    "status": response.status,
                    "bytes_in": request.content_length or 0,
                    "bytes_out": body_bytes(request.method, response),
                    "duration_ms": round(time * 1000, 2),
                    "remote": client_address(request, trusted),
                    "user": request.get("user", "-"),
                    "request_id": request.get("request_id", "-"),
                },
            )

    return AccessLogger
