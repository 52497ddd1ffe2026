"""What every handler needs from the request: the registry, the settings, and URLs as the
client must see them."""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import hdrs, web

from moorage.auth.controllers import AccessController
from moorage.lifecycle.quotas import Quotas
from moorage.lifecycle.usage import UsageTracker
from moorage.logs import client_address, trusts
from moorage.registry.context import Client, RequestContext
from moorage.registry.repository import Namespace, Registry, RepositoryService

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: list[Network] = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]


@dataclass(frozen=True)
class Settings:
    """The API's own settings, from the config tree."""

    readonly: bool = False
    catalog_max_entries: int = 1000
    prefix: str = ""  # "" or "/path", no trailing slash
    host: str = ""  # scheme://host[:port] clients reach the registry at, when set
    relative_urls: bool = False
    headers: dict[str, list[str]] = field(default_factory=dict)  # added to every response
    secret: bytes = b""  # signs upload session state
    redirect: bool = True  # blob GETs answer 307 to the driver's direct URL, where it has one
    trusted_proxies: list[Network] = field(default_factory=lambda: list(LOOPBACK))
    # origins whose pages may call the API from a browser (ui.cors.origins, and those
    # http.headers allows with Access-Control-Allow-Origin): their preflights pass unauthorized
    cors_origins: frozenset[str] = frozenset()


# Wraps a repository in what the config adds around its services (events), given the function
# that tells the facts of the request being served (RequestContexts.current). What it makes
# keeps no request's state: WrappedNamespace keeps it for later requests.
RepositoryWrapper = Callable[[RepositoryService, Callable[[], RequestContext]], RepositoryService]

REGISTRY = web.AppKey("registry", Registry)
# What repositories are served through: the registry, or a pull-through cache over it.
NAMESPACE = web.AppKey("namespace", Namespace)
SETTINGS = web.AppKey("settings", Settings)
ACCESS = web.AppKey("access", AccessController)  # only when auth is configured
USAGE = web.AppKey("usage", UsageTracker)  # only when usage is computed
QUOTAS = web.AppKey("quotas", Quotas)
TRUSTED: web.AppKey[Callable[[str], bool]] = web.AppKey("trusted_proxy")
GRANT = "grant"  # request key: the moorage.auth.scopes.Grant of an authorized request


def registry(request: web.Request) -> Registry:
    return request.app[REGISTRY]


def settings(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def repository(request: web.Request) -> RepositoryService:
    """The repository named in the path, as the namespace serves it (with what the config
    wraps around its services: WrappedNamespace); NameInvalid for a name outside the
    grammar."""
    _SERVING.set(request)  # in this request's own task (aiohttp runs each in one)
    return request.app[NAMESPACE].repository(request.match_info["name"])


MAX_WRAPPED = 1024  # wrapped repositories a WrappedNamespace keeps

# The request being served, for RequestContexts.current(): set where a request asks for a
# repository, in the task aiohttp runs the request in, so it ends with the request.
_SERVING: contextvars.ContextVar[web.Request] = contextvars.ContextVar("serving")


class WrappedNamespace:
    """A namespace whose repositories come with what `wrap` puts around their services, told
    the facts of each request by `contexts` (one per app). A wrapped repository is kept for
    the next requests while the namespace serves the same repository object (the registry
    keeps its repositories; a pull-through cache makes one per request, wrapped anew): what
    `wrap` makes keeps no request's state."""

    __slots__ = ("_current", "_wrap", "_wrapped", "inner")

    def __init__(
        self, inner: Namespace, wrap: RepositoryWrapper, contexts: RequestContexts
    ) -> None:
        self.inner = inner
        self._wrap = wrap
        self._current = contexts.current
        # name -> the repository the namespace served, and its wrapped one
        self._wrapped: dict[str, tuple[RepositoryService, RepositoryService]] = {}

    def repository(self, name: str) -> RepositoryService:
        inner = self.inner.repository(name)
        found = self._wrapped.get(name)
        if found is not None and found[0] is inner:
            return found[1]
        wrapped = self._wrap(inner, self._current)
        if len(self._wrapped) >= MAX_WRAPPED:  # names come from clients: keep it bounded
            self._wrapped.clear()
        self._wrapped[name] = (inner, wrapped)
        return wrapped


class RequestContexts:
    """The facts of the requests one app serves, for the services' wrappers."""

    __slots__ = ("_connections",)

    def __init__(self) -> None:
        # the last Client of each connection, by its transport's id: a weak reference to
        # the transport (which tells it from a later one with the same id, and keeps none
        # alive), the raw headers the Client was worked out from, and the Client
        self._connections: dict[int, tuple[weakref.ref[object], object, Client]] = {}

    def current(self) -> RequestContext:
        """The facts of the request being served (the one whose handler asked for the
        repository whose services call this; LookupError outside a request). Its client's
        part follows from the connection and the headers: it is worked out once per
        connection and kept while its requests repeat the same headers, as a keep-alive
        connection's do. (Who signed in follows from the headers too: the Authorization
        header, or the web UI's cookie.) This runs for every event a request records: it
        makes as few calls as it can."""
        request = _SERVING.get()
        transport = request.transport
        raw = request.raw_headers
        known = self._connections.get(id(transport))
        if known is not None and known[0]() is transport and known[1] == raw:
            client = known[2]
        else:
            client = _client_of(request)
            if transport is not None:
                with contextlib.suppress(TypeError):  # a transport with no weak references
                    if len(self._connections) >= MAX_CLIENTS:
                        self._connections.clear()
                    self._connections[id(transport)] = (weakref.ref(transport), raw, client)
        return request["request_id"], request.method, client  # request_ids() set the id


def _client_of(request: web.Request) -> Client:
    """The Client of a request, remembered by the inputs it follows from (a client that opens
    connections one after another gets the same one)."""
    transport = request.transport
    user = request.get("user", "")
    key = (
        id(request.app),
        transport.get_extra_info("peername") if transport is not None else None,
        user,
        *map(request.headers.get, _CLIENT_HEADERS),
    )
    client = _CLIENTS.get(key)
    if client is None:
        if len(_CLIENTS) >= MAX_CLIENTS:
            _CLIENTS.clear()
        client = _CLIENTS[key] = Client(
            addr=_client(request, request.app[TRUSTED]),
            host=request.host,
            useragent=request.headers.get(hdrs.USER_AGENT, ""),
            user="" if user == "-" else user,
            base_url=absolute_url(request, ""),
        )
    return client


# The headers a Client follows from, by aiohttp's names for them (found without case folding).
_CLIENT_HEADERS = (
    hdrs.HOST,
    hdrs.USER_AGENT,
    hdrs.X_FORWARDED_FOR,
    hdrs.FORWARDED,
    hdrs.X_FORWARDED_PROTO,
    hdrs.X_FORWARDED_HOST,
)
# The Client part of RequestContext, by what it follows from.
_CLIENTS: dict[tuple[object, ...], Client] = {}
MAX_CLIENTS = 4096


def _client(request: web.Request, trusted: Callable[[str], bool]) -> str:
    """The client's address through the trusted proxies; `host:port` when it is the peer's,
    as distribution reports it."""
    address = client_address(request, trusted)
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, tuple) and len(peer) >= 2 and address == peer[0]:
        return f"[{address}]:{peer[1]}" if ":" in address else f"{address}:{peer[1]}"
    return address


def client_ip(request: web.Request) -> str:
    """The client's address through the trusted proxies."""
    return client_address(request, request.app[TRUSTED])


def trusted_checker(current: Settings) -> Callable[[str], bool]:
    return trusts(current.trusted_proxies)


def api_path(request: web.Request, path: str) -> str:
    """`path` (from `/v2/` on) under the configured prefix."""
    return settings(request).prefix + path


# A host as a URL may carry it: a name, an IPv4 address or a bracketed IPv6 one, and a port.
_HOST = re.compile(r"(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_SCHEMES = ("http", "https")


def absolute_url(request: web.Request, path: str) -> str:
    """The URL a client uses to reach `path` (from `/v2/` on): relative when
    `http.relativeurls`, on `http.host` when set, else on the scheme and host the client used,
    as a reverse proxy reports them (`X-Forwarded-Proto`/`-Host`, `Forwarded`). A scheme or
    host that is not one (these headers come from the network) is passed over; with no
    usable host at all the URL is relative, which clients resolve against their request."""
    current = settings(request)
    full = current.prefix + path
    if current.relative_urls:
        return full
    if current.host:
        return current.host.rstrip("/") + full
    forwarded = request.forwarded[0] if request.forwarded else {}
    scheme = _first(
        lambda value: value.lower() in _SCHEMES,
        request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip(),
        forwarded.get("proto"),
        request.scheme,
    )
    host = _first(
        _HOST.fullmatch,
        request.headers.get("X-Forwarded-Host", "").split(",")[0].strip(),
        forwarded.get("host"),
        request.host,
    )
    if host is None:
        return full
    return f"{(scheme or 'http').lower()}://{host}{full}"


def _first(usable: Callable[[str], object], *candidates: str | None) -> str | None:
    """The first candidate that is set and usable."""
    return next((value for value in candidates if value and usable(value)), None)
