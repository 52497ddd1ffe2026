"""Building the registry from the config tree and serving it: the API listener (TCP or unix
socket, TLS when configured), the debug listener, the health checks, and a graceful drain on
SIGTERM."""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import logging
import os
import re
import signal
import socket
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from moorage import health, ui
from moorage.api.app import create_app
from moorage.api.context import Settings, absolute_url
from moorage.auth import controllers as auth
from moorage.config.schema import CIPHER_SUITES, Config, GarbageCollection
from moorage.config.secrets import Redactor, check_private
from moorage.debug import create_debug_app
from moorage.drain import InFlight
from moorage.durations import seconds
from moorage.health import Check, Health
from moorage.lifecycle import lease, schedule
from moorage.lifecycle.gc import Options, Pass
from moorage.lifecycle.maintenance import Maintenance
from moorage.lifecycle.usage import UsageCollector
from moorage.logs import access_logger
from moorage.metrics import Metrics
from moorage.proxy import PullThrough
from moorage.proxy import from_config as pull_through
from moorage.registry import purge
from moorage.registry.catalog import FileNames, SharedNames
from moorage.registry.manifest_store import IndexChildren, LayerURLs
from moorage.registry.repository import Registry
from moorage.storage import cache as caches
from moorage.storage import driver as drivers
from moorage.storage import middleware
from moorage.storage.cache import BlobDescriptorCache, MeasuredCache
from moorage.storage.cache.generation import Generation, GenerationalCache
from moorage.storage.cache.inmemory import InMemoryCache
from moorage.storage.cache.redis import RedisCache, RedisNames
from moorage.storage.driver.base import ValidatingDriver
from moorage.storage.driver.instrumented import InstrumentedDriver

if TYPE_CHECKING:
    from moorage.notifications import Notifications

log = logging.getLogger("moorage")
RECEIVE_BUFFER = 1 << 20  # request bodies arrive in chunks of up to this size
# What requests still running when the drain times out get before they are cut.
CUT_GRACE = 1.0

TLS_VERSIONS = {
    "tls1.0": ssl.TLSVersion.TLSv1,
    "tls1.1": ssl.TLSVersion.TLSv1_1,
    "tls1.2": ssl.TLSVersion.TLSv1_2,
    "tls1.3": ssl.TLSVersion.TLSv1_3,
}


class StartupError(Exception):
    """The configuration is valid but cannot be put to work (a bad driver parameter, a TLS
    file that does not load): one line that says why."""


def split_addr(addr: str) -> tuple[str | None, int]:
    """`host:port` to its parts; an empty host (`:5000`) is None: every interface, IPv4 and
    IPv6, as distribution listens."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise StartupError(f"http.addr: expected host:port, got {addr!r}")
    return host.strip("[]") or None, int(port)


def tls_context(config: Config, strict_secrets: bool) -> ssl.SSLContext | None:
    tls = config.http.tls
    if not tls.certificate:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    files = [("certificate", tls.certificate), ("key", tls.key)]
    files += [(f"clientcas[{index}]", ca) for index, ca in enumerate(tls.clientcas)]
    for key, path in files:
        _readable_file(f"http.tls.{key}", path)
    try:
        check_private(tls.key, "TLS private key", strict_secrets)
        context.load_cert_chain(tls.certificate, tls.key)
    except OSError as exc:
        raise StartupError(
            f"http.tls: cannot load {exc.filename or 'file'}: {exc.strerror}"
        ) from exc
    except ssl.SSLError as exc:
        raise StartupError(
            f"http.tls.certificate, key: certificate or key not usable: {exc.reason}"
        ) from exc
    for index, ca in enumerate(tls.clientcas):
        try:
            context.load_verify_locations(ca)
        except ssl.SSLError as exc:
            raise StartupError(
                f"http.tls.clientcas[{index}]: {ca}: not a usable CA certificate: {exc.reason}"
            ) from exc
    minimum = tls.minimumtls.lower() or "tls1.2"
    if minimum not in TLS_VERSIONS:
        raise StartupError(f"http.tls.minimumtls: expected one of {', '.join(TLS_VERSIONS)}")
    context.minimum_version = TLS_VERSIONS[minimum]
    suites = [CIPHER_SUITES[name] for name in tls.ciphersuites if CIPHER_SUITES[name]]
    if suites:
        try:
            context.set_ciphers(":".join(suites))
        except ssl.SSLError:
            raise StartupError(
                "http.tls.ciphersuites: none of these suites is available in this OpenSSL"
            ) from None
    if tls.clientcas:
        optional = tls.clientauth == "verify-client-cert-if-given"
        context.verify_mode = ssl.CERT_OPTIONAL if optional else ssl.CERT_REQUIRED
    return context


def cors_origins(config: Config) -> frozenset[str]:
    """The origins whose pages may call the API from a browser: `ui.cors.origins`, and those
    `http.headers` names in Access-Control-Allow-Origin (distribution's way to allow one)."""
    origins = set(config.ui.cors.origins)
    for name, values in config.http.headers.items():
        if name.lower() == "access-control-allow-origin":
            origins.update(value.strip() for value in values if value.strip())
    return frozenset(origins)


def _readable_file(key: str, path: str) -> None:
    """Raises StartupError naming the key unless `path` is a file this process can read."""
    if not path:
        raise StartupError(f"{key}: required")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise StartupError(f"{key}: {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class Worker:
    """What one of several worker processes serving one registry (moorage/workers.py) gets:
    its number, the run directory the workers share, and its listening sockets, already
    bound."""

    index: int
    rundir: str
    api: list[socket.socket] = field(default_factory=list)
    debug: list[socket.socket] = field(default_factory=list)

    def path(self, name: str) -> str:
        return os.path.join(self.rundir, name)


class Server:
    """Everything `moorage serve` runs, built from one config: the whole server, or one
    `worker` process of several."""

    def __init__(
        self,
        config: Config,
        redactor: Redactor,
        *,
        strict_secrets: bool = False,
        create_files: bool = True,
        worker: Worker | None = None,
    ):
        """Builds every part the config names, without connecting to anything: a config that
        builds here fails in `run` only for what the network or the disk says then. With
        `create_files` false (`moorage config check`), nothing is written either."""
        self.config = config
        self.worker = worker
        if config.http.net != "unix":
            split_addr(config.http.addr)
        self.metrics = Metrics(worker.path("metrics") if worker else None)
        try:
            raw = drivers.create(config.storage.driver, config.storage.parameters)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        driver = InstrumentedDriver(raw, self.metrics.observe_storage)
        cache = self._cache(config)
        # the process that runs what one per server runs: purging, usage, retention
        self.first = worker is None or worker.index == 0
        self.maintenance = Maintenance(
            config,
            driver,
            first=self.first,
            shared_usage=worker.path("usage.json") if worker else None,
        )
        shared: SharedNames | None = None
        if isinstance(cache, MeasuredCache) and isinstance(cache.inner, RedisCache):
            shared = RedisNames(cache.inner.client)
        elif worker is not None:
            shared = FileNames(worker.path("repositories"))
        try:
            self.redirection = middleware.chain(
                driver.redirect_url,
                [(entry.name, entry.options) for entry in config.middleware.active_storage],
                raw.inner if isinstance(raw, ValidatingDriver) else raw,
            )
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        self.registry = Registry(
            driver,
            deletes=config.storage.delete.enabled,
            cache=cache,
            shared_names=shared,
            gc_delay=seconds(config.storage.maintenance.gc.delay),
            admission=self.maintenance.admission,
            pull_log=self.maintenance.pull_log,
            layer_urls=layer_urls(config),
            index_children=index_children(config),
            redirector=self.redirection.redirector,
        )
        if self.maintenance.usage is not None:
            self.metrics.register(UsageCollector(self.maintenance.usage, self.maintenance.quotas))
        # Passes run right before each scheduled garbage collection, under its lease (retention
        # policies untag there): lifecycle.gc.Pass.
        self.before_collection: list[Pass] = self.maintenance.before_collection()
        self.health = health_checks(config, driver)
        self.tls = tls_context(config, strict_secrets)
        http = config.http
        prefix = "/" + http.prefix.strip("/") if http.prefix.strip("/") else ""
        self.settings = Settings(
            readonly=config.storage.maintenance.readonly.enabled,
            catalog_max_entries=config.catalog.maxentries,
            prefix=prefix,
            host=http.host,
            relative_urls=http.relativeurls,
            headers=http.headers,
            secret=http.secret.encode(),
            redirect=not config.storage.redirect.disable,
            trusted_proxies=[ipaddress.ip_network(n, strict=False) for n in http.trustedproxies],
            cors_origins=cors_origins(config),
        )
        try:
            self.access = auth.create(config.auth, absolute_url, create_files=create_files)
            self.cache: PullThrough | None = pull_through(config, self.registry, self.metrics)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        self.notifications = notifications(config, create_files)
        self.ui = ui.from_config(
            config,
            self.registry,
            self.access,
            prefix=prefix,
            usage=self.maintenance.usage,
            quotas=self.maintenance.quotas,
            records_pulls=self.maintenance.pull_log is not None,
        )
        self.app = create_app(
            self.registry,
            self.settings,
            metrics=self.metrics,
            health=self.health if self.health.checks else None,
            access=self.access,
            usage=self.maintenance.usage,
            quotas=self.maintenance.quotas,
            namespace=self.cache,
            wrapper=self.notifications.recorder.wrap if self.notifications else None,
            pages=self.ui,
        )
        self.debug_app = (
            create_debug_app(config, redactor, self.metrics, self.health)
            if http.debug.addr
            else None
        )

    def _cache(self, config: Config) -> BlobDescriptorCache | None:
        settings = config.storage.cache
        if not settings.blobdescriptor:
            return None
        try:
            cache = caches.create(
                settings.blobdescriptor,
                {"size": settings.blobdescriptorsize, "redis": config.redis},
            )
        except KeyError:
            raise StartupError(
                f"storage.cache.blobdescriptor: {settings.blobdescriptor!r} is not available"
            ) from None
        except ValueError as exc:  # the cache's settings (e.g. redis.addr missing)
            raise StartupError(str(exc)) from None
        if self.worker is not None and isinstance(cache, InMemoryCache):
            generation = Generation(self.worker.path("cache-generation"))
            return MeasuredCache(GenerationalCache(cache, generation), self.metrics.observe_cache)
        return MeasuredCache(cache, self.metrics.observe_cache)

    def describe(self, workers: int | None = None) -> str:
        """The start-up line; the web UI's address last, to be opened from it."""
        root = self.config.storage.parameters.get("rootdirectory")
        storage = self.config.storage.driver + (f" at {root}" if root else "")
        http = self.config.http
        # a browser cannot open the wildcard address: the UI's address names the machine
        pages_at = ""
        if http.net == "unix":
            where = f"unix:{http.addr}"
        else:
            host, port = split_addr(http.addr)
            scheme = "https" if self.tls else "http"
            where = f"{scheme}://{host or '*'}:{port}{self.settings.prefix}"
            pages_at = f"{scheme}://{host or 'localhost'}:{port}"
        debug = f", debug on {http.debug.addr}" if http.debug.addr else ""
        processes = f", {workers} workers" if workers is not None else ""
        pages = f", web UI at {pages_at}{self.ui.path}/" if self.ui is not None else ""
        return f"moorage listening on {where}, storage {storage}{debug}{processes}{pages}"

    async def _warm_catalog(self) -> None:
        """Builds the catalog index in the background at start, so that the first catalog
        request does not wait for a walk of storage."""
        try:
            await self.registry.repositories()
        except Exception:
            log.exception("building the catalog index failed; the first request will retry")

    async def _notify(self, stop: asyncio.Event) -> None:
        """Delivers the events of this (only) process until `stop` is set."""
        assert self.notifications is not None
        try:
            await self.notifications.notifier(self.metrics).run(stop)
        except Exception:
            log.exception("notifications: delivery stopped")

    async def run(self, stop: asyncio.Event) -> None:
        """Serves until `stop` is set, then stops accepting and lets requests in flight finish
        for up to `http.draintimeout` (those still running then are cut)."""
        http = self.config.http
        drain = seconds(http.draintimeout) or 0.5
        in_flight = InFlight()
        self.app.middlewares.insert(0, in_flight.middleware)
        runner = web.AppRunner(
            self.app,
            access_log_class=access_logger(self.settings.trusted_proxies),
            access_log=logging.getLogger("moorage.access"),
            handle_signals=False,
            read_bufsize=RECEIVE_BUFFER,
            shutdown_timeout=CUT_GRACE,
        )
        await runner.setup()
        sites: list[web.BaseSite]
        if self.worker is not None:
            sites = [web.SockSite(runner, sock, ssl_context=self.tls) for sock in self.worker.api]
        elif http.net == "unix":
            sites = [web.UnixSite(runner, http.addr, ssl_context=self.tls)]
        else:
            host, port = split_addr(http.addr)
            sites = [web.TCPSite(runner, host, port, ssl_context=self.tls, reuse_address=True)]
        runners = [runner]
        tasks = []
        notify_stop = asyncio.Event()
        notifier: asyncio.Task[None] | None = None
        try:
            for site in sites:
                await site.start()
            if self.debug_app is not None:
                debug = web.AppRunner(self.debug_app, access_log=None, handle_signals=False)
                await debug.setup()
                runners.append(debug)
                if self.worker is not None:
                    for sock in self.worker.debug:
                        await web.SockSite(debug, sock).start()
                else:
                    debug_host, debug_port = split_addr(http.debug.addr)
                    await web.TCPSite(debug, debug_host, debug_port, reuse_address=True).start()
            if self.health.checks:
                tasks.append(asyncio.create_task(self.health.run()))
            tasks.append(asyncio.create_task(self._warm_catalog()))
            tasks += [asyncio.create_task(work()) for work in self.redirection.background]
            purging = self.config.storage.maintenance.uploadpurging
            if purging.enabled and not self.settings.readonly and self.first:
                tasks.append(
                    asyncio.create_task(
                        purge.run(
                            self.registry,
                            seconds(purging.age),
                            seconds(purging.interval),
                            purging.dryrun,
                        )
                    )
                )
            collecting = self.config.storage.maintenance.gc
            if collecting.enabled and not self.settings.readonly and self.first:
                tasks.append(asyncio.create_task(self._collect_garbage(collecting)))
            for work in self.maintenance.background(self.registry):
                tasks.append(asyncio.create_task(work))
            if self.cache is not None and self.first and not self.settings.readonly:
                tasks.append(asyncio.create_task(self.cache.run_expiry()))
            if self.notifications is not None and self.worker is None:
                # With several workers a process of its own delivers (moorage/workers.py).
                notifier = asyncio.create_task(self._notify(notify_stop))
                tasks.append(notifier)
            if self.worker is None:
                log.info(self.describe())
                if self.cache is not None:
                    log.info(self.cache.describe())
            await stop.wait()
            log.info("moorage stopping: draining requests for up to %.1fs", drain)
            for site in sites:
                await site.stop()
            if not await in_flight.drain(drain):
                log.warning("moorage stopping: cutting requests still running after %.1fs", drain)
            notify_stop.set()  # the notifier saves where each endpoint is
            if notifier is not None:
                await asyncio.wait([notifier], timeout=5)
        finally:
            for task in tasks:
                task.cancel()
            if self.notifications is not None:
                self.notifications.close()
            for each in reversed(runners):
                await each.cleanup()
            if self.registry.blobs.uses is not None:
                await self.registry.blobs.uses.close()
            await self.maintenance.close()
            if self.cache is not None:
                await self.cache.close()
            await self.registry.driver.close()
            if self.registry.blobs.cache is not None:
                await self.registry.blobs.cache.close()

    async def _collect_garbage(self, settings: GarbageCollection) -> None:
        """The scheduled garbage collection (lifecycle/schedule.py), until cancelled."""
        options = Options(seconds(settings.delay), settings.deleteuntagged, settings.dryrun)
        held, client = lease.from_config(self.config, self.registry.driver)
        try:
            interval = seconds(settings.interval)
            await schedule.run(
                self.registry,
                options,
                interval,
                held,
                self.before_collection,
                self.maintenance.retention,
            )
        finally:
            await held.release()
            if client is not None:
                await client.aclose()


def layer_urls(config: Config) -> LayerURLs:
    """distribution's URL rules for layers: filtered unless `validation.disabled` (and not
    `validation.enabled`, its older switch), and then with neither an allow nor a deny list no
    URL passes: as in distribution, a layer naming a URL is refused by default."""
    validation = config.validation
    urls = validation.manifests.urls
    if validation.disabled and not validation.enabled:
        return LayerURLs()

    def either(patterns: list[str]) -> re.Pattern[str] | None:
        return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None

    if not urls.allow and not urls.deny:
        return LayerURLs(allow=re.compile("^$"))
    return LayerURLs(allow=either(urls.allow), deny=either(urls.deny))


def index_children(config: Config) -> IndexChildren:
    """distribution's `validation.manifests.indexes.platforms`: `all` (the default) the
    manifests an index names must be in the repository, `none` none, `list` those of the
    platforms in `platformlist`."""
    indexes = config.validation.manifests.indexes
    if indexes.platforms == "none":
        return IndexChildren(required=False)
    if indexes.platforms == "list":
        listed = frozenset((p.architecture, p.os) for p in indexes.platformlist)
        return IndexChildren(platforms=listed)
    return IndexChildren()


def health_checks(config: Config, driver: drivers.StorageDriver) -> Health:
    """The `health` section's checks. The storage check, when not periodic, is probed on each
    `/debug/health` request instead (and then does not hold the API at 503)."""
    section = config.health
    storage = Check(f"storagedriver_{driver.name}", health.storage_probe(driver))
    periodic: list[Check] = []
    if section.storagedriver.enabled:
        storage.interval = seconds(section.storagedriver.interval) or 10.0
        storage.threshold = max(section.storagedriver.threshold, 1)
        periodic.append(storage)
    for file in section.file:
        probe = health.file_probe(file.file)
        periodic.append(Check(file.file, probe, seconds(file.interval) or 10.0, file.threshold))
    for http in section.http:
        probe = health.http_probe(http.uri, http.statuscode, seconds(http.timeout), http.headers)
        periodic.append(Check(http.uri, probe, seconds(http.interval) or 10.0, http.threshold))
    for tcp in section.tcp:
        probe = health.tcp_probe(tcp.addr, seconds(tcp.timeout))
        periodic.append(Check(tcp.addr, probe, seconds(tcp.interval) or 10.0, tcp.threshold))
    return Health(periodic, [] if section.storagedriver.enabled else [storage])


def notifications(config: Config, create_files: bool) -> Notifications | None:
    """The config's notifications (moorage.notifications), built only when endpoints are
    configured: a registry without them loads none of that code."""
    if not any(not endpoint.disabled for endpoint in config.notifications.endpoints):
        return None
    from moorage import notifications as room

    try:
        return room.from_config(config, create_files=create_files)
    except ValueError as exc:
        raise StartupError(str(exc)) from None


# glibc's mallopt(3) parameters.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20  # body chunks (256 KiB reads) come from the heap, not fresh mappings
TRIM_THRESHOLD = 32 << 20  # and freed heap is kept, up to this, for the next chunks


def tune_malloc() -> None:
    """Keeps the allocator from handing request-body chunks back to the kernel between reads.
    By default glibc maps and unmaps (or trims and regrows) memory for chunks this size, so
    every chunk of an upload costs page faults on fresh, zeroed pages: measured about 14,000
    faults per GiB pushed, and none with these settings. No-op where the C library is not
    glibc."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


async def serve(
    config: Config,
    redactor: Redactor,
    *,
    strict_secrets: bool = False,
    worker: Worker | None = None,
) -> None:
    """Serves until SIGINT or SIGTERM."""
    tune_malloc()
    server = Server(config, redactor, strict_secrets=strict_secrets, worker=worker)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.run(stop)
