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
        """Raises DigestInvalid for anything but a well-formed digest of a supported algorithm."""
        if not _GRAMMAR.fullmatch(text):
            raise DigestInvalid("invalid digest", detail={"digest": text})
        algorithm, _, hex_ = text.partition(":")
        length = ALGORITHMS.get(algorithm)
        if length is None:
            raise DigestInvalid(
                f"unsupported digest algorithm {algorithm}", detail={"digest": text}
            )
        if len(hex_) != length or not re.fullmatch(r"[0-9a-f]+", hex_):
            raise DigestInvalid("invalid digest", detail={"digest": text})
        return cls(algorithm, hex_)

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
        raise DigestInvalid(f"unsupported digest algorithm {algorithm}")
    return hashlib.new(algorithm)
