"""The registry's metrics, in Prometheus form, on a registry of their own (one per server).

With several worker processes, each process's values live in files of one shared directory
(prometheus_client's multiprocess mode), and the exposed registry sums them all, so /metrics
answers the same whichever worker serves it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_UPLOAD_WRITES = ("PATCH", "PUT", "POST")
# Methods a label may name; any other a client sends is counted as "other", so that clients
# cannot make series without bound.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def body_bytes(method: str, response: web.StreamResponse) -> int:
    """The response body's length, headers excluded: none for HEAD, 204 and 304. aiohttp's
    `body_length` counts headers and misses what sendfile sent, so the declared length is used."""
    if method == "HEAD" or response.status in (204, 304):
        return 0
    if response.content_length is not None:
        return response.content_length
    return response.body_length  # chunked: what was written, headers included


class Metrics:
    def __init__(self, shared_dir: str | None = None) -> None:
        """`shared_dir`: the directory of a worker process's values (multiprocess mode). The
        library takes its place from the environment; a worker serves one registry, so the
        process-wide switch is this one's to make."""
        own = CollectorRegistry()
        if shared_dir is None:
            self.registry = own
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared_dir
            # Each value asks for the pid on every update, to follow forks; a worker never
            # forks, and getpid is a system call per update: answer from memory instead.
            pid = os.getpid()
            values.ValueClass = values.MultiProcessValue(lambda: pid)  # type: ignore[no-untyped-call]
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry, path=shared_dir)  # type: ignore[no-untyped-call]
        self.requests = Counter(
            "moorage_http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=own,
        )
        self.latency = Histogram(
            "moorage_http_request_duration_seconds",
            "Time to answer an HTTP request, by route, method and status.",
            ["route", "method", "status"],
            registry=own,
        )
        self.bytes_in = Counter(
            "moorage_http_request_bytes_total",
            "Request body bytes received, by route.",
            ["route"],
            registry=own,
        )
        self.bytes_out = Counter(
            "moorage_http_response_bytes_total",
            "Response body bytes sent, by route.",
            ["route"],
            registry=own,
        )
        self.uploads_in_flight = Gauge(
            "moorage_uploads_in_flight",
            "Blob upload requests being received now.",
            registry=own,
            multiprocess_mode="livesum",
        )
        self.storage = Histogram(
            "moorage_storage_operation_duration_seconds",
            "Storage driver operation latency, by driver and operation.",
            ["driver", "operation"],
            registry=own,
        )
        self.cache = Counter(
            "moorage_cache_requests_total",
            "Cache look-ups by cache and result (hit or miss).",
            ["cache", "result"],
            registry=own,
        )
        self.proxy = Counter(
            "moorage_proxy_requests_total",
            "Pull-through cache answers by upstream, kind (manifest, blob, tags) and result: "
            "cached (from the cache), fetched (from the upstream), confirmed (held content "
            "linked once the upstream confirmed it), stale (from the cache, the upstream "
            "failing), failed.",
            ["upstream", "kind", "result"],
            registry=own,
        )
        self.proxy_bytes = Counter(
            "moorage_proxy_fetched_bytes_total",
            "Blob bytes fetched from each upstream.",
            ["upstream"],
            registry=own,
        )

        self.notifications_sent = Counter(
            "moorage_notifications_sent_total",
            "Events an endpoint accepted, by endpoint.",
            ["endpoint"],
            registry=own,
        )
        self.notifications_failed = Counter(
            "moorage_notifications_failed_total",
            "Events in deliveries that failed (each attempt counts), by endpoint.",
            ["endpoint"],
            registry=own,
        )
        self.notifications_dropped = Counter(
            "moorage_notifications_dropped_total",
            "Events dropped unsent because the spool held too many for the endpoint.",
            ["endpoint"],
            registry=own,
        )
        self.notifications_pending = Gauge(
            "moorage_notifications_pending",
            "Events spooled for an endpoint and not yet delivered, by endpoint.",
            ["endpoint"],
            registry=own,
            multiprocess_mode="livemax",
        )
        self.notifications_latency = Histogram(
            "moorage_notifications_delivery_seconds",
            "Time from an event to its endpoint accepting it, by endpoint.",
            ["endpoint"],
            registry=own,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
        )

        # labelled children, looked up once: `labels()` validates and locks on every call
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    def register(self, collector: Collector) -> None:
        """Adds a collector whose values the process computes itself (not per worker file)."""
        self.registry.register(collector)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _per_request(self, route: str, method: str, status: int) -> tuple[Any, Any, Any]:
        """The latency, count and bytes-out children of one kind of request, looked up once."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            labels = (route, method, str(status))
            children = self._request_children[key] = (
                self.latency.labels(*labels),
                self.requests.labels(*labels),
                self.bytes_out.labels(route),
            )
        return children

    def observe_storage(self, driver: str, operation: str, seconds: float) -> None:
        self._child(self.storage, driver, operation).observe(seconds)

    def observe_cache(self, cache: str, hit: bool) -> None:
        self._child(self.cache, cache, "hit" if hit else "miss").inc()

    def observe_proxy(self, upstream: str, kind: str, result: str) -> None:
        self._child(self.proxy, upstream, kind, result).inc()

    def observe_proxy_bytes(self, upstream: str, count: int) -> None:
        self._child(self.proxy_bytes, upstream).inc(count)

    # moorage.notifications.sinks.DeliveryMetrics
    def sent(self, endpoint: str, count: int, latencies: list[float]) -> None:
        self._child(self.notifications_sent, endpoint).inc(count)
        latency = self._child(self.notifications_latency, endpoint)
        for seconds in latencies:
            latency.observe(seconds)

    def failed(self, endpoint: str, count: int) -> None:
        self._child(self.notifications_failed, endpoint).inc(count)

    def dropped(self, endpoint: str, count: int) -> None:
        self._child(self.notifications_dropped, endpoint).inc(count)

    def pending(self, endpoint: str, count: int) -> None:
        self._child(self.notifications_pending, endpoint).set(count)

    def middleware(self) -> Middleware:
        @web.middleware
        async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
            route = request.get("route")  # set by the request id middleware, outside this one
            if route is None:
                resource = request.match_info.route.resource
                route = resource.canonical if resource is not None else "unmatched"
            upload = request.method in _UPLOAD_WRITES and "/blobs/uploads/" in route
            if upload:
                self.uploads_in_flight.inc()
            start = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            finally:
                if upload:
                    self.uploads_in_flight.dec()
                elapsed = time.perf_counter() - start
                method = request.method if request.method in _METHODS else "other"
                latency, count, sent = self._per_request(route, method, status)
                latency.observe(elapsed)
                count.inc()
                received = self._child(self.bytes_in, route)
                if request.content_length:
                    received.inc(request.content_length)
                if status < 500:
                    sent.inc(body_bytes(request.method, response))

        return measure
