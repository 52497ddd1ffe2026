"""What a stored manifest references, for fsck and garbage collection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moorage.lifecycle.references import References, references
from moorage.registry.digest import Digest
from moorage.registry.errors import ManifestInvalid
from moorage.registry.manifests import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

CONFIG = Digest.of(b"config")
LAYER = Digest.of(b"layer")
FOREIGN = Digest.of(b"foreign layer")
CHILD = Digest.of(b"child")
SUBJECT = Digest.of(b"subject")


def descriptor(digest: Digest, media_type: str = "application/octet-stream", **extra: Any) -> Any:
    return {"mediaType": media_type, "digest": str(digest), "size": 5, **extra}


def payload(document: Any) -> bytes:
    return json.dumps(document).encode()


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_an_image_references_its_config_and_layers_but_not_foreign_layers(
    media_type: str,
) -> None:
    document = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(CONFIG),
        "layers": [
            descriptor(LAYER),
            descriptor(FOREIGN, urls=["https://example.com/layer"]),
        ],
    }
    assert references(payload(document)) == References((CONFIG, LAYER), (), None)


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_an_index_references_its_manifests(media_type: str) -> None:
    document = {"schemaVersion": 2, "mediaType": media_type, "manifests": [descriptor(CHILD)]}
    assert references(payload(document)) == References((), (CHILD,), None)


def test_a_subject_is_referenced() -> None:
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": descriptor(CONFIG, "application/vnd.oci.empty.v1+json"),
        "layers": [],
        "subject": descriptor(SUBJECT, OCI_MANIFEST),
    }
    assert references(payload(document)) == References((CONFIG,), (), SUBJECT)


def test_schema1_references_its_layers_once_each() -> None:
    """distribution may hold schema 1 manifests from older pushes; moorage refuses new ones."""
    document = {
        "schemaVersion": 1,
        "name": "library/old",
        "tag": "latest",
        "fsLayers": [{"blobSum": str(LAYER)}, {"blobSum": str(CONFIG)}, {"blobSum": str(LAYER)}],
        "history": [],
    }
    assert references(payload(document)) == References((LAYER, CONFIG), (), None)


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        payload({"schemaVersion": 3}),
        payload({"schemaVersion": 1}),
        payload({"schemaVersion": 1, "fsLayers": [{"blobSum": 5}]}),
        payload({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}}),
    ],
)
def test_what_is_no_manifest_is_invalid(content: bytes) -> None:
    with pytest.raises(ManifestInvalid):
        references(content)
