"""Content digests: `algorithm:hex`, for the algorithms the registry can verify."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from moorage.registry.errors import DigestInvalid

# algorithm -> length of its lowercase hex encoding
ALGORITHMS = {"sha256": 64, "sha512": 128}
DEFAULT_ALGORITHM = "sha256"

_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_HEX = re.compile(r"[0-9a-f]+")


class Hasher(Protocol):
    """What hashlib's objects offer; `copy` lets a caller keep a state to fall back to."""

    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> Hasher: ...


@dataclass(frozen=True, order=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Raises DigestInvalid, saying why, for anything but a well-formed digest of a
        supported algorithm."""
        if len(text) == 71 and text.startswith("sha256:") and _HEX.fullmatch(text, 7):
            return cls("sha256", text[7:])  # the common case, without the general checks
        if not _GRAMMAR.fullmatch(text):
            raise DigestInvalid(
                f"invalid digest {text!r}: expected algorithm:hex", detail={"digest": text}
            )
        algorithm, _, hex_ = text.partition(":")
        length = ALGORITHMS.get(algorithm)
        if length is None:
            raise DigestInvalid(
                f"unsupported digest algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}",
                detail={"digest": text},
            )
        if len(hex_) != length or not _HEX.fullmatch(hex_):
            raise DigestInvalid(
                f"invalid digest: {algorithm} takes {length} lowercase hex characters",
                detail={"digest": text},
            )
        return cls(algorithm, hex_)

    @staticmethod
    def looks_like(text: str) -> bool:
        """Whether the text has a digest's shape (`algorithm:encoded`), usable or not."""
        return _GRAMMAR.fullmatch(text) is not None

    @classmethod
    def parse_or_none(cls, text: str) -> Digest | None:
        try:
            return cls.parse(text)
        except DigestInvalid:
            return None

    @classmethod
    def of(cls, data: bytes, algorithm: str = DEFAULT_ALGORITHM) -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())


def new_hasher(algorithm: str) -> Hasher:
    if algorithm not in ALGORITHMS:
        raise DigestInvalid(
            f"unsupported digest algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}"
        )
    return hashlib.new(algorithm)
