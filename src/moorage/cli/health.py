"""`moorage health [CONFIG]`: whether the registry the configuration describes is up, for a
container's HEALTHCHECK or a service monitor. Exit 0 with one line on stdout, or 1 with one
line on stderr.

The probe asks the debug listener's `/debug/health` when `http.debug.addr` is set, and else the
API's `/v2/` (200, or 401 when authentication is on) on `http.addr` with its `http.prefix`: over
TLS when `http.tls` is configured, on the socket with `http.net: unix`. A failing storage check
makes either answer 503. The certificate is not verified: the question is whether this
registry answers, not whether its name matches `127.0.0.1`. With client certificates required
(`http.tls.clientcas`), set `http.debug.addr` so that the probe has a way in.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import socket
import ssl
import sys
from dataclasses import dataclass

from moorage.config.loader import ConfigError, load
from moorage.config.schema import Config

DEFAULT_TIMEOUT = 5.0  # seconds
# Where a listener on every address is reached from the same host.
_LOCAL = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


class ProbeFailed(Exception):
    """The registry did not answer as a healthy one does; the message is one line."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


@dataclass
class Probe:
    url: str  # what is asked, for the report
    connection: http.client.HTTPConnection
    path: str
    healthy: frozenset[int]


def _host_port(addr: str, key: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ProbeFailed(f"{key}: expected host:port, got {addr!r}")
    host = host.strip("[]")
    return _LOCAL.get(host, host), int(port)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def probe_for(config: Config, timeout: float = DEFAULT_TIMEOUT) -> Probe:
    """The request that tells whether the registry `config` describes is healthy."""
    settings = config.http
    if settings.debug.addr:
        host, port = _host_port(settings.debug.addr, "http.debug.addr")
        return Probe(
            f"http://{_netloc(host, port)}/debug/health",
            http.client.HTTPConnection(host, port, timeout=timeout),
            "/debug/health",
            frozenset({200}),
        )
    path = settings.prefix.rstrip("/") + "/v2/"
    api = frozenset({200, 401})
    if settings.net == "unix":
        return Probe(
            f"unix:{settings.addr}{path}", _UnixConnection(settings.addr, timeout), path, api
        )
    host, port = _host_port(settings.addr, "http.addr")
    if not settings.tls.certificate:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        return Probe(f"http://{_netloc(host, port)}{path}", connection, path, api)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    return Probe(f"https://{_netloc(host, port)}{path}", connection, path, api)


def check(config: Config, timeout: float = DEFAULT_TIMEOUT) -> str:
    """What the healthy registry answered, in one line; raises ProbeFailed."""
    probe = probe_for(config, timeout)
    try:
        probe.connection.request("GET", probe.path, headers={"User-Agent": "moorage-health"})
        status = probe.connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ProbeFailed(f"{probe.url}: {reason}") from None
    finally:
        probe.connection.close()
    if status not in probe.healthy:
        raise ProbeFailed(f"{probe.url}: answered {status}")
    return f"{probe.url}: answered {status}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", nargs="?", help="the config the registry serves (default: embedded)"
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for the answer"
    )


def run(args: argparse.Namespace) -> int:
    # The config's own warnings (a random http.secret, ...) are the server's to report.
    logging.disable(logging.WARNING)
    try:
        print(check(load(args.config), args.timeout))
    except ConfigError as exc:
        print(f"moorage: health: config: {'; '.join(exc.problems)}", file=sys.stderr)
        return 1
    except ProbeFailed as exc:
        print(f"moorage: health: {exc}", file=sys.stderr)
        return 1
    return 0
