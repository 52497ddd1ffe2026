"""The load-generating client, run as a process of its own so that it never shares a GIL or a
core's time slice with the harness: `python -m bench.client '{"op": ..., ...}'` prints one JSON
object with what it measured.

It is built to stay out of the way of the servers: bodies go out by `sendfile` straight from the
blob file in the page cache, responses come in by 1 MiB `readinto` into one reused buffer, and
every connection is kept alive across the requests of one operation. Times are taken here, on
the client side, around exactly the protocol steps being measured.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import threading
import time
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

BUFFER = 1 << 20
TIMEOUT = 600.0


class ProtocolError(Exception):
    """The registry answered something other than the step expects."""


def connect(base: str) -> http.client.HTTPConnection:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=TIMEOUT)
    conn.connect()
    return conn


def target(base: str, location: str) -> str:
    """The request target (path?query) of a Location, absolute or relative."""
    parts = urlsplit(urljoin(base + "/", location))
    return parts.path + (f"?{parts.query}" if parts.query else "")


def with_query(path: str, **params: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{path}{'&' if '?' in path else '?'}{query}"


def send(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    expect: int,
    headers: dict[str, str] | None = None,
    body: BinaryIO | None = None,
    offset: int = 0,
    count: int = 0,
) -> http.client.HTTPResponse:
    """One request whose body (if any) is `count` bytes of `body` from `offset`, sent by
    sendfile; reads the (small) response body and checks the status."""
    conn.putrequest(method, path, skip_accept_encoding=True)
    for key, value in (headers or {}).items():
        conn.putheader(key, value)
    if method not in ("GET", "HEAD") or count:
        conn.putheader("Content-Length", str(count))
    conn.endheaders()
    if count:
        assert body is not None and conn.sock is not None
        sent = conn.sock.sendfile(body, offset, count)
        if sent != count:
            raise ProtocolError(f"{method} {path}: sent {sent} of {count} bytes")
    response = conn.getresponse()
    text = response.read()
    if response.status != expect:
        raise ProtocolError(
            f"{method} {path}: {response.status} (expected {expect}): {text[:500]!r}"
        )
    return response


class Connections:
    """The connection for each request of a push: one kept alive, or with `reconnect` a new one
    per request, to each of `bases` in turn (replicas behind a round-robin balancer)."""

    def __init__(self, bases: list[str], reconnect: bool) -> None:
        self.bases = bases
        self.reconnect = reconnect
        self.turn = 0
        self.conn = connect(bases[0])
        self.used = False

    def next(self) -> http.client.HTTPConnection:
        if self.reconnect and self.used:
            self.conn.close()
            self.turn += 1
            self.conn = connect(self.bases[self.turn % len(self.bases)])
        self.used = True
        return self.conn

    def close(self) -> None:
        self.conn.close()


def push(
    base: str,
    repo: str,
    file: str,
    digest: str,
    chunk: int = 0,
    reconnect: bool = False,
    others: list[str] | None = None,
) -> dict[str, Any]:
    """A blob push, timed from the POST to the 201: monolithic (POST, then PUT `?digest=` with
    the whole body) when `chunk` is 0, else PATCH by PATCH of `chunk` bytes with Content-Range
    (as docker and containerd push), then an empty PUT `?digest=`. With `reconnect`, each
    request goes on a new connection (its connect timed too), to `base` and `others` in turn.
    Also the time of the request that finishes the push (the PUT), where a registry that
    did not keep the running digest reads the stored bytes back."""
    size = os.path.getsize(file)
    octets = {"Content-Type": "application/octet-stream"}
    with open(file, "rb") as body:
        conns = Connections([base, *(others or [])], reconnect)
        started = time.perf_counter()
        response = send(conns.next(), "POST", f"/v2/{repo}/blobs/uploads/", 202)
        location = target(base, response.headers["Location"])
        if chunk == 0:
            put = with_query(location, digest=digest)
            finishing = time.perf_counter()
            send(conns.next(), "PUT", put, 201, octets, body, 0, size)
        else:
            for offset in range(0, size, chunk):
                count = min(chunk, size - offset)
                headers = {**octets, "Content-Range": f"{offset}-{offset + count - 1}"}
                response = send(conns.next(), "PATCH", location, 202, headers, body, offset, count)
                location = target(base, response.headers["Location"])
            finishing = time.perf_counter()
            send(conns.next(), "PUT", with_query(location, digest=digest), 201)
        ended = time.perf_counter()
        conns.close()
    return {"bytes": size, "seconds": ended - started, "put_seconds": ended - finishing}


def _drain(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> int:
    """GETs `path` and reads the body into a reused buffer; returns its length."""
    response = send_get(conn, path, headers)
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    total = 0
    while True:
        read = response.readinto(view)
        if not read:
            break
        total += read
    return total


def send_get(
    conn: http.client.HTTPConnection, path: str, headers: dict[str, str]
) -> http.client.HTTPResponse:
    conn.putrequest("GET", path, skip_accept_encoding=True)
    for key, value in headers.items():
        conn.putheader(key, value)
    conn.endheaders()
    response = conn.getresponse()
    if response.status != 200:
        raise ProtocolError(f"GET {path}: {response.status}: {response.read()[:500]!r}")
    return response


def _follow(conn: http.client.HTTPConnection, base: str, path: str) -> int:
    """GETs `path` from the registry, which must answer 307; follows the Location (the
    presigned URL of the storage) on a new connection and reads that body; returns its
    length."""
    conn.putrequest("GET", path, skip_accept_encoding=True)
    conn.endheaders()
    response = conn.getresponse()
    response.read()
    if response.status != 307:
        raise ProtocolError(f"GET {path}: {response.status}, expected a 307 redirect")
    location = response.headers["Location"]
    parts = urlsplit(urljoin(base + "/", location))
    storage = connect(f"{parts.scheme}://{parts.netloc}")
    try:
        return _drain(storage, parts.path + (f"?{parts.query}" if parts.query else ""), {})
    finally:
        storage.close()


def pull(
    base: str, repo: str, digest: str, size: int, clients: int, redirect: bool = False
) -> dict[str, Any]:
    """`clients` concurrent GETs of one blob, each on its own connection and thread (recv
    releases the GIL), released together; timed from the release to the last byte. With
    `redirect`, the registry must answer 307 and the client follows it to the storage (the
    time includes both requests); without, it must answer 200 with the bytes."""
    path = f"/v2/{repo}/blobs/{digest}"
    conns = [connect(base) for _ in range(clients)]
    gate = threading.Barrier(clients + 1)
    received = [0] * clients
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            gate.wait()
            if redirect:
                received[index] = _follow(conns[index], base, path)
            else:
                received[index] = _drain(conns[index], path, {})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise errors[0]
    if any(count != size for count in received):
        raise ProtocolError(f"GET {path}: received {received}, expected {size} each")
    return {"bytes": sum(received), "seconds": seconds}


def latencies(
    base: str, path: str, accept: str, min_requests: int, max_requests: int, max_seconds: float
) -> dict[str, Any]:
    """Sequential GETs of `path` on one kept-alive connection: at least `min_requests`, then
    until `max_requests` or `max_seconds`; returns every request's latency."""
    conn = connect(base)
    headers = {"Accept": accept} if accept else {}
    times: list[float] = []
    size = 0
    deadline = time.perf_counter() + max_seconds
    while len(times) < max_requests and (
        len(times) < min_requests or time.perf_counter() < deadline
    ):
        started = time.perf_counter()
        size = _drain(conn, path, headers)
        times.append(time.perf_counter() - started)
    return {"latencies": times, "bytes": size}


def walk(base: str, path: str, max_walks: int, max_seconds: float) -> dict[str, Any]:
    """Full walks of a paginated listing, following Link rel="next" from `path`; at least one
    walk, then until `max_walks` or `max_seconds`. Returns each walk's time and what one walk
    listed."""
    conn = connect(base)
    times: list[float] = []
    items = pages = 0
    deadline = time.perf_counter() + max_seconds
    while len(times) < max_walks and (not times or time.perf_counter() < deadline):
        started = time.perf_counter()
        items = pages = 0
        next_path: str | None = path
        while next_path:
            response = send_get(conn, next_path, {})
            document = json.loads(response.read())
            items += len(document.get("repositories") or document.get("tags") or [])
            pages += 1
            link = response.headers.get("Link")
            next_path = target(base, link.split(";")[0].strip("<> ")) if link else None
        times.append(time.perf_counter() - started)
    return {"walks": times, "items": items, "pages": pages}


OPS = {"push": push, "pull": pull, "latencies": latencies, "walk": walk}


def main() -> None:
    request = json.loads(sys.argv[1])
    op = OPS[request.pop("op")]
    json.dump(op(**request), sys.stdout)


if __name__ == "__main__":
    main()
