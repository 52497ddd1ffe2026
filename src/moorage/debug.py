"""The debug server (`http.debug.addr`): health, Prometheus metrics and the redacted config.

It listens apart from the API so that it can be bound where only operators reach it."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from moorage.config.schema import Config
from moorage.config.secrets import Redactor, shown
from moorage.health import Health
from moorage.metrics import Metrics


def create_debug_app(
    config: Config, redactor: Redactor, metrics: Metrics, health: Health
) -> web.Application:
    async def health_view(request: web.Request) -> web.Response:
        # Periodic checks answer with their state: probing here too would count extra failures
        # against `threshold`. A storage check that is not periodic is probed now.
        errors = await health.report()
        return web.json_response(errors, status=503 if errors else 200)

    async def metrics_view(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def config_view(request: web.Request) -> web.Response:
        return web.json_response(shown(config.as_tree(), redactor))

    app = web.Application()
    app.router.add_get("/debug/health", health_view)
    app.router.add_get("/debug/config", config_view)
    if config.http.debug.prometheus.enabled:
        app.router.add_get(config.http.debug.prometheus.path, metrics_view)
    return app
