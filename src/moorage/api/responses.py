"""Streaming blob bodies: zero-copy `sendfile` from a local file, chunks from any other driver.

Nothing here holds a body whole: a file goes to the socket by the kernel, a driver's chunks are
written one at a time with backpressure.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Mapping

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from moorage.registry.blobs import Arriving
from moorage.registry.errors import BlobRangeNotSatisfiable, RegistryError

FALLBACK_CHUNK = 1 << 20
# At most 19 digits a position (int64 has 19): longer numbers are no range a blob can satisfy.
_RANGE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte of a single `bytes=` range, or None to serve the whole
    blob (no Range, another unit, or several ranges, which a server may ignore). A range that
    cannot be satisfied raises BlobRangeNotSatisfiable."""
    if not header or not header.strip().startswith("bytes=") or "," in header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if not match or match.group(1) == match.group(2) == "":
        raise BlobRangeNotSatisfiable(size)
    first_text, last_text = match.groups()
    if first_text == "":  # suffix: the last N bytes
        length = int(last_text)
        if length == 0 or size == 0:
            raise BlobRangeNotSatisfiable(size)
        return max(0, size - length), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first >= size or last < first:
        raise BlobRangeNotSatisfiable(size)
    return first, min(last, size - 1)


class FileResponse(web.StreamResponse):
    """Sends `count` bytes of a local file from `offset`: by sendfile on a plain connection, by
    1 MiB reads where the transport cannot (TLS in the process, or no sendfile)."""

    def __init__(
        self, path: str, offset: int, count: int, status: int, headers: Mapping[str, str]
    ) -> None:
        super().__init__(status=status, headers=headers)
        self._path = path
        self._offset = offset
        self._count = count
        self.content_length = count

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        with open(self._path, "rb") as file:
            writer = await super().prepare(request)
            assert writer is not None
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("connection lost")
            # loop.sendfile refuses a count of 0: an empty blob has no body to send anyway.
            use_sendfile = (
                self._count > 0
                and transport.get_extra_info("sslcontext") is None
                and not os.environ.get("AIOHTTP_NOSENDFILE")
            )
            sent = False
            if use_sendfile:
                try:
                    await request._loop.sendfile(transport, file, self._offset, self._count)
                    sent = True
                except NotImplementedError:
                    pass
            if not sent:
                file.seek(self._offset)
                remaining = self._count
                while remaining > 0:
                    chunk = file.read(min(FALLBACK_CHUNK, remaining))
                    if not chunk:
                        break
                    await writer.write(chunk)
                    remaining -= len(chunk)
            await super().write_eof()
            return writer


async def stream_chunks(
    request: web.Request,
    chunks: AsyncIterator[bytes],
    count: int,
    status: int,
    headers: Mapping[str, str],
    response: web.StreamResponse | None = None,
) -> web.StreamResponse:
    """Writes `count` bytes from the chunk iterator (which starts at the first byte to send),
    on `response` when it is prepared already. When the iterator raises a RegistryError (the
    bytes cannot be had: a pull-through cache's upstream failed), the connection is cut, since
    the status is sent: the client sees a body shorter than announced."""
    if response is None:
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = count
        await response.prepare(request)
    remaining = count
    try:
        async for chunk in chunks:
            if remaining <= 0:
                break
            piece = chunk[:remaining]
            await response.write(piece)
            remaining -= len(piece)
    except RegistryError:
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


async def stream_arriving(
    request: web.Request,
    arriving: Arriving,
    first: int,
    count: int,
    status: int,
    headers: Mapping[str, str],
) -> web.StreamResponse:
    """Writes `count` bytes from `first` of a blob while it arrives: each part by sendfile from
    the file it arrives in as soon as it is there, or in chunks where sendfile cannot work (TLS
    in the process). When the blob cannot be completed the connection is cut (see
    stream_chunks)."""
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = count
    await response.prepare(request)
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("connection lost")
    if transport.get_extra_info("sslcontext") is not None or os.environ.get("AIOHTTP_NOSENDFILE"):
        return await stream_chunks(
            request, arriving.chunks(first), count, status, headers, response
        )
    loop = asyncio.get_running_loop()
    position, end = first, first + count
    try:
        while position < end:
            ready = min(await arriving.ready(position), end)
            if ready <= position:
                break  # the blob ended: only a defect gets here, the length was known
            try:
                await loop.sendfile(
                    transport, arriving.file, position, ready - position, fallback=False
                )
            except asyncio.SendfileNotAvailableError:
                return await stream_chunks(
                    request, arriving.chunks(position), end - position, status, headers, response
                )
            position = ready
    except RegistryError:
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response
