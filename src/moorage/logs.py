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
    """Sends every logger's records to one handler on stderr, formatted and redacted."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(redactor)
    fields = dict(config.log.fields)
    formatter: logging.Formatter
    if config.log.formatter == "text":
        formatter = TextFormatter(fields)
    else:
        formatter = JsonFormatter(fields, logstash=config.log.formatter == "logstash")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(_LEVELS.get(config.log.level, config.log.level.upper()))
    logging.getLogger(ACCESS).disabled = config.log.accesslog.disabled


def bootstrap(redactor: Redactor) -> None:
    """Logging before the config is loaded: warnings about the config itself, redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(redactor)
    handler.setFormatter(TextFormatter({}))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: web.BaseRequest, trusted: list[Network]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the one the
    proxy reports (`X-Forwarded-For`'s first entry, or `Forwarded: for=`)."""
    peer = request.remote or ""
    try:
        peer_ip = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    if not any(peer_ip in network for network in trusted):
        return peer
    forwarded_for = request.headers.get("X-Forwarded-For")
    if forwarded_for:
        return forwarded_for.split(",")[0].strip()
    # Parsed here rather than by request.forwarded: the access log also sees the stand-in
    # requests aiohttp makes for unparseable input, whose headers are a plain dict.
    match = _FORWARDED_FOR.search(request.headers.get("Forwarded", ""))
    return match.group(1) if match else peer


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
                    "bytes_out": response.body_length,
                    "duration_ms": round(time * 1000, 2),
                    "remote": client_address(request, trusted),
                    "user": request.get("user", "-"),
                    "request_id": request.get("request_id", "-"),
                },
            )

    return AccessLogger
