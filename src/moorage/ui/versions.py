"""Tags in version order: `v1.9` before `v1.10` (and beside `1.9`), `1.0.0-rc.1` before
`1.0.0`, `latest` after every number."""

from __future__ import annotations

import re

_RUNS = re.compile(r"(\d+)|(\D+)")
# a version core (digits and dots, an optional leading v) and a pre-release after a hyphen
_PRERELEASE = re.compile(r"v?\d+(?:\.\d+)*-(.+)")

Key = tuple[tuple[tuple[int, int, str], ...], int, tuple[tuple[int, int, str], ...]]


def _natural(text: str) -> tuple[tuple[int, int, str], ...]:
    """Digit runs compare as numbers and before text; text compares case-insensitively; a `v`
    before a number is no part of it."""
    if text[:1] in ("v", "V") and text[1:2].isdigit():
        text = text[1:]
    return tuple(
        (0, int(digits), "") if digits else (1, 0, other.lower())
        for digits, other in _RUNS.findall(text)
    )


def version_key(tag: str) -> Key:
    match = _PRERELEASE.fullmatch(tag)
    if match is None:
        return (_natural(tag), 1, ())
    core = tag[: match.start(1) - 1]
    return (_natural(core), 0, _natural(match.group(1)))
