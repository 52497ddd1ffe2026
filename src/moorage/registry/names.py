"""Repository names, tags and references, checked against the distribution spec's grammar:

    name      = component ("/" component)*    at most 255 characters
    component = [a-z0-9]+ (separator [a-z0-9]+)*
    separator = "." | "_" | "__" | "-"+
    tag       = [A-Za-z0-9_][A-Za-z0-9._-]{0,127}
    reference = tag | digest

A refusal says which rule the text broke, and where.
"""

from __future__ import annotations

import re

from moorage.registry.digest import Digest
from moorage.registry.errors import NameInvalid, ReferenceInvalid, TagInvalid

_COMPONENT_TEXT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_COMPONENT = re.compile(_COMPONENT_TEXT)
_NAME = re.compile(rf"{_COMPONENT_TEXT}(?:/{_COMPONENT_TEXT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_SEPARATOR_RUN = re.compile(r"[._-]{2,}")
_COMPONENT_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")
MAX_NAME_LENGTH = 255
TAG_RULE = "a tag is 1 to 128 of [A-Za-z0-9._-], not starting with '.' or '-'"


def check_name(name: str) -> str:
    """Returns the name, or raises NameInvalid saying which rule it breaks."""
    if _NAME.fullmatch(name) and len(name) <= MAX_NAME_LENGTH:
        return name
    raise NameInvalid(f"invalid repository name: {_name_problem(name)}", detail={"name": name})


def _name_problem(name: str) -> str:
    if not name:
        return "the name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"{len(name)} characters, longer than {MAX_NAME_LENGTH}"
    for index, component in enumerate(name.split("/")):
        if _COMPONENT.fullmatch(component):
            continue
        where = f"component {index + 1} ({component!r})"
        if not component:
            return f"component {index + 1} is empty (a leading, trailing or double '/')"
        other = sorted({c for c in component if c not in _COMPONENT_CHARACTERS})
        if other:
            shown = ", ".join(repr(c) for c in other)
            return f"{where} holds {shown}; components use only a-z, 0-9, '.', '_' and '-'"
        if component[0] in "._-" or component[-1] in "._-":
            return f"{where} must start and end with a letter or digit"
        run = _SEPARATOR_RUN.search(component)
        shown = repr(run.group()) if run else "its separators"
        return f"{where}: {shown} is not a separator (one '.', one or two '_', or '-'s)"
    return "it breaks the name grammar"


def check_tag(tag: str) -> str:
    """Returns the tag, or raises TagInvalid."""
    if not _TAG.fullmatch(tag):
        raise TagInvalid(f"invalid tag {tag!r}: {TAG_RULE}", detail={"tag": tag})
    return tag


def is_tag(reference: str) -> bool:
    return _TAG.fullmatch(reference) is not None


def parse_reference(reference: str) -> str | Digest:
    """A manifest reference: the tag, or the digest. Text of the digest's shape
    (`algorithm:encoded`) that is not a usable digest raises DigestInvalid saying why; anything
    else raises ReferenceInvalid."""
    if is_tag(reference):
        return reference
    if Digest.looks_like(reference):
        return Digest.parse(reference)
    raise ReferenceInvalid(
        f"invalid reference {reference!r}: neither a tag ({TAG_RULE}) nor a digest "
        "(algorithm:hex)",
        detail={"reference": reference},
    )
