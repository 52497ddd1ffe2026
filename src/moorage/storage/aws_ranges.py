"""AWS's published address ranges (`ip-ranges.json`), for the CloudFront middleware's
`ipfilteredby`: a client inside them is sent to S3 directly instead of through CloudFront."""

from __future__ import annotations

import asyncio
import bisect
import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

import aiohttp

log = logging.getLogger("moorage.storage.middleware")

DEFAULT_URL = "https://ip-ranges.amazonaws.com/ip-ranges.json"
DEFAULT_UPDATE = 12 * 3600.0  # seconds between fetches, distribution's default
FETCH_TIMEOUT = 60.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Spans:
    """Networks of one IP version as sorted, disjoint integer spans: a lookup is a bisection."""

    def __init__(self, networks: Iterable[Network]) -> None:
        collapsed = list(ipaddress.collapse_addresses(networks))  # type: ignore[type-var]  # one version
        self.starts = [int(n.network_address) for n in collapsed]
        self.ends = [int(n.broadcast_address) for n in collapsed]

    def __contains__(self, address: int) -> bool:
        index = bisect.bisect_right(self.starts, address) - 1
        return index >= 0 and address <= self.ends[index]

    def __len__(self) -> int:
        return len(self.starts)


def parse(document: Any, regions: frozenset[str]) -> tuple[Spans, Spans]:
    """The IPv4 and IPv6 networks of an ip-ranges.json document, of `regions` only when given
    (lower case). Entries that are not networks are skipped; a document of another shape
    raises ValueError."""
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    found: dict[int, list[Network]] = {4: [], 6: []}
    for list_key, prefix_key in (("prefixes", "ip_prefix"), ("ipv6_prefixes", "ipv6_prefix")):
        entries = document.get(list_key) or []
        if not isinstance(entries, list):
            raise ValueError(f"{list_key} is not a list")
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            if regions and str(entry.get("region", "")).lower() not in regions:
                continue
            try:
                network = ipaddress.ip_network(str(entry.get(prefix_key)), strict=False)
            except ValueError:
                log.warning("AWS address ranges: %r is not a network", entry.get(prefix_key))
                continue
            found[network.version].append(network)
    return Spans(found[4]), Spans(found[6])


class AWSRanges:
    """AWS's address ranges from `url`, refetched every `every` seconds while `run` runs; only
    those of `regions` when given. Empty until a fetch succeeds (every client then goes
    through CloudFront, as in distribution)."""

    def __init__(self, url: str, every: float, regions: Iterable[str] = ()) -> None:
        self.url = url
        self.every = every
        self.regions = frozenset(region.strip().lower() for region in regions if region.strip())
        self.v4 = Spans([])
        self.v6 = Spans([])

    def contains(self, address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return int(ip) in (self.v4 if ip.version == 4 else self.v6)

    async def update(self, session: aiohttp.ClientSession) -> None:
        """Fetches the ranges; raises aiohttp.ClientError or ValueError."""
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
        async with session.get(self.url, timeout=timeout) as response:
            if response.status != 200:
                raise ValueError(f"answered {response.status}")
            document = await response.json(content_type=None)
        self.v4, self.v6 = parse(document, self.regions)
        log.info(
            "AWS address ranges: %d IPv4 and %d IPv6 networks from %s%s",
            len(self.v4),
            len(self.v6),
            self.url,
            f" (regions {', '.join(sorted(self.regions))})" if self.regions else "",
        )

    async def run(self) -> None:
        """Fetches now and every `every` seconds, until cancelled; a failed fetch keeps the
        ranges it had and is logged."""
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    await self.update(session)
                except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                    log.warning("AWS address ranges: cannot fetch %s: %s", self.url, exc)
                await asyncio.sleep(self.every)
