"""The built-in web UI: server-rendered pages over the registry's services, on the API's
listener at `ui.path` (default `/ui/`) under `http.prefix`, signing visitors in with the
registry's own access control (moorage.ui.gates).

    sessions.py  the signed session cookie and its CSRF token
    gates.py     who may see and do what, per `auth` section
    model.py     what a page shows, from the registry's services
    versions.py  tags in version order
    pages.py     the handlers, the templates/ and static/ beside them

The pages are a sub-application mounted at their path: the API's routes resolve as before
(aiohttp's router finds a route by the request path's first segments, and `/v2/...` never
reaches the UI's), and the UI adds no middleware of the API's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from moorage.auth.controllers import AccessController
from moorage.config.schema import Config
from moorage.durations import seconds
from moorage.lifecycle.quotas import Quotas
from moorage.lifecycle.usage import UsageTracker
from moorage.registry.repository import Registry
from moorage.ui.gates import for_controller
from moorage.ui.pages import Options, Pages
from moorage.ui.sessions import Sessions

__all__ = ["WebUI", "from_config"]


@dataclass
class WebUI:
    path: str  # the URL path it is mounted at, under the prefix, without a trailing slash
    app: web.Application


def from_config(
    config: Config,
    registry: Registry,
    access: AccessController | None,
    *,
    prefix: str,
    usage: UsageTracker | None = None,
    quotas: Quotas | None = None,
    records_pulls: bool = False,
) -> WebUI | None:
    """The UI the config asks for (`ui`), or None when it is disabled. `prefix` is the API's
    (http.prefix, normalised: "" or "/path")."""
    settings = config.ui
    if not settings.enabled:
        return None
    path = prefix + settings.path.rstrip("/")
    sessions = Sessions(config.http.secret.encode(), seconds(settings.sessionlifetime), path + "/")
    options = Options(
        base=path,
        deletes=config.storage.delete.enabled,
        readonly=config.storage.maintenance.readonly.enabled,
        records_pulls=records_pulls,
    )
    pages = Pages(registry, for_controller(access), sessions, options, usage, quotas)
    return WebUI(path, pages.app())
