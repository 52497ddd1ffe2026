"""Repository quotas (`storage.quotas`): the most a repository's total may be.

A repository's limit is the one of the longest `repositories` glob matching its name (globs as
the ACL's: auth/acl.py; on a tie, the first written), else `default`, else none. The limit
bounds the repository's total (moorage/lifecycle/usage.py): the bytes it links, shared with
other repositories or not. A blob mounted from another repository or pushed again under a new
name costs the repository its size though the store keeps it once: so a repository's standing
never changes with what other repositories do (with exclusive bytes only, another team deleting
a shared base image could push a repository over its quota, and mounting would evade one).

A push is refused (QuotaExceeded: 403 DENIED) when what it links would take the repository's
total over its limit: checked when an upload is committed, a blob is mounted and a manifest is
put, each counting only what the repository does not link yet. The total is the last computed
usage plus what this process linked since that computation started; the margin is what other
workers and replicas linked since then (at most one usage interval of their pushes), by which
a repository can end over its limit, after which its pushes are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
from collections.abc import AsyncIterator
from dataclasses import dataclass

from moorage.config import schema
from moorage.lifecycle.usage import UsageTracker
from moorage.registry.errors import QuotaExceeded, Unavailable
from moorage.sizes import human

READY_WAIT = 30.0  # seconds a push waits for the first usage computation


@dataclass(frozen=True)
class Limit:
    size: int  # bytes
    source: str  # the config key it comes from

    def describe(self) -> str:
        return f"{human(self.size)} ({self.source})"


class Quotas:
    """The configured limits."""

    def __init__(self, default: int | None = None, repositories: dict[str, int] | None = None):
        self.default = default
        # longest first; sorted() is stable, so equal lengths stay in the order written
        self.repositories = sorted((repositories or {}).items(), key=lambda kv: -len(kv[0]))

    @classmethod
    def from_config(cls, settings: schema.Quotas) -> Quotas:
        default = None if settings.default is None else schema.byte_size(settings.default)
        return cls(
            default, {glob: schema.byte_size(size) for glob, size in settings.repositories.items()}
        )

    @property
    def configured(self) -> bool:
        return self.default is not None or bool(self.repositories)

    def limit_for(self, repository: str) -> Limit | None:
        for pattern, size in self.repositories:
            if fnmatch.fnmatchcase(repository, pattern):
                return Limit(size, f"storage.quotas.repositories[{pattern}]")
        if self.default is not None:
            return Limit(self.default, "storage.quotas.default")
        return None


class QuotaGate:
    """The registry's admission (moorage/registry/admission.py) under quotas."""

    def __init__(self, quotas: Quotas, tracker: UsageTracker) -> None:
        self.quotas = quotas
        self.tracker = tracker

    def applies(self, repository: str) -> bool:
        return self.quotas.limit_for(repository) is not None

    @contextlib.asynccontextmanager
    async def reserve(self, repository: str, size: int) -> AsyncIterator[None]:
        limit = self.quotas.limit_for(repository)
        if limit is None:
            yield
            return
        try:
            async with asyncio.timeout(READY_WAIT):
                usage = await self.tracker.ready()
        except TimeoutError:
            raise Unavailable(
                "repository usage is not computed yet, so its quota cannot be checked; "
                "retry shortly"
            ) from None
        used = usage.of(repository).total + self.tracker.added(repository)
        if used + size > limit.size:
            raise QuotaExceeded(
                f"pushing {human(size)} to {repository} would take it to {human(used + size)}, "
                f"over its quota of {limit.describe()}; it holds {human(used)}",
                detail={
                    "repository": repository,
                    "quota": limit.size,
                    "used": used,
                    "adding": size,
                },
            )
        token = self.tracker.hold(repository, size)
        linked = False
        try:
            yield
            linked = True
        finally:
            self.tracker.settle(token, linked)
