"""Blob GET, HEAD and DELETE against a real server."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.api import Client, error_codes, sha256
from tests.servers import Server, moorage_config, run_moorage


@pytest.fixture
def client(moorage: Server) -> Client:
    return Client(moorage.url)


def test_get_serves_the_blob_with_its_headers(client: Client) -> None:
    data = os.urandom(300_000)
    digest = client.push_blob("lib/app", data)
    response = client.request("GET", f"/v2/lib/app/blobs/{digest}")
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["ETag"] == f'"{digest}"'
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_head_has_the_length_and_no_body(client: Client) -> None:
    data = b"x" * 1234
    digest = client.push_blob("app", data)
    response = client.request("HEAD", f"/v2/app/blobs/{digest}")
    assert response.status_code == 200
    assert response.headers["Content-Length"] == "1234"
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.content == b""


@pytest.mark.parametrize(
    ("header", "expected", "content_range"),
    [
        ("bytes=0-9", slice(0, 10), "bytes 0-9/1000"),
        ("bytes=990-", slice(990, 1000), "bytes 990-999/1000"),
        ("bytes=-5", slice(995, 1000), "bytes 995-999/1000"),
        ("bytes=500-5000", slice(500, 1000), "bytes 500-999/1000"),
    ],
)
def test_a_single_range_is_answered_206(
    client: Client, header: str, expected: slice, content_range: str
) -> None:
    data = bytes(range(250)) * 4
    digest = client.push_blob("app", data)
    response = client.request("GET", f"/v2/app/blobs/{digest}", headers={"Range": header})
    assert response.status_code == 206
    assert response.content == data[expected]
    assert response.headers["Content-Range"] == content_range


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5-2", "bytes=-0", "bytes=abc"])
def test_an_unsatisfiable_range_is_416(client: Client, header: str) -> None:
    digest = client.push_blob("app", b"y" * 1000)
    response = client.request("GET", f"/v2/app/blobs/{digest}", headers={"Range": header})
    assert response.status_code == 416
    assert error_codes(response) == ["RANGE_INVALID"]


def test_several_ranges_get_the_whole_blob(client: Client) -> None:
    data = b"z" * 100
    digest = client.push_blob("app", data)
    response = client.request("GET", f"/v2/app/blobs/{digest}", headers={"Range": "bytes=0-1,5-6"})
    assert response.status_code == 200
    assert response.content == data


def test_if_none_match_is_not_modified(client: Client) -> None:
    digest = client.push_blob("app", b"cached")
    response = client.request(
        "GET", f"/v2/app/blobs/{digest}", headers={"If-None-Match": f'"{digest}"'}
    )
    assert response.status_code == 304


def test_unknown_blob_is_404(client: Client) -> None:
    response = client.request("GET", f"/v2/app/blobs/{sha256(b'never pushed')}")
    assert response.status_code == 404
    assert error_codes(response) == ["BLOB_UNKNOWN"]


def test_a_blob_of_another_repository_is_not_visible(client: Client) -> None:
    digest = client.push_blob("one", b"private to one")
    response = client.request("GET", f"/v2/two/blobs/{digest}")
    assert response.status_code == 404
    assert error_codes(response) == ["BLOB_UNKNOWN"]


@pytest.mark.parametrize(
    "digest", ["sha256:abc", "md5:" + "0" * 32, "sha256:" + "A" * 64, "nodigest"]
)
def test_malformed_digest_is_400(client: Client, digest: str) -> None:
    response = client.request("GET", f"/v2/app/blobs/{digest}")
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]


def test_delete_unlinks_the_blob(client: Client) -> None:
    digest = client.push_blob("app", b"to delete")
    response = client.request("DELETE", f"/v2/app/blobs/{digest}")
    assert response.status_code == 202
    assert client.request("HEAD", f"/v2/app/blobs/{digest}").status_code == 404
    again = client.request("DELETE", f"/v2/app/blobs/{digest}")
    assert again.status_code == 404
    assert error_codes(again) == ["BLOB_UNKNOWN"]


def test_sha512_blobs_are_stored_and_served(client: Client) -> None:
    data = b"sha512 content"
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    response = client.request(
        "POST", "/v2/app/blobs/uploads/", params={"digest": digest}, data=data
    )
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == digest
    fetched = client.request("GET", f"/v2/app/blobs/{digest}")
    assert fetched.status_code == 200
    assert fetched.content == data


def test_blob_content_missing_from_storage_is_404_not_500(client: Client, moorage: Server) -> None:
    digest = client.push_blob("app", b"will vanish")
    assert moorage.root is not None
    hex_ = digest.split(":")[1]
    (moorage.root / f"docker/registry/v2/blobs/sha256/{hex_[:2]}/{hex_}/data").unlink()
    response = client.request("GET", f"/v2/app/blobs/{digest}")
    assert response.status_code == 404
    assert error_codes(response) == ["BLOB_UNKNOWN"]


def test_the_cache_never_reports_a_deleted_blob(tmp_path: Path) -> None:
    """distribution's stale-cache bug: a deleted layer still reported present. Here the
    deleting request forgets it."""
    config = moorage_config(tmp_path / "data", 0)
    config["storage"]["cache"] = {"blobdescriptor": "inmemory"}
    with run_moorage(tmp_path, config) as server:
        client = Client(server.url)
        _, manifest_digest = client.push_image("app", "v1")
        layer = client.push_blob("app", b"cached layer")
        for _ in range(3):  # warm the cache
            assert client.request("HEAD", f"/v2/app/blobs/{layer}").status_code == 200
            assert client.request("HEAD", f"/v2/app/blobs/{manifest_digest}").status_code == 200
        assert client.request("DELETE", f"/v2/app/blobs/{layer}").status_code == 202
        assert client.request("HEAD", f"/v2/app/blobs/{layer}").status_code == 404
        assert client.request("GET", f"/v2/app/blobs/{layer}").status_code == 404
        assert client.request("DELETE", f"/v2/app/manifests/{manifest_digest}").status_code == 202
        assert client.request("HEAD", f"/v2/app/blobs/{manifest_digest}").status_code == 404
        assert client.request("GET", f"/v2/app/manifests/{manifest_digest}").status_code == 404
        # A manifest naming the deleted layer is refused: the cache does not vouch for it.
        broken = client.manifest("app", b"{}", [])
        document = json.loads(broken)
        document["layers"] = [
            {"mediaType": "application/octet-stream", "digest": layer, "size": 12}
        ]
        refused = client.put_manifest("app", "v2", json.dumps(document).encode())
        assert refused.status_code == 400
        assert error_codes(refused) == ["MANIFEST_BLOB_UNKNOWN"]
        # Pushed again, it is served again.
        client.push_blob("app", b"cached layer")
        assert client.request("GET", f"/v2/app/blobs/{layer}").content == b"cached layer"
