"""The layout is distribution's, byte for byte: a root written by either registry is served by
the other."""

from __future__ import annotations

from moorage.registry.digest import Digest
from moorage.storage import paths

NAME = "library/alpine"
DIGEST = Digest.parse("sha256:" + "ab12" * 16)
OTHER = Digest.parse("sha256:" + "cd34" * 16)
SHA512 = Digest.parse("sha512:" + "ef56" * 32)
TAG = "3.19"
UPLOAD = "4f7e2f5c-6d1a-4b8e-9f3a-0c2d1e5b7a90"
HEX = "ab12" * 16
REPO = "/docker/registry/v2/repositories/library/alpine"


def test_roots() -> None:
    assert paths.ROOT == "/docker/registry/v2"
    assert paths.REPOSITORIES == "/docker/registry/v2/repositories"
    assert paths.BLOBS == "/docker/registry/v2/blobs"


def test_blobs() -> None:
    assert paths.blob_dir(DIGEST) == f"/docker/registry/v2/blobs/sha256/ab/{HEX}"
    assert paths.blob_data(DIGEST) == f"/docker/registry/v2/blobs/sha256/ab/{HEX}/data"
    assert paths.blob_data(SHA512) == (f"/docker/registry/v2/blobs/sha512/ef/{'ef56' * 32}/data")
    assert paths.blob_algorithm("sha256") == "/docker/registry/v2/blobs/sha256"
    assert paths.blob_shard("sha256", "ab") == "/docker/registry/v2/blobs/sha256/ab"


def test_repository() -> None:
    assert paths.repository(NAME) == REPO
    assert paths.repository("a") == "/docker/registry/v2/repositories/a"


def test_layer_link() -> None:
    assert paths.layers(NAME) == f"{REPO}/_layers"
    assert paths.layer_link(NAME, DIGEST) == f"{REPO}/_layers/sha256/{HEX}/link"


def test_manifests() -> None:
    assert paths.manifests(NAME) == f"{REPO}/_manifests"
    assert paths.manifest_revisions(NAME) == f"{REPO}/_manifests/revisions"
    assert paths.manifest_revision_link(NAME, DIGEST) == (
        f"{REPO}/_manifests/revisions/sha256/{HEX}/link"
    )


def test_tags() -> None:
    assert paths.tags(NAME) == f"{REPO}/_manifests/tags"
    assert paths.tag_dir(NAME, TAG) == f"{REPO}/_manifests/tags/3.19"
    assert paths.tag_current_link(NAME, TAG) == f"{REPO}/_manifests/tags/3.19/current/link"
    assert paths.tag_index_link(NAME, TAG, DIGEST) == (
        f"{REPO}/_manifests/tags/3.19/index/sha256/{HEX}/link"
    )


def test_uploads() -> None:
    assert paths.uploads(NAME) == f"{REPO}/_uploads"
    assert paths.upload_dir(NAME, UPLOAD) == f"{REPO}/_uploads/{UPLOAD}"
    assert paths.upload_data(NAME, UPLOAD) == f"{REPO}/_uploads/{UPLOAD}/data"
    assert paths.upload_started_at(NAME, UPLOAD) == f"{REPO}/_uploads/{UPLOAD}/startedat"


def test_referrers() -> None:
    assert paths.referrer_subjects(NAME) == f"{REPO}/_referrers"
    assert paths.referrers(NAME, DIGEST) == f"{REPO}/_referrers/sha256/{HEX}"
    assert paths.referrer_link(NAME, DIGEST, OTHER) == (
        f"{REPO}/_referrers/sha256/{HEX}/sha256/{'cd34' * 16}/link"
    )


def test_pull_records() -> None:
    assert paths.pulls(NAME) == f"{REPO}/_pulls"
    assert paths.tag_pull(NAME, TAG) == f"{REPO}/_pulls/tags/3.19"
    assert paths.manifest_pull(NAME, DIGEST) == f"{REPO}/_pulls/manifests/sha256/{HEX}"
