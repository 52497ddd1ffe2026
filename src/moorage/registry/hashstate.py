"""Resumable SHA-256 and SHA-512: a running hash whose state can be saved with an upload session
and restored by any process, in the encoding distribution stores (`_uploads/<id>/hashstates/`).

A state is Go's `encoding.BinaryMarshaler` form of crypto/sha256 and crypto/sha512, which
distribution 2.x writes and reads:

    magic                 4 bytes: "sha\\x03" (SHA-256) or "sha\\x07" (SHA-512)
    chaining words        8 words, big-endian: 4 bytes each (SHA-256) or 8 (SHA-512)
    partial block         the bytes hashed since the last whole block, zero-filled to a block
                          (64 bytes for SHA-256, 128 for SHA-512)
    length                the number of bytes hashed, big-endian, 8 bytes

The hashing is OpenSSL's libcrypto, the library hashlib wraps (found through hashlib's own
module first, so both are one build): SHA256_CTX and SHA512_CTX are public structs of
<openssl/sha.h>, read and written here, and the update runs at hashlib's speed (SHA-NI) with the
GIL released (ctypes releases it around a foreign call). hashlib cannot export a state, and the
packages measured for it held the GIL, had no API for the state, were far slower, or did not
build or run on OpenSSL 3 (pyproject.toml says which). Where libcrypto lacks these functions,
or their self-test fails, `new` gives hashlib's hasher and nothing can be saved: uploads then
read the stored bytes back to finish a session another process continued.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import logging
import struct
from dataclasses import dataclass
from typing import Any

from moorage.registry.digest import Hasher, new_hasher

log = logging.getLogger("moorage")

_LENGTH = struct.Struct(">Q")


def _context(word: Any, block: int) -> type[ctypes.Structure]:
    """<openssl/sha.h>'s SHA256_CTX (32-bit words, 64-byte blocks) or SHA512_CTX (64-bit words,
    128-byte blocks): the chaining words, the message length in bits as two words (low, high),
    the partial block's bytes, how many of them are used, and the digest's length."""

    class Context(ctypes.Structure):
        _fields_ = [
            ("h", word * 8),
            ("nl", word),
            ("nh", word),
            ("block", ctypes.c_uint8 * block),
            ("num", ctypes.c_uint),
            ("md_len", ctypes.c_uint),
        ]

    return Context


@dataclass(frozen=True)
class _Algorithm:
    name: str
    magic: bytes
    word: str  # struct format of a chaining word
    block: int  # bytes per block
    digest_size: int
    context: type[ctypes.Structure]
    init: Any  # libcrypto's <NAME>_Init, _Update and _Final
    update: Any
    final: Any

    @property
    def words(self) -> struct.Struct:
        return struct.Struct(f">8{self.word}")

    @property
    def word_bits(self) -> int:
        return 8 * struct.calcsize(self.word)

    @property
    def state_size(self) -> int:
        return len(self.magic) + self.words.size + self.block + _LENGTH.size


class ResumableHash:
    """A running SHA-256 or SHA-512 (the digest module's Hasher) that can `marshal` its state."""

    __slots__ = ("_algorithm", "_context")

    def __init__(self, algorithm: _Algorithm, context: Any = None) -> None:
        self._algorithm = algorithm
        if context is None:
            context = algorithm.context()
            algorithm.init(ctypes.byref(context))
        self._context = context

    @property
    def name(self) -> str:
        return self._algorithm.name

    @property
    def length(self) -> int:
        """Bytes hashed so far."""
        context = self._context
        return int((context.nh << self._algorithm.word_bits | context.nl) >> 3)

    def update(self, data: bytes, /) -> None:
        self._algorithm.update(ctypes.byref(self._context), data, len(data))

    def hexdigest(self) -> str:
        done = type(self._context).from_buffer_copy(self._context)
        out = ctypes.create_string_buffer(self._algorithm.digest_size)
        self._algorithm.final(out, ctypes.byref(done))
        return out.raw.hex()

    def copy(self) -> ResumableHash:
        return ResumableHash(self._algorithm, type(self._context).from_buffer_copy(self._context))

    def marshal(self) -> bytes:
        """The state in Go's encoding (the module's docstring)."""
        algorithm, context = self._algorithm, self._context
        partial = bytes(context.block[: context.num]).ljust(algorithm.block, b"\0")
        return b"".join(
            [
                algorithm.magic,
                algorithm.words.pack(*context.h),
                partial,
                _LENGTH.pack(self.length & 0xFFFF_FFFF_FFFF_FFFF),
            ]
        )


def new(algorithm: str) -> Hasher:
    """A hasher for `algorithm` (sha256, sha512): resumable where libcrypto allows, else
    hashlib's, whose state cannot be saved. DigestInvalid for another algorithm."""
    found = _algorithms().get(algorithm)
    return ResumableHash(found) if found else new_hasher(algorithm)


def marshal(hasher: Hasher) -> bytes | None:
    """The hasher's state in Go's encoding; None for a hasher that cannot export it."""
    return hasher.marshal() if isinstance(hasher, ResumableHash) else None


def restore(algorithm: str, state: bytes) -> ResumableHash | None:
    """The hash `state` (Go's encoding) describes; None when it is not a well-formed state of
    `algorithm` or resumable hashing is not available."""
    found = _algorithms().get(algorithm)
    return _restore(found, state) if found else None


def _restore(algorithm: _Algorithm, state: bytes) -> ResumableHash | None:
    if len(state) != algorithm.state_size or not state.startswith(algorithm.magic):
        return None
    at = len(algorithm.magic) + algorithm.words.size
    (length,) = _LENGTH.unpack_from(state, at + algorithm.block)
    hasher = ResumableHash(algorithm)
    context = hasher._context
    for index, word in enumerate(algorithm.words.unpack_from(state, len(algorithm.magic))):
        context.h[index] = word
    bits = length << 3
    context.nl = bits & ((1 << algorithm.word_bits) - 1)
    context.nh = bits >> algorithm.word_bits
    used = length % algorithm.block
    ctypes.memmove(context.block, state[at : at + used], used)
    context.num = used
    return hasher


def available() -> bool:
    """Whether SHA-256 states can be saved and restored in this process."""
    return "sha256" in _algorithms()


def _libcrypto() -> ctypes.CDLL | None:
    """libcrypto: the one hashlib is linked with, else the system's."""
    candidates: list[str] = []
    try:
        import _hashlib

        candidates.append(_hashlib.__file__)
    except ImportError:
        pass
    system = ctypes.util.find_library("crypto")
    if system:
        candidates.append(system)
    for candidate in candidates:
        try:
            library = ctypes.CDLL(candidate)
        except OSError:
            continue
        if hasattr(library, "SHA256_Init"):
            return library
    return None


@functools.cache
def _algorithms() -> dict[str, _Algorithm]:
    """The resumable algorithms this process has, each checked against hashlib once."""
    library = _libcrypto()
    if library is None:
        log.warning("libcrypto's SHA-2 functions not found: upload hash states are not saved")
        return {}
    found: dict[str, _Algorithm] = {}
    specs = [
        ("sha256", b"sha\x03", "I", ctypes.c_uint32, 64, 32),
        ("sha512", b"sha\x07", "Q", ctypes.c_uint64, 128, 64),
    ]
    for name, magic, word, ctype, block, size in specs:
        prefix = name.upper()
        try:
            init, update, final = (
                getattr(library, f"{prefix}_{step}") for step in ("Init", "Update", "Final")
            )
        except AttributeError:
            continue
        init.argtypes = [ctypes.c_void_p]
        update.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        final.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        for function in (init, update, final):
            function.restype = ctypes.c_int
        algorithm = _Algorithm(
            name, magic, word, block, size, _context(ctype, block), init, update, final
        )
        if _self_test(algorithm):
            found[name] = algorithm
        else:
            log.warning("libcrypto's %s disagrees with hashlib: its states are not saved", name)
    return found


def _self_test(algorithm: _Algorithm) -> bool:
    """Hashes across block boundaries, through a saved and restored state, as hashlib does."""
    data = bytes(range(256)) * 3
    first = ResumableHash(algorithm)
    first.update(data[:300])
    resumed = _restore(algorithm, first.marshal())
    if resumed is None or resumed.length != 300:
        return False
    resumed.update(data[300:])
    return resumed.hexdigest() == hashlib.new(algorithm.name, data).hexdigest()
