"""The lifecycle parts a server runs, built from the config: usage kept current, quotas over
it, pull times recorded and retention applied. The server hands `admission` and `pull_log` to
the registry, runs `background` beside its requests, and `before_collection` and `retention`
with its scheduled garbage collection (retention untags there, right before each collection,
and tells the collector what it may remove)."""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from moorage.config.schema import Config
from moorage.durations import seconds
from moorage.lifecycle.gc import Pass
from moorage.lifecycle.pulls import PullRecorder
from moorage.lifecycle.quotas import QuotaGate, Quotas
from moorage.lifecycle.retention import Retention, enforce
from moorage.lifecycle.usage import UsageTracker
from moorage.registry.repository import Registry
from moorage.storage.driver import StorageDriver

log = logging.getLogger("moorage")


class Maintenance:
    def __init__(
        self,
        config: Config,
        driver: StorageDriver,
        *,
        first: bool = True,
        shared_usage: str | None = None,
    ) -> None:
        """`first`: this process is the one of its server that computes and enforces (the
        others follow); `shared_usage`: the run directory's file the workers share usage
        through."""
        maintenance = config.storage.maintenance
        self.first = first
        self.readonly = maintenance.readonly.enabled
        self.usage: UsageTracker | None = None
        if maintenance.usage.enabled:
            self.usage = UsageTracker(
                driver,
                seconds(maintenance.usage.interval),
                computes=first or shared_usage is None,
                shared=shared_usage,
            )
        self.quotas = Quotas.from_config(config.storage.quotas)
        self.admission = (
            QuotaGate(self.quotas, self.usage)
            if self.quotas.configured and self.usage is not None
            else None
        )
        settings = maintenance.retention
        self.retention = Retention.from_config(settings) if settings.policies else None
        # pull times: what retention's pull conditions read and the web UI shows
        records_pulls = self.retention is not None or config.ui.enabled
        self.pull_log = (
            PullRecorder(driver, seconds(settings.pullinterval))
            if records_pulls and not self.readonly
            else None
        )

    def background(self, registry: Registry) -> list[Coroutine[Any, Any, None]]:
        """What runs beside the requests until cancelled."""
        tasks = []
        if self.usage is not None:
            tasks.append(self.usage.run())
        if self.pull_log is not None:
            tasks.append(self.pull_log.run())
        return tasks

    def before_collection(self) -> list[Pass]:
        """The passes a scheduled garbage collection runs first, under its lease: retention's
        untagging, so that what it releases is collected in the same run."""
        retention = self.retention
        if retention is None:
            return []

        async def untag(registry: Registry, dryrun: bool) -> None:
            policies = Retention(retention.policies, dryrun=True) if dryrun else retention
            try:
                await enforce(registry, policies)
            except Exception:  # the collection goes on: it removes only what nothing keeps
                log.exception("retention failed; collecting garbage without it this time")

        return [untag]

    async def close(self) -> None:
        """Writes what is pending (pull times)."""
        if self.pull_log is not None:
            await self.pull_log.close()
