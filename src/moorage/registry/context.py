"""The request a registry operation serves, as what wraps the services needs it (the events
of moorage.notifications name who asked, from where, and link to what changed). The API layer
builds one per request."""

from __future__ import annotations

from typing import NamedTuple


class Client(NamedTuple):
    """What the requests of one client share: the same on every request of a keep-alive
    connection, so it is worked out once for them."""

    addr: str  # the client, through the trusted proxies; with the port when it is the peer
    host: str  # the Host header
    useragent: str
    user: str  # who signed in; "" for anonymous requests
    base_url: str  # what the URL of a path from `/v2/` on starts with, as clients use it


class RequestContext(NamedTuple):  # a tuple: made for every request, as cheaply as can be
    id: str  # the request id the access log and X-Request-Id show
    method: str
    client: Client
