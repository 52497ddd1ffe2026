"""Manifest payloads: which kind a payload is, and what it references.

Payloads are stored byte-exact; parsing only reads them. Four kinds are accepted: Docker schema 2
and its manifest list, the OCI image manifest and the OCI image index (artifacts included).
Docker schema 1 is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from moorage.registry.digest import Digest
from moorage.registry.errors import DigestInvalid, ManifestInvalid

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
MEDIA_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
MAX_SIZE = 2**63 - 1  # a descriptor's size is an int64, as in the spec and in distribution


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"key {key!r} appears twice in an object")
            seen.add(key)
    return document


def load_json(payload: bytes) -> Any:
    """The JSON document of a pushed payload, read as strictly as the spec writes JSON, so that
    no two parsers can read one payload as two manifests: UTF-8 only (no byte order mark, no
    other encoding, no encoded surrogates), no NaN or Infinity, no key twice in one object.
    Nesting too deep to parse is a ValueError like any other malformed payload."""
    text = payload.decode("utf-8")  # strict: surrogates and other encodings are refused
    if text.startswith("\ufeff"):
        raise ValueError("a byte order mark is not JSON")
    try:
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ValueError("nested too deeply") from None


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    urls: tuple[str, ...] = ()
    platform: tuple[str, str] | None = None  # (architecture, os), where the descriptor names one

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@dataclass(frozen=True)
class Manifest:
    media_type: str
    blobs: tuple[Descriptor, ...]  # config and layers: must be blobs of the repository
    children: tuple[Descriptor, ...]  # an index's manifests: must be manifests of the repository
    subject: Descriptor | None
    artifact_type: str | None  # as the referrers API reports it
    annotations: dict[str, str] | None = field(default=None)


_SNIFFED: dict[Digest, str] = {}  # what sniff_media_type found, by the payload's digest
MAX_SNIFFED = 65_536


def stored_media_type(digest: Digest, payload: bytes) -> str:
    """sniff_media_type of the payload stored under `digest`, remembered by digest (content
    under a digest never changes; the payloads themselves are not kept)."""
    found = _SNIFFED.get(digest)
    if found is None:
        if len(_SNIFFED) >= MAX_SNIFFED:
            _SNIFFED.clear()
        found = _SNIFFED[digest] = sniff_media_type(payload)
    return found


def sniff_media_type(payload: bytes) -> str:
    """The media type of a stored payload, for serving it: its `mediaType` field, or for OCI
    payloads that omit it, index if it lists manifests and image manifest otherwise."""
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        return OCI_MANIFEST
    if isinstance(document, dict):
        declared = document.get("mediaType")
        if isinstance(declared, str) and declared:
            return declared
        if "manifests" in document:
            return OCI_INDEX
    return OCI_MANIFEST


def parse(payload: bytes, content_type: str | None) -> Manifest:
    """Parses and checks a pushed payload. Raises ManifestInvalid with a message that names the
    problem."""
    try:
        document = load_json(payload)
    except ValueError as exc:  # UnicodeDecodeError included
        raise ManifestInvalid(f"manifest is not valid JSON: {exc}") from None
    return parse_document(document, content_type)


def parse_document(document: Any, content_type: str | None) -> Manifest:
    """`parse` of a payload's JSON document, already loaded."""
    if not isinstance(document, dict):
        raise ManifestInvalid("manifest must be a JSON object")

    header_type = (content_type or "").split(";")[0].strip().lower()
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestInvalid("mediaType must be a string")
    if document.get("schemaVersion") == 1 or header_type in SCHEMA1 or declared in SCHEMA1:
        raise ManifestInvalid(
            "Docker schema 1 manifests are not supported; push with a current client "
            "(schema 2 or OCI)"
        )
    if document.get("schemaVersion") != 2:
        raise ManifestInvalid("schemaVersion must be 2")

    media_type = declared or (header_type if header_type in MEDIA_TYPES else None)
    if media_type is None:
        media_type = OCI_INDEX if "manifests" in document else OCI_MANIFEST
    if media_type not in MEDIA_TYPES:
        raise ManifestInvalid(f"unsupported manifest media type {media_type}")
    if declared and header_type in MEDIA_TYPES and header_type != declared:
        raise ManifestInvalid(
            f"Content-Type {header_type} does not match the manifest's mediaType {declared}"
        )

    if media_type in INDEX_TYPES:
        return _parse_index(document, media_type)
    return _parse_image(document, media_type)


def _parse_image(document: dict[str, Any], media_type: str) -> Manifest:
    if "manifests" in document:
        raise ManifestInvalid(f"{media_type} must not hold manifests")
    config = _descriptor(document.get("config"), "config")
    layers = document.get("layers", [])
    if media_type == DOCKER_MANIFEST and "layers" not in document:
        raise ManifestInvalid("layers is required")
    if not isinstance(layers, list):
        raise ManifestInvalid("layers must be a list")
    parsed_layers = tuple(_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(layers))
    artifact_type = _optional_str(document, "artifactType") or config.media_type
    return Manifest(
        media_type=media_type,
        blobs=(config, *parsed_layers),
        children=(),
        subject=_subject(document),
        artifact_type=artifact_type,
        annotations=_annotations(document.get("annotations"), "annotations"),
    )


def _parse_index(document: dict[str, Any], media_type: str) -> Manifest:
    manifests = document.get("manifests")
    if not isinstance(manifests, list):
        raise ManifestInvalid("manifests must be a list")
    children = tuple(_descriptor(child, f"manifests[{i}]") for i, child in enumerate(manifests))
    return Manifest(
        media_type=media_type,
        blobs=(),
        children=children,
        subject=_subject(document),
        artifact_type=_optional_str(document, "artifactType"),
        annotations=_annotations(document.get("annotations"), "annotations"),
    )


def _subject(document: dict[str, Any]) -> Descriptor | None:
    if document.get("subject") is None:
        return None
    return _descriptor(document["subject"], "subject")


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise ManifestInvalid(f"{where} must be a descriptor object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestInvalid(f"{where}.mediaType is required")
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_SIZE:
        raise ManifestInvalid(f"{where}.size must be an integer from 0 to {MAX_SIZE}")
    raw_digest = value.get("digest")
    if not isinstance(raw_digest, str):
        raise ManifestInvalid(f"{where}.digest is required")
    try:
        digest = Digest.parse(raw_digest)
    except DigestInvalid as exc:
        raise ManifestInvalid(f"{where}.digest: {exc.message}") from exc
    urls = value.get("urls")
    if urls is None:
        urls = []
    if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
        raise ManifestInvalid(f"{where}.urls must be a list of strings")
    platform = value.get("platform")
    _check_platform(platform, f"{where}.platform")
    data = value.get("data")
    if data is not None and not (isinstance(data, str) and _is_base64(data)):
        raise ManifestInvalid(f"{where}.data must be base64 text")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        artifact_type=_optional_str(value, "artifactType"),
        annotations=_annotations(value.get("annotations"), f"{where}.annotations"),
        urls=tuple(urls),
        platform=(platform["architecture"], platform["os"]) if platform else None,
    )


# A platform's fields and the JSON type each must have where present (other keys are ignored);
# the spec requires the first two.
_PLATFORM_FIELDS = {
    "architecture": str,
    "os": str,
    "os.version": str,
    "variant": str,
    "os.features": list,
    "features": list,
}


def _check_platform(value: Any, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise ManifestInvalid(f"{where} must be an object")
    for key, kind in _PLATFORM_FIELDS.items():
        if key not in value:
            if key in ("architecture", "os"):
                raise ManifestInvalid(f"{where}.{key} is required")
            continue
        field_value = value[key]
        if not isinstance(field_value, kind) or (
            kind is list and not all(isinstance(item, str) for item in field_value)
        ):
            shown = "a string" if kind is str else "a list of strings"
            raise ManifestInvalid(f"{where}.{key} must be {shown}")


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _optional_str(document: dict[str, Any], key: str) -> str | None:
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        raise ManifestInvalid(f"{key} must be a string")
    return value


def _annotations(value: Any, where: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ManifestInvalid(f"{where} must map strings to strings")
    return value
