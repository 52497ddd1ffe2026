from __future__ import annotations

import json
from typing import Any

import pytest

from moorage.registry.digest import Digest
from moorage.registry.errors import ManifestInvalid
from moorage.registry.manifests import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    parse,
    sniff_media_type,
)

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"

CONFIG = Digest.of(b"config")
LAYER = Digest.of(b"layer")
CHILD = Digest.of(b"child manifest")
SUBJECT = Digest.of(b"subject manifest")
EMPTY = Digest.of(b"{}")


def descriptor(media_type: str, digest: Digest, size: Any = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(digest), "size": size, **extra}


def image(media_type: str | None = OCI_MANIFEST, **extra: Any) -> dict[str, Any]:
    config, layer = (
        (DOCKER_CONFIG, DOCKER_LAYER)
        if media_type == DOCKER_MANIFEST
        else (
            OCI_CONFIG,
            OCI_LAYER,
        )
    )
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "config": descriptor(config, CONFIG, 6),
        "layers": [descriptor(layer, LAYER, 5)],
    }
    if media_type is not None:
        document["mediaType"] = media_type
    return {**document, **extra}


def index(media_type: str | None = OCI_INDEX, **extra: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "manifests": [
            descriptor(
                OCI_MANIFEST if media_type != DOCKER_LIST else DOCKER_MANIFEST,
                CHILD,
                100,
                platform={"architecture": "amd64", "os": "linux"},
            )
        ],
    }
    if media_type is not None:
        document["mediaType"] = media_type
    return {**document, **extra}


def payload(document: Any) -> bytes:
    return json.dumps(document).encode()


# the four kinds


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_image_manifests_parse(media_type: str) -> None:
    for content_type in (media_type, None, f"{media_type}; charset=utf-8"):
        manifest = parse(payload(image(media_type)), content_type)
        assert manifest.media_type == media_type
        config, layer = manifest.blobs
        assert config.digest == CONFIG
        assert config.size == 6
        assert layer.digest == LAYER
        assert layer.size == 5
        assert manifest.children == ()
        assert manifest.subject is None
        assert manifest.artifact_type == config.media_type


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_indexes_parse(media_type: str) -> None:
    for content_type in (media_type, None):
        manifest = parse(payload(index(media_type)), content_type)
        assert manifest.media_type == media_type
        assert manifest.blobs == ()
        (child,) = manifest.children
        assert child.digest == CHILD
        assert child.size == 100
        assert manifest.subject is None
        assert manifest.artifact_type is None


def test_every_media_type_covered() -> None:
    assert set(MEDIA_TYPES) == {OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST}


def test_oci_manifest_without_media_type_is_sniffed() -> None:
    assert parse(payload(image(None)), None).media_type == OCI_MANIFEST
    assert parse(payload(image(None)), OCI_MANIFEST).media_type == OCI_MANIFEST
    assert parse(payload(image(None)), "application/octet-stream").media_type == OCI_MANIFEST


def test_oci_index_without_media_type_is_sniffed() -> None:
    assert parse(payload(index(None)), None).media_type == OCI_INDEX
    assert parse(payload(index(None)), OCI_INDEX).media_type == OCI_INDEX


def test_content_type_names_the_kind_when_the_document_does_not() -> None:
    assert parse(payload(image(None)), DOCKER_MANIFEST).media_type == DOCKER_MANIFEST
    assert parse(payload(index(None)), DOCKER_LIST).media_type == DOCKER_LIST


def test_empty_index() -> None:
    manifest = parse(payload({**index(), "manifests": []}), OCI_INDEX)
    assert manifest.children == ()


# artifacts


def test_artifact_with_artifact_type_subject_and_empty_config() -> None:
    document = image(
        config=descriptor(OCI_EMPTY, EMPTY, 2),
        layers=[descriptor("application/vnd.example.sbom", LAYER, 5)],
        artifactType="application/vnd.example.sbom.v1",
        subject=descriptor(OCI_MANIFEST, SUBJECT, 500),
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    )
    manifest = parse(payload(document), OCI_MANIFEST)
    assert manifest.artifact_type == "application/vnd.example.sbom.v1"
    assert manifest.subject == Descriptor(OCI_MANIFEST, SUBJECT, 500)
    assert manifest.blobs[0] == Descriptor(OCI_EMPTY, EMPTY, 2)
    assert manifest.annotations == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}


def test_artifact_type_defaults_to_config_media_type() -> None:
    document = image(config=descriptor("application/vnd.example.config.v1+json", CONFIG, 6))
    assert parse(payload(document), None).artifact_type == "application/vnd.example.config.v1+json"


@pytest.mark.parametrize("layers", [[], None])
def test_oci_manifest_without_layers(layers: list[Any] | None) -> None:
    document = image(config=descriptor(OCI_EMPTY, EMPTY, 2), artifactType="application/x.a")
    if layers is None:
        del document["layers"]
    else:
        document["layers"] = layers
    manifest = parse(payload(document), OCI_MANIFEST)
    assert manifest.blobs == (Descriptor(OCI_EMPTY, EMPTY, 2),)


def test_index_with_artifact_type_and_subject() -> None:
    document = index(artifactType="application/x.signature", subject=descriptor(OCI_INDEX, SUBJECT))
    manifest = parse(payload(document), OCI_INDEX)
    assert manifest.artifact_type == "application/x.signature"
    assert manifest.subject is not None
    assert manifest.subject.digest == SUBJECT


def test_descriptor_fields() -> None:
    layer = descriptor(
        OCI_LAYER,
        LAYER,
        5,
        urls=["https://example.com/layer"],
        annotations={"a": "b"},
        artifactType="application/x.t",
    )
    manifest = parse(payload(image(layers=[layer])), None)
    parsed = manifest.blobs[1]
    assert parsed.urls == ("https://example.com/layer",)
    assert parsed.annotations == {"a": "b"}
    assert parsed.artifact_type == "application/x.t"
    assert parsed.to_json() == {
        "mediaType": OCI_LAYER,
        "digest": str(LAYER),
        "size": 5,
        "artifactType": "application/x.t",
        "annotations": {"a": "b"},
    }
    assert Descriptor(OCI_LAYER, LAYER, 5).to_json() == {
        "mediaType": OCI_LAYER,
        "digest": str(LAYER),
        "size": 5,
    }


def test_null_subject_is_no_subject() -> None:
    assert parse(payload(image(subject=None)), None).subject is None


# refused


def assert_refused(document: Any, content_type: str | None, *fragments: str) -> None:
    raw = document if isinstance(document, bytes) else payload(document)
    with pytest.raises(ManifestInvalid) as caught:
        parse(raw, content_type)
    for fragment in fragments:
        assert fragment in caught.value.message


SCHEMA1_DOCUMENT = {
    "schemaVersion": 1,
    "name": "library/alpine",
    "tag": "latest",
    "architecture": "amd64",
    "fsLayers": [{"blobSum": str(LAYER)}],
    "history": [{"v1Compatibility": "{}"}],
    "signatures": [],
}


@pytest.mark.parametrize("content_type", [SCHEMA1, None, "application/json"])
def test_schema1_refused_with_clear_message(content_type: str | None) -> None:
    assert_refused(SCHEMA1_DOCUMENT, content_type, "schema 1", "not supported")


def test_schema1_content_type_or_media_type_refused() -> None:
    assert_refused(image(), SCHEMA1, "schema 1")
    assert_refused(image(SCHEMA1), None, "schema 1")
    assert_refused(image(), "application/vnd.docker.distribution.manifest.v1+json", "schema 1")


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"not json", b"\xff\xfe", b'{"schemaVersion": 2,}', b"{'a': 1}"]
)
def test_bad_json_refused(raw: bytes) -> None:
    assert_refused(raw, OCI_MANIFEST, "not valid JSON")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"schemaVersion": 2, "config": ' * 5000 + b"1" + b"}" * 5000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"schemaVersion": 2, "layers": [' + b"[" * 50_000 + b"]" * 50_000 + b"]}",
        b'{"schemaVersion": NaN}',
        b'{"schemaVersion": 2, "a": Infinity}',
        b'{"schemaVersion": 2, "a": -Infinity}',
        b'{"schemaVersion": ' + b"9" * 5000 + b"}",
    ],
)
def test_hostile_json_refused(raw: bytes) -> None:
    """Nesting too deep for the parser, JSON's non-numbers and numbers too long to read are
    malformed payloads like any other, never a crash."""
    assert_refused(raw, OCI_MANIFEST, "not valid JSON")
    assert sniff_media_type(raw) == OCI_MANIFEST


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"schemaVersion": 2, "manifests": [], "manifests": []}', "appears twice"),
        (b'\xef\xbb\xbf{"schemaVersion": 2}', "byte order mark"),
        ('{"schemaVersion": 2}'.encode("utf-16"), "not valid JSON"),
        (b'{"schemaVersion": 2, "a\xed\xa0\x80": 1}', "not valid JSON"),
    ],
)
def test_only_strict_utf8_json_is_read(raw: bytes, says: str) -> None:
    """One payload, one reading: encodings, byte order marks, encoded surrogates and repeated
    keys, which parsers read differently, are refused."""
    assert_refused(raw, OCI_INDEX, says)


@pytest.mark.parametrize(
    ("child", "says"),
    [
        ({"platform": "linux/amd64"}, "manifests[0].platform must be an object"),
        ({"platform": {"os": "linux"}}, "manifests[0].platform.architecture is required"),
        ({"platform": {"os": None, "architecture": "amd64"}}, "platform.os must be a string"),
        ({"platform": {"os": "linux", "architecture": "arm", "variant": 7}}, "variant"),
        ({"platform": {"os": "w", "architecture": "a", "os.features": "x"}}, "os.features"),
        ({"urls": False}, "manifests[0].urls must be a list of strings"),
        ({"urls": {}}, "manifests[0].urls must be a list of strings"),
        ({"data": "not base64!"}, "manifests[0].data must be base64 text"),
    ],
)
def test_descriptor_fields_of_the_wrong_type_are_refused(child: dict[str, Any], says: str) -> None:
    document = index(manifests=[{**descriptor(OCI_MANIFEST, LAYER), **child}])
    assert_refused(document, None, says)


@pytest.mark.parametrize("document", [[], "manifest", 2, None])
def test_non_object_refused(document: Any) -> None:
    assert_refused(document, OCI_MANIFEST, "JSON object")


@pytest.mark.parametrize("version", [None, 3, "2", 0])
def test_schema_version_must_be_2(version: Any) -> None:
    document = image()
    if version is None:
        del document["schemaVersion"]
    else:
        document["schemaVersion"] = version
    assert_refused(document, OCI_MANIFEST, "schemaVersion")


def test_unsupported_media_type_refused() -> None:
    assert_refused(image("application/vnd.example.manifest+json"), None, "unsupported")
    assert_refused(image(5), None, "mediaType must be a string")


@pytest.mark.parametrize(
    ("declared", "content_type"),
    [
        (OCI_MANIFEST, DOCKER_MANIFEST),
        (DOCKER_MANIFEST, OCI_MANIFEST),
        (OCI_MANIFEST, OCI_INDEX),
        (OCI_INDEX, DOCKER_LIST),
        (DOCKER_LIST, OCI_MANIFEST),
    ],
)
def test_content_type_must_match_media_type(declared: str, content_type: str) -> None:
    document = index(declared) if declared in (OCI_INDEX, DOCKER_LIST) else image(declared)
    assert_refused(document, content_type, "does not match", declared, content_type)


def test_index_with_image_fields_refused() -> None:
    assert_refused(image(OCI_MANIFEST, manifests=[]), None, "must not hold manifests")


def test_config_required() -> None:
    document = image()
    del document["config"]
    assert_refused(document, None, "config must be a descriptor")


def test_docker_manifest_requires_layers() -> None:
    document = image(DOCKER_MANIFEST)
    del document["layers"]
    assert_refused(document, None, "layers is required")


@pytest.mark.parametrize(
    ("layer", "fragment"),
    [
        ("not an object", "layers[0] must be a descriptor object"),
        ({"digest": str(LAYER), "size": 1}, "layers[0].mediaType is required"),
        (descriptor("", LAYER), "layers[0].mediaType is required"),
        (descriptor(OCI_LAYER, LAYER, -1), "layers[0].size must be an integer from 0 to"),
        (descriptor(OCI_LAYER, LAYER, 2**63), "layers[0].size must be an integer from 0 to"),
        (descriptor(OCI_LAYER, LAYER, "5"), "layers[0].size"),
        (descriptor(OCI_LAYER, LAYER, 1.5), "layers[0].size"),
        (descriptor(OCI_LAYER, LAYER, True), "layers[0].size"),
        ({"mediaType": OCI_LAYER, "size": 1}, "layers[0].digest is required"),
        ({"mediaType": OCI_LAYER, "size": 1, "digest": "sha256:abc"}, "layers[0].digest"),
        ({"mediaType": OCI_LAYER, "size": 1, "digest": "md5:" + "0" * 32}, "unsupported"),
        (descriptor(OCI_LAYER, LAYER, urls="http://x"), "layers[0].urls"),
        (descriptor(OCI_LAYER, LAYER, urls=[1]), "layers[0].urls"),
        (descriptor(OCI_LAYER, LAYER, annotations={"a": 1}), "layers[0].annotations"),
        (descriptor(OCI_LAYER, LAYER, annotations=["a"]), "layers[0].annotations"),
        (descriptor(OCI_LAYER, LAYER, artifactType=1), "artifactType must be a string"),
    ],
)
def test_bad_layer_descriptors_refused(layer: Any, fragment: str) -> None:
    assert_refused(image(layers=[layer]), OCI_MANIFEST, fragment)


def test_bad_descriptors_elsewhere_refused() -> None:
    assert_refused(image(config="x"), None, "config must be a descriptor")
    assert_refused(image(config=descriptor(OCI_CONFIG, CONFIG, -1)), None, "config.size")
    assert_refused(image(layers={"a": 1}), None, "layers must be a list")
    assert_refused(image(layers=[descriptor(OCI_LAYER, LAYER), "x"]), None, "layers[1]")
    assert_refused(image(subject="x"), None, "subject must be a descriptor")
    assert_refused(image(subject={"mediaType": OCI_MANIFEST}), None, "subject.size")
    assert_refused(image(annotations={"a": ["b"]}), None, "annotations must map")
    assert_refused(image(artifactType=["x"]), None, "artifactType must be a string")
    assert_refused(index(manifests="x"), None, "manifests must be a list")
    assert_refused(index(manifests=[{"mediaType": OCI_MANIFEST}]), None, "manifests[0].size")
    document = index()
    del document["manifests"]
    assert_refused(document, OCI_INDEX, "manifests must be a list")


# sniffing a stored payload's type


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (image(OCI_MANIFEST), OCI_MANIFEST),
        (image(DOCKER_MANIFEST), DOCKER_MANIFEST),
        (index(OCI_INDEX), OCI_INDEX),
        (index(DOCKER_LIST), DOCKER_LIST),
        (image(None), OCI_MANIFEST),
        (index(None), OCI_INDEX),
        (image(""), OCI_MANIFEST),
        ([], OCI_MANIFEST),
    ],
)
def test_sniff_media_type(document: Any, expected: str) -> None:
    assert sniff_media_type(payload(document)) == expected


def test_sniff_media_type_of_garbage() -> None:
    assert sniff_media_type(b"not json") == OCI_MANIFEST
    assert sniff_media_type(b"\xff") == OCI_MANIFEST
