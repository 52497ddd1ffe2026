"""Building the registry from the config tree and serving it."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from moorage.api.app import create_app
from moorage.api.context import Settings
from moorage.config.schema import Config
from moorage.registry.repository import Registry
from moorage.storage import driver as drivers

log = logging.getLogger("moorage")


def split_addr(addr: str) -> tuple[str, int]:
    """`host:port` to its parts; an empty host (`:5000`) means every interface."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"http.addr: expected host:port, got {addr!r}")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)


def build_registry(config: Config) -> Registry:
    try:
        driver = drivers.create(config.storage.driver, config.storage.parameters)
    except ValueError as exc:
        raise SystemExit(f"moorage: {exc}") from None
    return Registry(driver, deletes=config.storage.delete.enabled)


def build_app(config: Config) -> web.Application:
    settings = Settings(
        readonly=config.storage.maintenance.readonly.enabled,
        catalog_max_entries=config.catalog.maxentries,
    )
    return create_app(build_registry(config), settings)


def describe_storage(config: Config) -> str:
    root = config.storage.parameters.get("rootdirectory")
    return f"{config.storage.driver} at {root}" if root else config.storage.driver


async def serve(config: Config) -> None:
    """Serves until SIGINT or SIGTERM."""
    host, port = split_addr(config.http.addr)
    runner = web.AppRunner(build_app(config), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    log.info("moorage listening on http://%s:%d, storage %s", host, port, describe_storage(config))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("moorage stopping")
        await runner.cleanup()
