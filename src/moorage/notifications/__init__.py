"""Notifications: distribution's `notifications` section. Events are recorded around the
repository services (listener), kept in a spool until delivered (spool) and POSTed to each
endpoint (sinks)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from moorage.config.schema import Config
from moorage.durations import seconds
from moorage.notifications import events
from moorage.notifications.events import Source
from moorage.notifications.listener import Filter, Recorder
from moorage.notifications.sinks import DeliveryMetrics, EndpointSettings, Log, Notifier
from moorage.notifications.spool import FileLog, InboxWriter
from moorage.registry.context import RequestContext

DEFAULT_DIRECTORY = "/var/lib/moorage/notifications"  # when the storage is not a filesystem


class Writer(Protocol):
    def append(self, lines: list[str]) -> Awaitable[None] | None:
        """None when the records are in the spool, else what is done when they are."""

    def close(self) -> None: ...


@dataclass
class Notifications:
    """What the config's endpoints need: the recorder the API wraps repositories with, and
    the notifier that delivers (in one process per spool)."""

    recorder: Recorder
    writer: Writer
    log: Callable[[], Log]
    endpoints: list[EndpointSettings]
    max_events: int

    def notifier(self, metrics: DeliveryMetrics) -> Notifier:
        return Notifier(self.log(), self.endpoints, metrics, self.max_events)

    def close(self) -> None:
        self.writer.close()


def spool_directory(config: Config) -> str:
    """`notifications.spool.directory`, or by default beside the data: under the filesystem
    driver's root (`moorage/notifications`, which distribution never looks at), a directory
    of the system's temporary one for `inmemory`, else DEFAULT_DIRECTORY."""
    configured = config.notifications.spool.directory
    if configured:
        return configured
    storage = config.storage
    if storage.driver == "filesystem":
        root = storage.parameters.get("rootdirectory") or "/var/lib/registry"
        return os.path.join(str(root), "moorage", "notifications")
    if storage.driver == "inmemory":
        return os.path.join(tempfile.gettempdir(), f"moorage-notifications-{os.getpid()}")
    return DEFAULT_DIRECTORY


def from_config(config: Config, *, create_files: bool = True) -> Notifications | None:
    """The notifications the config asks for; None when no endpoint is enabled. Raises
    ValueError naming the key for a spool that cannot be used."""
    section = config.notifications
    enabled = [endpoint for endpoint in section.endpoints if not endpoint.disabled]
    if not enabled:
        return None
    writer: Writer
    log: Callable[[], Log]
    records = events.Records(Source.of(config.http.addr).fields)  # the process's
    put: Callable[[str, RequestContext], None] | None = None  # a spool written at once
    if section.spool.driver == "redis":
        writer, log = _redis(config)
    else:
        directory = spool_directory(config)
        if create_files:
            try:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise ValueError(
                    f"notifications.spool.directory: cannot create {directory}: {exc.strerror}"
                ) from None
        inbox = InboxWriter(directory, records)
        writer, put = inbox, inbox.record

        def log() -> Log:
            return FileLog(directory)

    endpoints = [
        EndpointSettings(
            name=endpoint.name,
            url=endpoint.url,
            headers=endpoint.headers,
            timeout=seconds(endpoint.timeout) if seconds(endpoint.timeout) > 0 else 1.0,
            threshold=endpoint.threshold if endpoint.threshold > 0 else 10,
            backoff=seconds(endpoint.backoff) if seconds(endpoint.backoff) > 0 else 1.0,
            filter=Filter(
                actions=frozenset(endpoint.ignore.actions),
                media_types=frozenset([*endpoint.ignore.mediatypes, *endpoint.ignoredmediatypes]),
            ),
        )
        for endpoint in enabled
    ]
    recorder = Recorder(
        append=writer.append,
        put=put,
        filters=[endpoint.filter for endpoint in endpoints],
        include_references=section.events.includereferences,
        records=records,
    )
    return Notifications(recorder, writer, log, endpoints, section.spool.maxevents)


def _redis(config: Config) -> tuple[Writer, Callable[[], Log]]:
    """The spool in the `redis` section's Redis (moorage.notifications.redis)."""
    from moorage.notifications.redis import RedisLog, RedisWriter
    from moorage.storage.cache.redis import connect

    if not (config.redis.addr or config.redis.addrs):
        raise ValueError("notifications.spool.driver: redis needs the redis section (redis.addr)")
    writer = RedisWriter(connect(config.redis), config.notifications.spool.maxevents)
    return writer, lambda: RedisLog(connect(config.redis))
