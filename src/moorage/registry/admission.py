"""The hook quotas plug into (moorage/lifecycle/quotas.py): the registry's services ask it before
they link anything that adds bytes to a repository (an uploaded or mounted blob, a manifest)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol


class Admission(Protocol):
    def applies(self, repository: str) -> bool:
        """Whether the repository's additions are checked at all (else nothing is asked)."""
        ...

    def reserve(self, repository: str, size: int) -> AbstractAsyncContextManager[None]:
        """Holds `size` bytes for the repository while the block links them. Raises
        QuotaExceeded before the block when they do not fit (Unavailable when that cannot be
        told yet); a block that fails releases them."""
        ...
