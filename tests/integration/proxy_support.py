"""Helpers for the pull-through cache's tests: a TCP relay standing for the network between the
cache and its upstream (which a test can hold after some bytes, and cut), and counting requests
in a server's access log."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator

from tests.servers import Server

BUFFER = 64 * 1024


class Relay:
    """Forwards every connection made to it to 127.0.0.1:`target`. `hold(after)` stops the
    bytes coming back from the target once `after` more of them have passed (over every
    connection), until `release()`; `cut()` closes every connection at once."""

    def __init__(self, target: int) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Condition()
        self._budget: int | None = None  # bytes that may still come back; None: no limit
        self._held = threading.Event()
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold(self, after: int) -> None:
        with self._lock:
            self._budget = after
            self._held.clear()

    def wait_held(self, timeout: float = 60) -> None:
        """Waits until bytes are being held back."""
        assert self._held.wait(timeout), "the relay never reached its hold"

    def release(self) -> None:
        with self._lock:
            self._budget = None
            self._lock.notify_all()

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
            self._lock.notify_all()
        for each in sockets:
            with contextlib.suppress(OSError):
                each.shutdown(socket.SHUT_RDWR)
            each.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.release()
        self.cut()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, held: bool) -> None:
        try:
            while True:
                data = source.recv(BUFFER)
                if not data:
                    break
                while data:
                    allowed = self._allowance(sink, len(data)) if held else len(data)
                    if allowed is None:
                        return  # cut while waiting
                    sink.sendall(data[:allowed])
                    data = data[allowed:]
        except OSError:
            pass
        finally:
            for each in (source, sink):
                with contextlib.suppress(OSError):
                    each.shutdown(socket.SHUT_RDWR)

    def _allowance(self, sink: socket.socket, wanted: int) -> int | None:
        """How many of `wanted` bytes may pass to `sink` now (waiting while held); None once
        its connection is cut."""
        with self._lock:
            while self._budget is not None and self._budget <= 0:
                self._held.set()
                self._lock.wait(0.1)
                if sink not in self._sockets:
                    return None
            if self._budget is None:
                return wanted
            allowed = min(wanted, self._budget)
            self._budget -= allowed
            return allowed


@contextlib.contextmanager
def relay(target: int) -> Iterator[Relay]:
    each = Relay(target)
    try:
        yield each
    finally:
        each.close()


def port_of(server: Server) -> int:
    return int(server.host.rpartition(":")[2])


def requests_in_log(server: Server, method: str, path: str) -> int:
    """How many `method path` requests a server's access log shows answered (2xx, or 3xx: a
    redirect to the storage), not refused: moorage's lines hold `METHOD PATH STATUS`,
    distribution's (combined log format) `"METHOD PATH HTTP/1.1" STATUS`."""
    line = re.compile(rf'{re.escape(method)} {re.escape(path)}(?: HTTP/[0-9.]+")? [23][0-9][0-9] ')
    return len(line.findall(server.logs()))


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not in {timeout}s: {what}"
        time.sleep(0.1)
