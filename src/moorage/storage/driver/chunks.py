"""A writer's buffer of received bytes, from which fixed pieces are taken for an object store
without growing one large buffer (whose reallocations hold two copies at once) and, where the
piece is sent as it is, without joining it."""

from __future__ import annotations

from collections import deque


class Chunks:
    """Bytes received, kept as the chunks they came in."""

    def __init__(self, initial: bytes = b"") -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self.append(initial)

    def __len__(self) -> int:
        return self._size

    def append(self, data: bytes) -> None:
        if data:
            self._chunks.append(data)
            self._size += len(data)

    def take(self, length: int) -> list[bytes]:
        """The first `length` bytes (at most what is held), as chunks, removed from the
        buffer."""
        taken: list[bytes] = []
        needed = min(length, self._size)
        self._size -= needed
        while needed:
            chunk = self._chunks.popleft()
            if len(chunk) > needed:
                self._chunks.appendleft(chunk[needed:])
                chunk = chunk[:needed]
            taken.append(chunk)
            needed -= len(chunk)
        return taken

    def put_back(self, chunks: list[bytes]) -> None:
        """Returns taken chunks to the front (a piece that could not be stored)."""
        for chunk in reversed(chunks):
            self._chunks.appendleft(chunk)
            self._size += len(chunk)

    def value(self) -> bytes:
        """Every byte held, which stay held."""
        whole = b"".join(self._chunks)
        self._chunks = deque([whole] if whole else [])
        return whole
