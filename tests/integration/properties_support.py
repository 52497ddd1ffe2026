"""Helpers for the route-level property tests: requests sent byte for byte over a raw socket
(paths percent-encoded as generated, header values as the bytes HTTP allows, nothing normalised
by a client library), the response read as it came, and the invariants every answer must keep:
no 5xx, every 4xx in the OCI error envelope with a known code, no CR, LF or NUL in a header, at
most one `WWW-Authenticate` holding exactly one challenge with one realm, no file created outside
the storage root, and the server process still alive."""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import assume

from tests.servers import Server

TIMEOUT = 30
# Servers commonly read request lines and header fields of up to 8 KB and may refuse longer
# ones before any handler sees them (RFC 9112 section 3; aiohttp's limit is 8190 bytes).
LINE_LIMIT = 8000
UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

# The error codes of the OCI distribution spec and of distribution's errcode package, and
# moorage's NOT_FOUND for a path that is no endpoint.
KNOWN_CODES = frozenset(
    {
        "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "MANIFEST_UNVERIFIED",
        "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID", "TAG_INVALID", "RANGE_INVALID",
        "PAGINATION_NUMBER_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "UNAVAILABLE",
        "TOOMANYREQUESTS", "UNKNOWN", "NOT_FOUND",
    }
)  # fmt: skip

# RFC 7235 section 2.1: a challenge is `scheme [ 1*SP ( token68 / #auth-param ) ]`, an
# auth-param `token BWS "=" BWS ( token / quoted-string )`.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*"'
_PARAM = rf"({_TOKEN})[ \t]*=[ \t]*({_TOKEN}|{_QUOTED})"
_CHALLENGE = re.compile(rf"({_TOKEN})(?: +({_PARAM}(?:[ \t]*,[ \t]*{_PARAM})*))?")
_ONE_PARAM = re.compile(_PARAM)


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]  # in order, decoded as latin-1
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> object:
        return json.loads(self.body)


class NoAnswer(AssertionError):
    """The server closed the connection without an HTTP answer."""


def path(*parts: str, encode_all: bool = False) -> bytes:
    """A request path from its parts: text as is for unreserved characters and `/`, every
    other byte percent-encoded; with `encode_all`, every byte of the parts but `/` between them
    (so `.` and `/` inside a part arrive encoded, past any normalisation)."""
    encoded = []
    for part in parts:
        raw = part.encode("utf-8")
        if encode_all:
            encoded.append(b"".join(b"%%%02X" % byte for byte in raw))
        else:
            encoded.append(
                b"".join(
                    bytes([byte]) if byte in UNRESERVED or byte == 0x2F else b"%%%02X" % byte
                    for byte in raw
                )
            )
    return b"/".join(encoded)


def query(params: list[tuple[str, str]]) -> bytes:
    """`?k=v&...` with every byte outside the unreserved set percent-encoded; b"" for none."""
    if not params:
        return b""

    def quote(text: str) -> bytes:
        return b"".join(
            bytes([byte]) if byte in UNRESERVED else b"%%%02X" % byte
            for byte in text.encode("utf-8")
        )

    return b"?" + b"&".join(quote(k) + b"=" + quote(v) for k, v in params)


def send(
    server: Server,
    method: str,
    target: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    source: str | None = None,
) -> Response:
    """One request on a fresh connection (`Connection: close`), read to the end. `source` is
    the loopback address to send from (the token server limits failed logins per address)."""
    host, port = server.host.rsplit(":", 1)
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: " + server.host.encode()]
    lines += [name + b": " + value for name, value in headers or []]
    lines += [b"Connection: close", b"Content-Length: %d" % len(body)]
    request = b"\r\n".join(lines) + b"\r\n\r\n" + body
    with socket.create_connection(
        (host, int(port)), timeout=TIMEOUT, source_address=(source, 0) if source else None
    ) as sock:
        sock.sendall(request)
        received = bytearray()
        while chunk := sock.recv(1 << 16):
            received += chunk
    if not received:
        raise NoAnswer(f"no answer to {method} {target[:300]!r}")
    return _parse(bytes(received), method)


def _parse(received: bytes, method: str) -> Response:
    head, sep, body = received.partition(b"\r\n\r\n")
    assert sep, f"no end of header in {received[:500]!r}"
    status_line, *lines = head.split(b"\r\n")
    assert re.fullmatch(rb"HTTP/1\.1 \d{3} [^\r\n\x00]*", status_line), received[:1000]
    headers = []
    for line in lines:
        assert not re.search(rb"[\r\n\x00]", line), f"CR, LF or NUL in a header: {line!r}"
        name, colon, value = line.partition(b":")
        assert colon and re.fullmatch(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name), line
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    response = Response(int(status_line[9:12]), headers, body)
    if (response.header("Transfer-Encoding") or "").lower() == "chunked":
        response.body = _dechunk(body)
    return response


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += body[:size]
        body = body[size + 2 :]


def parse_challenge(value: str) -> tuple[str, dict[str, str]]:
    """The scheme and parameters of a `WWW-Authenticate` value that must hold exactly one
    challenge (RFC 7235), each parameter once, quoted strings unescaped."""
    match = _CHALLENGE.fullmatch(value)
    assert match is not None, f"not one RFC 7235 challenge: {value!r}"
    params: dict[str, str] = {}
    for name, raw in _ONE_PARAM.findall(match.group(2) or ""):
        assert name.lower() not in params, f"{name} twice in {value!r}"
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[name.lower()] = raw
    return match.group(1), params


def assert_well_formed(response: Response, method: str) -> None:
    """What every answer of the registry keeps, whatever was asked."""
    assert response.status < 500, f"{response.status}: {response.body[:500]!r}"
    challenges = response.all("WWW-Authenticate")
    assert len(challenges) <= 1, challenges
    if challenges:
        _scheme, params = parse_challenge(challenges[0])
        assert "realm" in params, challenges[0]
    if response.status == 401:
        assert challenges, "401 without a challenge"
    if 400 <= response.status < 500 and method != "HEAD":
        assert (response.header("Content-Type") or "").startswith("application/json")
        envelope = response.json()
        assert isinstance(envelope, dict) and list(envelope) == ["errors"], envelope
        errors = envelope["errors"]
        assert isinstance(errors, list) and errors, envelope
        for entry in errors:
            assert set(entry) <= {"code", "message", "detail"}, entry
            assert entry["code"] in KNOWN_CODES and isinstance(entry["message"], str), entry


def error_codes(response: Response) -> list[str]:
    envelope = response.json()
    assert isinstance(envelope, dict)
    return [entry["code"] for entry in envelope["errors"]]


def tree(directory: Path, root: Path) -> set[str]:
    """Every file and directory under `directory`, except inside `root`."""
    found = set()
    for current, dirs, files in os.walk(directory):
        if Path(current) == root:
            dirs.clear()
            continue
        found.update(os.path.join(current, name) for name in [*dirs, *files])
    return found


@dataclass
class Watched:
    """A running moorage and the temporary directory around its storage root: what was there
    once the server had started is all there may ever be outside the root."""

    server: Server
    directory: Path
    root: Path
    baseline: set[str] = field(default_factory=set)

    def settle(self) -> None:
        self.baseline = tree(self.directory, self.root)

    def exchange(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        source: str | None = None,
    ) -> Response:
        """Sends the request and checks the answer and the server against the invariants.
        Called from a property test's own thread: a request too long to send is not tried."""
        assume(len(target) + len(method) <= LINE_LIMIT - 20)
        assume(all(len(name) + len(value) <= LINE_LIMIT - 2 for name, value in headers or []))
        return self.exchange_now(method, target, headers, body, source)

    def exchange_now(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        source: str | None = None,
    ) -> Response:
        """`exchange` for requests known to fit, from any thread."""
        try:
            response = send(self.server, method, target, headers, body, source)
        finally:
            self.assert_contained()
        assert_well_formed(response, method)
        return response

    def assert_contained(self) -> None:
        assert self.server.process.poll() is None, f"server exited:\n{self.server.logs()}"
        created = tree(self.directory, self.root) - self.baseline
        assert not created, f"created outside the storage root: {sorted(created)}"
