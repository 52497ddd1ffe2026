"""Storage middleware, distribution's `middleware.storage`: what changes the URL a blob GET
redirects to. `redirect` sends every blob to `baseurl` followed by the blob's storage path
(a CDN or web server in front of the same files); `rewrite` changes the scheme, host or path
prefix of the URL the driver signs. Entries apply in order, each over the one before."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# A storage path to the URL a client may fetch it from, or None to serve it through moorage.
Redirector = Callable[[str], Awaitable[str | None]]


def redirect(base: str) -> Redirector:
    parts = urlsplit(base)
    prefix = parts.path.rstrip("/")

    async def url(path: str) -> str | None:
        return urlunsplit((parts.scheme, parts.netloc, prefix + path, "", ""))

    return url


def rewrite(inner: Redirector, scheme: str, host: str, trim: str) -> Redirector:
    async def url(path: str) -> str | None:
        signed = await inner(path)
        if signed is None:
            return None
        parts = urlsplit(signed)
        return urlunsplit(
            (
                scheme or parts.scheme,
                host or parts.netloc,
                parts.path.removeprefix(trim) if trim else parts.path,
                parts.query,
                parts.fragment,
            )
        )

    return url


def chain(driver: Redirector, entries: Iterable[tuple[str, Mapping[str, Any]]]) -> Redirector:
    """The driver's redirector under the configured (name, options) entries, validated by the
    config schema."""
    current = driver
    for name, options in entries:
        if name == "redirect":
            current = redirect(str(options["baseurl"]))
        elif name == "rewrite":
            current = rewrite(
                current,
                str(options.get("scheme", "")),
                str(options.get("host", "")),
                str(options.get("trimpathprefix", "")),
            )
        else:
            raise ValueError(f"middleware.storage: unknown middleware {name!r}")
    return current
