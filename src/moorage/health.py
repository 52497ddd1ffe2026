"""Health checks: the storage driver, probed periodically as `health.storagedriver` says."""

from __future__ import annotations

import asyncio
import logging

from moorage.storage import paths
from moorage.storage.driver import PathNotFound, StorageDriver

log = logging.getLogger("moorage.health")


class Health:
    """The registry's health: ok until `threshold` consecutive storage checks fail."""

    def __init__(self, driver: StorageDriver, threshold: int = 1) -> None:
        self.driver = driver
        self.threshold = max(threshold, 1)
        self.failures = 0
        self.last_error = ""

    @property
    def ok(self) -> bool:
        return self.failures < self.threshold

    @property
    def errors(self) -> dict[str, str]:
        """distribution's shape: check name -> error, empty when healthy."""
        return {} if self.ok else {f"storagedriver_{self.driver.name}": self.last_error}

    async def check(self) -> None:
        """One probe: stat the registry's root (absent on a new registry, which is healthy)."""
        try:
            await self.driver.stat(paths.ROOT)
        except PathNotFound:
            pass
        except Exception as exc:  # any failure of the backend counts
            self.failures += 1
            self.last_error = str(exc) or type(exc).__name__
            if self.failures == self.threshold:
                log.error("storage health check failing: %s", self.last_error)
            return
        if not self.ok:
            log.info("storage health check passing again")
        self.failures = 0
        self.last_error = ""

    async def run(self, interval: float) -> None:
        while True:
            await self.check()
            await asyncio.sleep(interval)
