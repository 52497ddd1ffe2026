"""Repository names and tags, checked against the distribution spec's grammar."""

from __future__ import annotations

import re

from moorage.registry.errors import NameInvalid, TagInvalid

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
MAX_NAME_LENGTH = 255


def check_name(name: str) -> str:
    """Returns the name, or raises NameInvalid."""
    if len(name) > MAX_NAME_LENGTH:
        raise NameInvalid(f"repository name longer than {MAX_NAME_LENGTH}", detail={"name": name})
    if not _NAME.fullmatch(name):
        raise NameInvalid(detail={"name": name})
    return name


def check_tag(tag: str) -> str:
    """Returns the tag, or raises TagInvalid."""
    if not _TAG.fullmatch(tag):
        raise TagInvalid(detail={"tag": tag})
    return tag


def is_tag(reference: str) -> bool:
    return _TAG.fullmatch(reference) is not None
