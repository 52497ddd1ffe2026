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


# The request a registry operation serves: its id (the one the access log and X-Request-Id
# show), its method, and its Client. A plain tuple, made for every request: a NamedTuple's
# construction costs five times a tuple's.
RequestContext = tuple[str, str, Client]
