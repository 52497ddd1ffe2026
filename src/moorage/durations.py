"""Durations as distribution's configuration writes them, for every layer that reads one."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(value: int | float | str) -> float:
    """A distribution duration in seconds: Go's syntax (`1h30m`, `10s`, `250ms`), or a bare
    number of nanoseconds as distribution's YAML takes it. Raises ValueError."""
    if isinstance(value, int | float):
        return float(value) / 1e9
    text = value.strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {value!r}: expected e.g. 30s, 5m, 1h30m")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)
