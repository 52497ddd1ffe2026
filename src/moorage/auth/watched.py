"""A file parsed once and parsed again when it changes on disk (checked at most once a second),
so users and ACL edits apply without a restart."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("moorage.auth")
CHECK_INTERVAL = 1.0


class WatchedFile(Generic[T]):
    def __init__(self, path: str, parse: Callable[[str], T]) -> None:
        """Parses the file now: a missing or bad file raises ValueError here, at start-up."""
        self.path = path
        self._parse = parse
        self._signature = self._stat()
        self._value = parse(path)
        self._checked = time.monotonic()

    def _stat(self) -> tuple[float, int, int]:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise ValueError(f"{self.path}: {exc.strerror}") from exc
        return (st.st_mtime, st.st_size, st.st_ino)

    @property
    def value(self) -> T:
        """The parsed content. A change that no longer parses is logged and the previous
        content kept, so a half-saved edit never locks everyone out."""
        now = time.monotonic()
        if now - self._checked >= CHECK_INTERVAL:
            self._checked = now
            try:
                signature = self._stat()
                if signature != self._signature:
                    self._value = self._parse(self.path)
                    self._signature = signature
                    log.info("reloaded %s", self.path)
            except ValueError as exc:
                log.error("keeping the previous %s: %s", self.path, exc)
        return self._value
