"""A driver's config parameters, read with typed accessors whose ValueError names the key path
(`storage.gcs.chunksize: ...`), as start-up and `moorage config check` report it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from moorage.durations import seconds


class Parameters:
    """The parameters of `storage.<driver>`; keys not in `known` are refused at once."""

    def __init__(self, driver: str, values: Mapping[str, Any], known: Iterable[str]) -> None:
        self.driver = driver
        self.values = values
        unknown = sorted(str(key) for key in set(values) - set(known))
        if unknown:
            raise ValueError("; ".join(f"{self.path(key)}: unknown key" for key in unknown))

    def path(self, key: str) -> str:
        return f"storage.{self.driver}.{key}"

    def given(self, key: str) -> bool:
        return self.values.get(key) not in (None, "")

    def text(self, key: str, default: str = "", *, required: bool = False) -> str:
        value = self.values.get(key)
        if value in (None, ""):
            if required:
                raise ValueError(f"{self.path(key)}: required")
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"{self.path(key)}: expected a string")
        return str(value)

    def integer(self, key: str, default: int) -> int:
        """A whole number, given as one or as its digits (distribution reads both)."""
        value = self.values.get(key)
        if value in (None, ""):
            return default
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise ValueError(f"{self.path(key)}: expected a whole number, not {value!r}")

    def boolean(self, key: str, default: bool) -> bool:
        value = self.values.get(key)
        if value in (None, ""):
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"{self.path(key)}: expected true or false, not {value!r}")

    def duration(self, key: str, default: str) -> float:
        """Seconds, from a duration as distribution writes them (`100ms`, `2s`)."""
        value = self.values.get(key)
        try:
            return seconds(default if value in (None, "") else value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.path(key)}: {exc}") from None

    def mapping(self, key: str, known: Iterable[str]) -> Parameters | None:
        """A nested mapping of parameters (`storage.azure.credentials`), or None if absent."""
        value = self.values.get(key)
        if value in (None, ""):
            return None
        if not isinstance(value, Mapping):
            raise ValueError(f"{self.path(key)}: expected a mapping")
        return Parameters(f"{self.driver}.{key}", value, known)
