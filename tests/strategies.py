"""Hypothesis strategies for what the registry reads from the network: names, tags, digests,
references, ranges and manifests, each valid (built from the grammar of the distribution and OCI
specs, written out here rather than imported from moorage, so the code is judged by the specs),
mutated (a valid value with hostile pieces in it) or from nowhere (any text).

Manifest documents are plain JSON values plus two kinds of node json.dumps cannot write: `Raw`
(a fragment written as is: NaN, numbers of thousands of digits, invalid UTF-8, deep nesting) and
`Pairs` (an object that may repeat a key); `encode` writes them all.
"""

from __future__ import annotations

import base64
import json
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

# the distribution spec's grammar
NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_GRAMMAR = rf"{NAME_COMPONENT}(?:/{NAME_COMPONENT})*"
MAX_NAME_LENGTH = 255
TAG_GRAMMAR = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
# the OCI image spec's digest grammar, and the algorithms a registry must verify
DIGEST_GRAMMAR = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"
DIGEST_LENGTHS = {"sha256": 64, "sha512": 128}
MEDIA_TYPE_GRAMMAR = r"[a-z]{1,12}/[a-z0-9][a-z0-9.+-]{0,40}"
INT64_MAX = 2**63 - 1

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)

# Pieces that break parsers, quoting and paths: delimiters of headers and challenges, path
# traversal, control characters, percent signs, case, non-ASCII and look-alike digits.
HOSTILE_PIECES = (
    '"', ",", ";", "=", " ", "\\", "\x00", "\r\n", "\n", "\t", "\x7f", "\x1b", "/", "//", "..",
    "../", "./", "%", "%00", "%2F", ":", "@", "?", "#", "&", "*", "A", "Z", "é", "ß", "\u0130",
    "\u202e", "\ufeff", "\u0663", "\uff11", '",realm="https://evil.example', ", Basic realm=x",
    "../" * 8, "\U0001f600",
)  # fmt: skip


def _insert(text: str, at: int, piece: str) -> str:
    at = min(at, len(text))
    return text[:at] + piece + text[at:]


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[str]) -> str:
    """A valid value broken in one to three places: a hostile piece or random text inserted,
    a character dropped, the case flipped, or the value made too long."""
    text = draw(valid)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(("insert", "insert", "insert", "drop", "case", "repeat")))
        at = draw(st.integers(0, len(text)))
        if kind == "insert":
            piece = draw(st.sampled_from(HOSTILE_PIECES) | st.text(min_size=1, max_size=3))
            text = _insert(text, at, piece)
        elif kind == "drop" and text:
            text = text[:at] + text[at + 1 :]
        elif kind == "case":
            text = text.swapcase()
        elif kind == "repeat":
            text = text * draw(st.integers(2, 40))
    return text


def hostile(valid: st.SearchStrategy[str], *nasty: str) -> st.SearchStrategy[str]:
    """Valid values, mutations of them, the given nasty cases and any text."""
    return st.one_of(
        valid,
        mutated(valid),
        st.sampled_from(nasty) if nasty else st.nothing(),
        st.text(max_size=80),
    )


# names, tags, digests, references

# The name grammar's productions, drawn directly (from_regex on the whole grammar is slow).
_alphanumerics = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
_separators = st.sampled_from([".", "_", "__", "-", "--", "---"])
_components = st.builds(
    lambda first, rest: first + "".join(sep + part for sep, part in rest),
    _alphanumerics,
    st.lists(st.tuples(_separators, _alphanumerics), max_size=3),
)
valid_names = st.one_of(
    st.lists(_components, min_size=1, max_size=6).map("/".join),
    st.sampled_from(["a" * MAX_NAME_LENGTH, "/".join(["a" * 63] * 4)]),
).filter(lambda name: len(name) <= MAX_NAME_LENGTH)
NASTY_NAMES = (
    "", ".", "..", "a/../b", "../a", "a/..", "a/./b", "a//b", "/a", "a/", "A", "a" * 256,
    "/".join(["a" * 63] * 4) + "a", 'a",realm="https://evil.example', 'a"', "a,b", "a\x00b",
    "a\r\nb", "a b", "a\\b", "a%2fb", "a/%2e%2e/b", "_uploads", "a/_layers", "a/_manifests/b",
)  # fmt: skip
hostile_names = hostile(valid_names, *NASTY_NAMES)

valid_tags = st.from_regex(TAG_GRAMMAR, fullmatch=True)
NASTY_TAGS = ("", ".", "..", ".a", "-a", "a" * 129, "a/b", "a:b", "a@b", "a b", "a\x00", "é")
hostile_tags = hostile(valid_tags, *NASTY_TAGS)


def hex_of(length: int) -> st.SearchStrategy[str]:
    return st.binary(min_size=length // 2, max_size=length // 2).map(bytes.hex)


@st.composite
def valid_digests(draw: st.DrawFn, algorithm: str | None = None) -> str:
    """`algorithm:hex` of a supported algorithm (any of them when None)."""
    algorithm = algorithm or draw(st.sampled_from(sorted(DIGEST_LENGTHS)))
    return f"{algorithm}:{draw(hex_of(DIGEST_LENGTHS[algorithm]))}"


def is_valid_digest(text: str) -> bool:
    """Whether the text is a digest of a supported algorithm, in its canonical form."""
    algorithm, _, encoded = text.partition(":")
    length = DIGEST_LENGTHS.get(algorithm)
    return length is not None and re.fullmatch(f"[0-9a-f]{{{length}}}", encoded) is not None


@st.composite
def broken_digests(draw: st.DrawFn) -> str:
    """Digests that look nearly right: a supported algorithm with upper-case, too short, too
    long or non-hex encodings; unknown or malformed algorithms; separators lost or doubled."""
    algorithm = draw(st.sampled_from(sorted(DIGEST_LENGTHS)))
    encoded = draw(hex_of(DIGEST_LENGTHS[algorithm]))
    return draw(
        st.sampled_from(
            [
                f"{algorithm}:{encoded.upper()}",
                f"{algorithm}:{encoded[:-1]}",
                f"{algorithm}:{encoded}0",
                f"{algorithm}:{encoded[:-1]}g",
                f"{algorithm}:{encoded[:-1]}\u0663",
                f"{algorithm}:",
                f"{algorithm}{encoded}",
                f"{algorithm}::{encoded}",
                f"{algorithm.upper()}:{encoded}",
                f"sha384:{encoded}",
                f"md5:{encoded[:32]}",
                f"sha256+b64:{encoded}",
                f"{algorithm}:{encoded}\n",
                f" {algorithm}:{encoded}",
                f"{algorithm}:{encoded}:{encoded}",
                f"{algorithm}:{'0' * 100_000}",
            ]
        )
    )


grammar_digests = st.from_regex(DIGEST_GRAMMAR, fullmatch=True)
hostile_digests = st.one_of(
    valid_digests(), broken_digests(), grammar_digests, mutated(valid_digests()),
    st.text(max_size=80),
)  # fmt: skip
references = st.one_of(valid_tags, valid_digests())
hostile_references = st.one_of(hostile_tags, hostile_digests)


# Range and Content-Range


# Text a header value can carry: no control characters (HTTP allows none but tab).
header_text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)


def numbers() -> st.SearchStrategy[str]:
    """Decimal numbers as text: small, around the 64-bit limits, and thousands of digits."""
    return st.one_of(
        st.integers(0, 1 << 20).map(str),
        st.sampled_from([2**31, 2**32, INT64_MAX, 2**63, 2**64]).map(str),
        st.integers(1, 6000).map(lambda digits: "9" * digits),
        st.just("0" * 5000 + "1"),
    )


@st.composite
def range_headers(draw: st.DrawFn) -> str:
    """`Range` values: well-formed single byte ranges, and every way to get one wrong."""
    first, last = draw(numbers()), draw(numbers())
    return draw(
        st.sampled_from(
            [
                f"bytes={first}-{last}",
                f"bytes={first}-",
                f"bytes=-{last}",
                f" bytes={first}-{last} ",
                f"bytes={first}-{last},{first}-",
                f"bytes={last}-{first}",
                "bytes=-",
                "bytes=",
                f"items={first}-{last}",
                f"bytes={first}",
                "bytes=\u0661-\u0662",
                f"bytes=+{first}-{last}",
                f"bytes=-{first}-{last}",
                f"BYTES={first}-{last}",
            ]
        )
        | header_text
    )


@st.composite
def content_range_headers(draw: st.DrawFn) -> str:
    """`Content-Range` values as clients send them (`start-end`, `bytes start-end/total`) and
    broken ones."""
    first, last, total = draw(numbers()), draw(numbers()), draw(numbers())
    return draw(
        st.sampled_from(
            [
                f"{first}-{last}",
                f"bytes {first}-{last}/{total}",
                f"bytes={first}-{last}/*",
                f"{last}-{first}",
                f"-{first}",
                f"{first}-",
                f"{first}-{last}-{total}",
                "\u0661-\u0662",
                f"bytes {first}-{last}/",
                f"bytes */{total}",
            ]
        )
        | header_text
    )


# manifests


@dataclass(frozen=True)
class Raw:
    """A JSON fragment written as is."""

    text: bytes


@dataclass(frozen=True)
class Pairs:
    """A JSON object as its members in order; a key may repeat."""

    members: tuple[tuple[str | Raw, Any], ...]


def encode(value: Any) -> bytes:
    """JSON bytes of a document that may hold Raw and Pairs nodes."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs | dict):
        members = value.members if isinstance(value, Pairs) else tuple(value.items())
        return b"{" + b",".join(encode(k) + b":" + encode(v) for k, v in members) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(encode(item) for item in value) + b"]"
    return json.dumps(value, ensure_ascii=False).encode()


Path = tuple[str | int, ...]


def positions(document: Any, path: Path = ()) -> Iterator[Path]:
    """The path of every value below the document's root, depth first."""
    children: Any = (
        document.items() if isinstance(document, dict)
        else enumerate(document) if isinstance(document, list)
        else ()
    )  # fmt: skip
    for key, child in children:
        yield (*path, key)
        yield from positions(child, (*path, key))


def value_at(document: Any, path: Path) -> Any:
    for key in path:
        document = document[key]
    return document


def replaced(document: Any, path: Path, value: Any) -> Any:
    """A copy of the document with the value at `path` replaced."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, dict):
        return {k: replaced(v, rest, value) if k == head else v for k, v in document.items()}
    return [replaced(v, rest, value) if i == head else v for i, v in enumerate(document)]


media_types = st.sampled_from(
    [
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.empty.v1+json",
        "application/vnd.docker.container.image.v1+json",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ]
) | st.from_regex(MEDIA_TYPE_GRAMMAR, fullmatch=True)
short_text = st.text(string.ascii_letters + string.digits + "./-_:", min_size=1, max_size=20)
annotations = st.dictionaries(short_text, st.text(max_size=20), max_size=3)


@st.composite
def descriptors(
    draw: st.DrawFn, media_type: st.SearchStrategy[str] = media_types
) -> dict[str, Any]:
    """A valid OCI descriptor of a random digest, with some of its optional fields."""
    descriptor: dict[str, Any] = {
        "mediaType": draw(media_type),
        "digest": draw(valid_digests()),
        "size": draw(st.integers(0, INT64_MAX)),
    }
    if draw(st.booleans()):
        descriptor["annotations"] = draw(annotations)
    if draw(st.integers(0, 4)) == 0:
        descriptor["urls"] = draw(st.lists(st.just("https://example.com/layer"), max_size=2))
    if draw(st.integers(0, 4)) == 0:
        descriptor["artifactType"] = draw(media_types)
    return descriptor


platforms = st.fixed_dictionaries(
    {"architecture": st.sampled_from(["amd64", "arm64"]), "os": st.just("linux")},
    optional={"variant": st.sampled_from(["v7", "v8"])},
)


@st.composite
def manifests(
    draw: st.DrawFn, blobs: st.SearchStrategy[dict[str, Any]] | None = None
) -> tuple[dict[str, Any], str]:
    """A valid manifest or index of any of the four kinds, and its media type. An image's
    config and layers are drawn from `blobs` (random descriptors when None)."""
    blob = blobs if blobs is not None else descriptors()
    media_type = draw(st.sampled_from([OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST]))
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if media_type in INDEX_TYPES:
        children = draw(st.lists(descriptors(st.sampled_from([OCI_MANIFEST, DOCKER_MANIFEST])),
                                 max_size=3))  # fmt: skip
        for child in children:
            if draw(st.booleans()):
                child["platform"] = draw(platforms)
        document["manifests"] = children
    else:
        document["config"] = draw(blob)
        document["layers"] = draw(st.lists(blob, max_size=3))
    if media_type in (OCI_MANIFEST, OCI_INDEX):
        if draw(st.booleans()):
            document["annotations"] = draw(annotations)
        if draw(st.integers(0, 3)) == 0:
            document["subject"] = draw(descriptors(st.just(OCI_MANIFEST)))
        if draw(st.integers(0, 3)) == 0:
            document["artifactType"] = draw(media_types)
    return document, media_type


# Fields a manifest may leave out: null there means absent. Anywhere else a value is required.
OPTIONAL_FIELDS = frozenset(
    {"mediaType", "annotations", "subject", "artifactType", "urls", "platform", "variant"}
)
# a truthy and a falsy value of each JSON type: a check written `value or default` lets the
# falsy ones through
_OF_EACH_TYPE: dict[type, tuple[Any, ...]] = {
    str: ("x", ""), int: (7, 0), float: (1.5, 0.0), bool: (True, False), list: ([1], []),
    dict: ({"a": 1}, {}), type(None): (None,),
}  # fmt: skip


def _kind(value: Any) -> type:
    return bool if isinstance(value, bool) else type(value)


def _field(path: Path) -> str:
    return path[-1] if isinstance(path[-1], str) else "[]"


@st.composite
def wrong_types(draw: st.DrawFn, document: dict[str, Any]) -> tuple[Path, Any]:
    """One field of a valid manifest given a value of another JSON type (not null where the
    field is optional and null means absent; `mediaType` is required in descriptors). The field
    is drawn by name first, so that rare ones (`platform`, `urls`) are drawn as often as any."""
    paths = list(positions(document))
    field = draw(st.sampled_from(sorted({_field(path) for path in paths})))
    path = draw(st.sampled_from([path for path in paths if _field(path) == field]))
    current = _kind(value_at(document, path))
    optional = field in OPTIONAL_FIELDS and not (field == "mediaType" and len(path) > 1)
    choices = [
        value for kind, values in _OF_EACH_TYPE.items() for value in values
        if kind is not current
        and not (kind is type(None) and optional)
        and not (current is float and kind is int)
    ]  # fmt: skip
    return path, draw(st.sampled_from(choices))


NON_JSON_NUMBERS = (b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf")
HUGE_NUMBERS = (
    b"1e999", b"-1e999", b"9" * 5000, b"1" + b"0" * 20, str(2**63).encode(),
    str(2**64).encode(), b"1e308", b"1.5", b"-1", b"-0",
)  # fmt: skip
INVALID_UTF8 = (
    b"\xff", b"\xfe", b"\xc0\x80", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\x80",
)  # fmt: skip


def nested(depth: int, innermost: bytes = b"1") -> Raw:
    """Arrays (and an object at every tenth level) nested `depth` deep."""
    opening = b"".join(b'{"a":' if i % 10 == 9 else b"[" for i in range(depth))
    closing = b"".join(b"}" if i % 10 == 9 else b"]" for i in reversed(range(depth)))
    return Raw(opening + innermost + closing)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


# header values, as bytes on the wire

# What a field value may hold (RFC 9110): visible ASCII, space, tab and obs-text.
FIELD_BYTES = bytes([0x09, *range(0x20, 0x7F), *range(0x80, 0x100)])
field_values = st.lists(st.sampled_from(FIELD_BYTES), max_size=60).map(bytes)


def fits_header(text: str) -> bool:
    """Whether the text, as UTF-8, is a field value HTTP allows."""
    return all(byte in FIELD_BYTES for byte in text.encode())


def as_received(value: bytes) -> str:
    """A header value as aiohttp hands it to a handler."""
    return value.decode("utf-8", "surrogateescape")


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


@st.composite
def authorization_values(draw: st.DrawFn, tokens: st.SearchStrategy[str] | None = None) -> bytes:
    """`Authorization` values: Basic with any user and password bytes (with and without the
    colon, and base64 broken), Bearer with a token (from `tokens`, or JWT-shaped garbage), other
    schemes, and any field value."""
    scheme = draw(st.sampled_from([b"Basic", b"basic", b"BASIC", b"Bearer", b"bearer", b"Digest"]))
    space = draw(st.sampled_from([b" ", b"  ", b"\t", b""]))
    user = draw(st.sampled_from([b"alice", b"admin", b"nobody"]) | st.binary(max_size=12))
    password = draw(st.binary(max_size=12))
    jwt_like = b".".join(draw(st.lists(st.binary(max_size=30).map(_b64), min_size=1, max_size=4)))
    credentials = draw(
        st.sampled_from(
            [
                _b64(user + b":" + password),
                _b64(user + password),
                _b64(user + b":" + password)[:-1],
                _b64(user + b":" + password) + b"!",
                jwt_like,
                b"",
            ]
        )
        | (tokens.map(str.encode) if tokens is not None else st.nothing())
        | field_values
    )
    return draw(st.sampled_from([scheme + space + credentials]) | field_values)


@st.composite
def spoiled_manifests(draw: st.DrawFn, document: dict[str, Any]) -> bytes:
    """A valid manifest spoiled one way: a field of the wrong type, nesting thousands deep, a
    number that is not JSON or too large, invalid UTF-8, or a repeated key."""
    where = draw(st.sampled_from(list(positions(document))))
    kind = draw(st.sampled_from(["type", "nesting", "number", "utf-8", "repeated key"]))
    if kind == "type":
        path, value = draw(wrong_types(document))
        return encode(replaced(document, path, value))
    if kind == "nesting":
        return encode(replaced(document, where, nested(draw(st.integers(10_001, 50_000)))))
    if kind == "number":
        literal = draw(st.sampled_from(NON_JSON_NUMBERS + HUGE_NUMBERS))
        return encode(replaced(document, where, Raw(literal)))
    if kind == "utf-8":
        bad = draw(st.sampled_from(INVALID_UTF8))
        return encode(Pairs((*document.items(), (Raw(b'"a' + bad + b'"'), "x"))))
    key = draw(st.sampled_from(sorted(document)))
    return encode(Pairs((*document.items(), (key, document[key]))))
