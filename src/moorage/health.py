"""Health checks, as distribution's `health` section configures them: the storage driver, files
that must not exist, HTTP URIs that must answer a status, TCP addresses that must accept.

Each check probes on its own interval and turns unhealthy once `threshold` probes in a row have
failed (a threshold of 0 counts as 1); one passing probe makes it healthy again. While any
periodic check is unhealthy the API answers 503, and `/debug/health` names each failing check
with its error, in distribution's shape."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence

import aiohttp

from moorage.storage import paths
from moorage.storage.driver import PathNotFound, StorageDriver

log = logging.getLogger("moorage.health")

Probe = Callable[[], Awaitable[None]]  # raises HealthError, or anything, when unhealthy


class HealthError(Exception):
    """A probe's finding, worded as distribution words it."""


class Check:
    """One named probe and its state. `interval` None: probed only when asked (`probe`)."""

    def __init__(
        self, name: str, probe: Probe, interval: float | None = None, threshold: int = 0
    ) -> None:
        self.name = name
        self._probe = probe
        self.interval = interval
        self.threshold = max(threshold, 1)
        self.failures = 0
        self.last_error = ""

    @property
    def ok(self) -> bool:
        return self.failures < self.threshold

    async def probe(self) -> None:
        try:
            await self._probe()
        except Exception as exc:  # any failure of what is probed counts against it
            self.failures += 1
            self.last_error = str(exc) or type(exc).__name__
            if self.failures == self.threshold:
                log.error("health check failing: %s: %s", self.name, self.last_error)
            return
        if not self.ok:
            log.info("health check passing again: %s", self.name)
        self.failures = 0
        self.last_error = ""

    async def run(self) -> None:
        assert self.interval is not None
        while True:
            await self.probe()
            await asyncio.sleep(self.interval)


class Health:
    """The registry's health: the periodic checks' state, plus checks probed on request."""

    def __init__(self, checks: Sequence[Check], on_request: Sequence[Check] = ()) -> None:
        self.checks = list(checks)
        self.on_request = list(on_request)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def errors(self) -> dict[str, str]:
        """distribution's shape: check name -> error, empty when healthy."""
        return {check.name: check.last_error for check in self.checks if not check.ok}

    async def report(self) -> dict[str, str]:
        """The periodic checks' errors and those of the on-request checks, probed now."""
        for check in self.on_request:
            await check.probe()
        failing = {check.name: check.last_error for check in self.on_request if not check.ok}
        return {**self.errors, **failing}

    async def run(self) -> None:
        await asyncio.gather(*(check.run() for check in self.checks))


def storage_probe(driver: StorageDriver) -> Probe:
    """Stats the registry's root (absent on a new registry, which is healthy)."""

    async def probe() -> None:
        with contextlib.suppress(PathNotFound):
            await driver.stat(paths.ROOT)

    return probe


def file_probe(path: str) -> Probe:
    """Unhealthy while the file exists."""
    absolute = os.path.abspath(path)

    async def probe() -> None:
        if await asyncio.to_thread(os.path.lexists, absolute):
            raise HealthError("file exists")

    return probe


def http_probe(
    uri: str, status: int, timeout: float, headers: Mapping[str, Sequence[str]]
) -> Probe:
    """Unhealthy unless a HEAD of `uri` answers `status` within `timeout` seconds."""
    sent = [(name, value) for name, values in headers.items() for value in values]

    async def probe() -> None:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                session.head(uri, headers=sent, allow_redirects=True) as response,
            ):
                answered = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise HealthError(f"{uri}: error while checking: {exc or type(exc).__name__}") from None
        if answered != status:
            raise HealthError(f"{uri}: downstream service returned unexpected status: {answered}")

    return probe


def tcp_probe(addr: str, timeout: float) -> Probe:
    """Unhealthy unless a TCP connection to `addr` (host:port) opens within `timeout`."""
    host, _, port = addr.rpartition(":")

    async def probe() -> None:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port)), timeout
            )
        except (OSError, TimeoutError) as exc:
            raise HealthError(f"{addr}: connection failed: {exc or 'timed out'}") from None
        writer.close()

    return probe
