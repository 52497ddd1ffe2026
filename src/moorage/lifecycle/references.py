"""What a stored manifest references: the blobs, child manifests and subject that must stay for
it to be served. Checking a root and collecting its garbage both walk this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from moorage.registry import manifests as schema
from moorage.registry.digest import Digest
from moorage.registry.errors import ManifestInvalid


@dataclass(frozen=True)
class References:
    # the config and layers, stored in the registry (foreign layers, with `urls`, are not)
    blobs: tuple[Digest, ...]
    children: tuple[Digest, ...]  # an index's manifests
    subject: Digest | None


def references(payload: bytes) -> References:
    """What the stored payload references. Beside what the registry accepts on push, Docker
    schema 1 (which distribution may hold from older pushes) is read for its layers. Raises
    ManifestInvalid when the payload is none of these: then what it references is unknown."""
    try:
        document = schema.load_json(payload)
    except ValueError as exc:  # UnicodeDecodeError included
        raise ManifestInvalid(f"manifest is not valid JSON: {exc}") from None
    if isinstance(document, dict) and document.get("schemaVersion") == 1:
        return _schema1(document)
    manifest = schema.parse_document(document, None)
    return References(
        blobs=tuple(blob.digest for blob in manifest.blobs if not blob.urls),
        children=tuple(child.digest for child in manifest.children),
        subject=manifest.subject.digest if manifest.subject else None,
    )


def _schema1(document: dict[str, Any]) -> References:
    layers = document.get("fsLayers")
    if not isinstance(layers, list):
        raise ManifestInvalid("schema 1 manifest without fsLayers")
    blobs: list[Digest] = []
    for layer in layers:
        value = layer.get("blobSum") if isinstance(layer, dict) else None
        digest = Digest.parse_or_none(value) if isinstance(value, str) else None
        if digest is None:
            raise ManifestInvalid("schema 1 manifest with an fsLayers entry that is no digest")
        if digest not in blobs:  # schema 1 repeats the empty layer
            blobs.append(digest)
    return References(blobs=tuple(blobs), children=(), subject=None)
