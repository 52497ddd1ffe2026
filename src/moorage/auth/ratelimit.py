"""Failed-login limiting, per user and per client address: after `limit` failures within
`window` seconds, further attempts are refused until the oldest failure leaves the window."""

from __future__ import annotations

import math
import time
from collections import deque

USER_LIMIT = 5
ADDRESS_LIMIT = 20
WINDOW = 60.0


class FailedLogins:
    def __init__(
        self,
        user_limit: int = USER_LIMIT,
        address_limit: int = ADDRESS_LIMIT,
        window: float = WINDOW,
    ) -> None:
        self.window = window
        self._limits = {"user": user_limit, "address": address_limit}
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def retry_after(self, user: str | None, address: str) -> int:
        """Seconds until an attempt is allowed again; 0 when it is allowed now."""
        now = time.monotonic()
        wait = 0.0
        for kind, value in (("user", user), ("address", address)):
            if value is None:
                continue
            failures = self._recent((kind, value), now)
            if len(failures) >= self._limits[kind]:
                wait = max(wait, failures[0] + self.window - now)
        return math.ceil(wait)

    def failed(self, user: str | None, address: str) -> None:
        now = time.monotonic()
        for kind, value in (("user", user), ("address", address)):
            if value is not None:
                self._failures.setdefault((kind, value), deque()).append(now)
                if len(self._failures) > 100_000:  # bound memory under a spray of names
                    self._failures.clear()

    def succeeded(self, user: str) -> None:
        self._failures.pop(("user", user), None)
