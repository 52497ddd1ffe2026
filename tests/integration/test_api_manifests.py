"""Manifests and referrers against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Client,
    error_codes,
    sha256,
)
from tests.servers import Server, moorage_config, run_moorage


@pytest.fixture
def client(moorage: Server) -> Client:
    return Client(moorage.url)


def _index(children: list[tuple[bytes, str]], media_type: str = OCI_INDEX) -> bytes:
    child_type = DOCKER_MANIFEST if media_type == DOCKER_LIST else OCI_MANIFEST
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                {
                    "mediaType": child_type,
                    "digest": sha256(payload),
                    "size": len(payload),
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for payload, arch in children
            ],
        }
    ).encode()


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_put_then_get_by_tag_and_digest_is_byte_exact(client: Client, media_type: str) -> None:
    # Odd formatting on purpose: the stored payload must be the pushed bytes, not a re-encoding.
    payload = client.manifest("lib/app", b"{}", [b"layer one"], media_type=media_type)
    payload = payload.replace(b", ", b",   ") + b"\n"
    response = client.put_manifest("lib/app", "v1", payload, media_type)
    assert response.status_code == 201, response.text
    digest = sha256(payload)
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["Location"].endswith(f"/v2/lib/app/manifests/{digest}")
    for reference in ("v1", digest):
        got = client.request("GET", f"/v2/lib/app/manifests/{reference}")
        assert got.status_code == 200
        assert got.content == payload
        assert got.headers["Content-Type"] == media_type
        assert got.headers["Docker-Content-Digest"] == digest
        head = client.request("HEAD", f"/v2/lib/app/manifests/{reference}")
        assert head.status_code == 200
        assert head.headers["Content-Length"] == str(len(payload))
        assert head.content == b""


def test_oci_manifest_without_media_type_field_is_served_as_oci(client: Client) -> None:
    document = json.loads(client.manifest("app", b"{}", [b"l"]))
    del document["mediaType"]
    payload = json.dumps(document).encode()
    assert client.put_manifest("app", "bare", payload).status_code == 201
    got = client.request("GET", "/v2/app/manifests/bare")
    assert got.headers["Content-Type"] == OCI_MANIFEST


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_index_with_children(client: Client, media_type: str) -> None:
    child_type = DOCKER_MANIFEST if media_type == DOCKER_LIST else OCI_MANIFEST
    children = []
    for arch in ("amd64", "arm64"):
        payload = client.manifest(
            "app", f'{{"a":"{arch}"}}'.encode(), [arch.encode()], media_type=child_type
        )
        assert client.put_manifest("app", sha256(payload), payload, child_type).status_code == 201
        children.append((payload, arch))
    index = _index(children, media_type)
    assert client.put_manifest("app", "multi", index, media_type).status_code == 201
    got = client.request("GET", "/v2/app/manifests/multi", headers={"Accept": media_type})
    assert got.status_code == 200
    assert got.content == index
    assert got.headers["Content-Type"] == media_type


def test_index_with_a_missing_child_is_manifest_blob_unknown(client: Client) -> None:
    """As distribution answers (2.8 measured): 400 MANIFEST_BLOB_UNKNOWN naming the child."""
    missing = client.manifest("app", b"{}", [b"x"])  # blobs pushed, manifest never put
    response = client.put_manifest("app", "broken", _index([(missing, "amd64")]), OCI_INDEX)
    assert response.status_code == 400
    assert error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"]
    assert response.json()["errors"][0]["detail"] == {"digest": sha256(missing)}
    assert client.request("GET", "/v2/app/manifests/broken").status_code == 404


def test_missing_layer_is_manifest_blob_unknown(client: Client) -> None:
    config_digest = client.push_blob("app", b"{}")
    absent = sha256(b"never uploaded")
    payload = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": 2,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": absent,
                    "size": 5,
                }
            ],
        }
    ).encode()
    response = client.put_manifest("app", "v1", payload)
    assert response.status_code == 400
    assert error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"]
    assert response.json()["errors"][0]["detail"] == {"digest": absent}


def test_schema1_is_refused_with_a_clear_message(client: Client) -> None:
    payload = json.dumps({"schemaVersion": 1, "name": "app", "tag": "v1", "fsLayers": []}).encode()
    response = client.put_manifest(
        "app", "v1", payload, "application/vnd.docker.distribution.manifest.v1+prettyjws"
    )
    assert response.status_code == 400
    assert error_codes(response) == ["MANIFEST_INVALID"]
    assert "schema 1" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize("payload", [b"not json", b"[]", b'{"schemaVersion": 2, "mediaType": 5}'])
def test_malformed_manifest_is_manifest_invalid(client: Client, payload: bytes) -> None:
    response = client.put_manifest("app", "v1", payload)
    assert response.status_code == 400
    assert error_codes(response) == ["MANIFEST_INVALID"]


def test_manifest_over_4_mib_is_413(client: Client) -> None:
    payload = json.dumps({"schemaVersion": 2, "pad": "x" * (4 * 1024 * 1024)}).encode()
    response = client.put_manifest("app", "big", payload)
    assert response.status_code == 413
    assert error_codes(response) == ["SIZE_INVALID"]


def test_manifest_just_under_4_mib_is_accepted(client: Client) -> None:
    payload = client.manifest(
        "app", b"{}", [b"l"], extra={"annotations": {"pad": "x" * (4 * 1024 * 1024 - 1000)}}
    )
    assert len(payload) <= 4 * 1024 * 1024
    assert client.put_manifest("app", "big", payload).status_code == 201


def test_put_by_digest_with_tags(client: Client) -> None:
    payload = client.manifest("app", b"{}", [b"tagged"])
    digest = sha256(payload)
    response = client.put_manifest("app", digest, payload, tag=["a", "b"])
    assert response.status_code == 201, response.text
    assert response.headers["OCI-Tag"] == "a,b"
    tags = client.request("GET", "/v2/app/tags/list").json()["tags"]
    assert tags == ["a", "b"]
    assert client.request("GET", "/v2/app/manifests/b").content == payload


def test_put_by_a_digest_that_does_not_match_is_refused(client: Client) -> None:
    payload = client.manifest("app", b"{}", [b"x"])
    response = client.put_manifest("app", sha256(b"other"), payload)
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]


def test_invalid_tag_parameter_is_refused(client: Client) -> None:
    payload = client.manifest("app", b"{}", [b"x"])
    response = client.put_manifest("app", sha256(payload), payload, tag=[".bad"])
    assert response.status_code == 400
    assert error_codes(response) == ["TAG_INVALID"]


def test_unknown_manifest_is_404(client: Client) -> None:
    client.push_image("app", "v1")
    for reference in ("nope", sha256(b"nothing")):
        response = client.request("GET", f"/v2/app/manifests/{reference}")
        assert response.status_code == 404
        assert error_codes(response) == ["MANIFEST_UNKNOWN"]


def test_accept_negotiation(client: Client) -> None:
    client.push_image("app", "v1")
    url = "/v2/app/manifests/v1"
    assert client.request("GET", url).status_code == 200
    assert client.request("GET", url, headers={"Accept": "*/*"}).status_code == 200
    both = f"{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.5"
    assert client.request("GET", url, headers={"Accept": both}).status_code == 200
    refused = client.request("GET", url, headers={"Accept": DOCKER_MANIFEST})
    assert refused.status_code == 404
    assert error_codes(refused) == ["MANIFEST_UNKNOWN"]


def test_artifact_with_empty_config_no_layers_and_subject(client: Client) -> None:
    image, image_digest = client.push_image("app", "v1")
    empty = client.push_blob("app", b"{}")
    artifact = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": {"mediaType": EMPTY_CONFIG, "digest": empty, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": image_digest, "size": len(image)},
            "annotations": {"org.example.kind": "sbom"},
        }
    ).encode()
    response = client.put_manifest("app", sha256(artifact), artifact)
    assert response.status_code == 201, response.text
    assert response.headers["OCI-Subject"] == image_digest

    referrers = client.request("GET", f"/v2/app/referrers/{image_digest}")
    assert referrers.status_code == 200
    assert referrers.headers["Content-Type"].startswith(OCI_INDEX)
    assert referrers.json() == {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256(artifact),
                "size": len(artifact),
                "artifactType": "application/vnd.example.sbom",
                "annotations": {"org.example.kind": "sbom"},
            }
        ],
    }


def test_referrers_filtering_and_deletion(client: Client) -> None:
    _, subject = client.push_image("app", "v1")
    pushed = {}
    for kind in ("sig", "sbom"):
        payload = client.manifest(
            "app",
            b"{}",
            [kind.encode()],
            config_type=f"application/vnd.example.{kind}",
            extra={"subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1}},
        )
        assert client.put_manifest("app", sha256(payload), payload).status_code == 201
        pushed[kind] = sha256(payload)

    everything = client.request("GET", f"/v2/app/referrers/{subject}")
    assert sorted(m["digest"] for m in everything.json()["manifests"]) == sorted(pushed.values())
    assert "OCI-Filters-Applied" not in everything.headers
    only_sig = client.request(
        "GET",
        f"/v2/app/referrers/{subject}",
        params={"artifactType": "application/vnd.example.sig"},
    )
    assert only_sig.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in only_sig.json()["manifests"]] == [pushed["sig"]]
    assert only_sig.json()["manifests"][0]["artifactType"] == "application/vnd.example.sig"

    assert client.request("DELETE", f"/v2/app/manifests/{pushed['sig']}").status_code == 202
    after = client.request("GET", f"/v2/app/referrers/{subject}").json()["manifests"]
    assert [m["digest"] for m in after] == [pushed["sbom"]]


def test_referrers_of_an_unknown_digest_is_an_empty_index(client: Client) -> None:
    response = client.request("GET", f"/v2/app/referrers/{sha256(b'nothing')}")
    assert response.status_code == 200
    assert response.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


def test_referrers_with_a_malformed_digest_is_400(client: Client) -> None:
    response = client.request("GET", "/v2/app/referrers/sha256:zzz")
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]


def test_delete_tag_untags_only(client: Client) -> None:
    payload, digest = client.push_image("app", "v1")
    assert client.put_manifest("app", "v2", payload).status_code == 201
    assert client.request("DELETE", "/v2/app/manifests/v1").status_code == 202
    assert client.request("GET", "/v2/app/manifests/v1").status_code == 404
    assert client.request("GET", f"/v2/app/manifests/{digest}").status_code == 200
    assert client.request("GET", "/v2/app/tags/list").json()["tags"] == ["v2"]


def test_delete_by_digest_removes_the_manifest_and_its_tags(client: Client) -> None:
    payload, digest = client.push_image("app", "v1")
    client.put_manifest("app", "latest", payload)
    _, other = client.push_image("app", "keep", seed="other")
    assert client.request("DELETE", f"/v2/app/manifests/{digest}").status_code == 202
    assert client.request("GET", f"/v2/app/manifests/{digest}").status_code == 404
    assert client.request("GET", "/v2/app/manifests/latest").status_code == 404
    assert client.request("GET", "/v2/app/tags/list").json()["tags"] == ["keep"]
    assert client.request("GET", f"/v2/app/manifests/{other}").status_code == 200
    again = client.request("DELETE", f"/v2/app/manifests/{digest}")
    assert again.status_code == 404
    assert error_codes(again) == ["MANIFEST_UNKNOWN"]


def test_deletes_are_unsupported_unless_enabled(tmp_path: Path) -> None:
    config = moorage_config(tmp_path / "data", 0)
    config["storage"]["delete"] = {"enabled": False}
    with run_moorage(tmp_path, config) as server:
        client = Client(server.url)
        _, digest = client.push_image("app", "v1")
        layer = client.push_blob("app", b"a layer")
        for path in (
            "/v2/app/manifests/v1",
            f"/v2/app/manifests/{digest}",
            f"/v2/app/blobs/{layer}",
        ):
            response = client.request("DELETE", path)
            assert response.status_code == 405
            assert error_codes(response) == ["UNSUPPORTED"]
        assert client.request("GET", "/v2/app/manifests/v1").status_code == 200


def test_read_only_mode_refuses_writes_and_serves_reads(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with run_moorage(tmp_path / "rw", root=root) as writable:
        payload, digest = Client(writable.url).push_image("app", "v1")
    config = moorage_config(root, 0)
    config["storage"]["maintenance"] = {"readonly": {"enabled": True}}
    with run_moorage(tmp_path / "ro", config) as server:
        client = Client(server.url)
        assert client.request("GET", "/v2/app/manifests/v1").content == payload
        writes = [
            client.request("POST", "/v2/app/blobs/uploads/"),
            client.put_manifest("app", "v2", payload),
            client.request("DELETE", f"/v2/app/manifests/{digest}"),
            client.request("PATCH", "/v2/app/blobs/uploads/x"),
        ]
        for response in writes:
            assert response.status_code == 405
            assert error_codes(response) == ["UNSUPPORTED"]
        assert client.request("GET", "/v2/app/tags/list").json()["tags"] == ["v1"]
