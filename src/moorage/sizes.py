"""Counts and sizes as the CLI, the log and the web UI write them for people."""

from __future__ import annotations


def human(size: float) -> str:
    """A size in binary units: `512 B`, `1.5 KiB`, `10.0 GiB`."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(size) < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def plural(count: int, singular: str, many: str = "") -> str:
    """`1 blob`, `2 blobs`; `many` where adding an s is wrong (`2 empty repositories`)."""
    return f"{count} {singular if count == 1 else many or singular + 's'}"
