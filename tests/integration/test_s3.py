"""moorage on S3 (a real SeaweedFS): uploads whose chunks straddle part boundaries, sessions
resumed by another process, redirects, deletes, and flat memory."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.api import Client, error_codes, round_trip_big_blob, sha256
from tests.servers import S3Server, read_back, run_moorage

MiB = 1024 * 1024


def _config(store: S3Server, **storage: Any) -> dict[str, Any]:
    store.create_bucket("moorage-tests")
    return {
        "version": "0.1",
        "log": {"level": "info"},
        "storage": {
            "s3": store.params("moorage-tests", rootdirectory=f"/{uuid.uuid4().hex}"),
            "delete": {"enabled": True},
            "redirect": {"disable": True},
            **storage,
        },
        "http": {"secret": "s3-tests-shared-secret"},
    }


@pytest.mark.parametrize(
    "chunks",
    [
        [3 * MiB, 4 * MiB, 6 * MiB, 1],  # tails carried over, parts cut mid-chunk
        [5 * MiB, 5 * MiB],  # exactly a part each: empty tails
        [1, 2, 3],  # never a whole part: all in the tail
        [12 * MiB + 7],  # one PATCH, several parts and a tail
    ],
)
def test_chunked_upload_straddling_parts(
    tmp_path: Path, s3_store: S3Server, chunks: list[int]
) -> None:
    data = os.urandom(sum(chunks))
    with run_moorage(tmp_path, _config(s3_store)) as server:
        client = Client(server.url)
        location = client.start_upload("s3/app")
        offset = 0
        for size in chunks:
            piece = data[offset : offset + size]
            response = client.request(
                "PATCH",
                location,
                data=piece,
                headers={"Content-Range": f"{offset}-{offset + size - 1}"},
            )
            assert response.status_code == 202, response.text
            offset += size
            assert response.headers["Range"] == f"0-{offset - 1}"
            assert client.request("GET", location).headers["Range"] == f"0-{offset - 1}"
            location = response.headers["Location"]
        done = client.request("PUT", location, params={"digest": sha256(data)})
        assert done.status_code == 201, done.text
        got = client.request("GET", f"/v2/s3/app/blobs/{sha256(data)}")
        assert got.status_code == 200
        assert got.content == data
        ranged = client.request(
            "GET", f"/v2/s3/app/blobs/{sha256(data)}", headers={"Range": "bytes=1-5"}
        )
        assert ranged.status_code == 206
        assert ranged.content == data[1:6]


def test_session_continued_by_another_process_continues_the_running_digest(
    tmp_path: Path, s3_store: S3Server
) -> None:
    """The second process restores the running hash from the state the first saved with the
    session in the bucket: no read-back of the stored bytes."""
    data = os.urandom(11 * MiB + 3)
    config = _config(s3_store)
    with run_moorage(tmp_path / "first", config) as first:
        client = Client(first.url)
        location = client.start_upload("s3/app")
        half = 6 * MiB + 1
        response = client.request("PATCH", location, data=data[:half])
        assert response.status_code == 202
        path = urlsplit(response.headers["Location"])
    with run_moorage(tmp_path / "second", config) as second:
        client = Client(second.url)
        url = f"{second.url}{path.path}?{path.query}"
        assert client.request("GET", url).headers["Range"] == f"0-{half - 1}"
        rest = client.request("PATCH", url, data=data[half:])
        assert rest.status_code == 202, rest.text
        done = client.request("PUT", rest.headers["Location"], params={"digest": sha256(data)})
        assert done.status_code == 201, done.text
        assert client.request("GET", f"/v2/s3/app/blobs/{sha256(data)}").content == data
        assert read_back(second) == []


def test_digest_mismatch_on_s3_commits_nothing(tmp_path: Path, s3_store: S3Server) -> None:
    with run_moorage(tmp_path, _config(s3_store)) as server:
        client = Client(server.url)
        location = client.start_upload("s3/app")
        client.request("PATCH", location, data=os.urandom(6 * MiB))
        wrong = sha256(b"not this")
        response = client.request("PUT", location, params={"digest": wrong})
        assert response.status_code == 400
        assert error_codes(response) == ["DIGEST_INVALID"]
        assert client.request("HEAD", f"/v2/s3/app/blobs/{wrong}").status_code == 404
        assert client.request("GET", location).status_code == 404


def test_blob_get_redirects_to_a_presigned_url(tmp_path: Path, s3_store: S3Server) -> None:
    config = _config(s3_store)
    del config["storage"]["redirect"]  # redirects are on by default
    with run_moorage(tmp_path, config) as server:
        client = Client(server.url)
        payload, _ = client.push_image("s3/app", "v1")
        layer = client.push_blob("s3/app", b"redirected layer")
        response = client.request("GET", f"/v2/s3/app/blobs/{layer}")
        assert response.status_code == 307
        target = response.headers["Location"]
        assert target.startswith(s3_store.endpoint)
        assert "Signature" in target or "X-Amz-Signature" in target
        assert requests.get(target, timeout=30).content == b"redirected layer"
        head = client.request("HEAD", f"/v2/s3/app/blobs/{layer}")
        assert head.status_code in (200, 307)
        # Manifests are never redirected.
        assert client.request("GET", "/v2/s3/app/manifests/v1").content == payload


def test_deletes_and_catalog_on_s3(tmp_path: Path, s3_store: S3Server) -> None:
    with run_moorage(tmp_path, _config(s3_store)) as server:
        client = Client(server.url)
        _, digest = client.push_image("s3/one", "v1")
        client.push_image("s3/two", "v1", seed="two")
        assert client.request("GET", "/v2/_catalog").json()["repositories"] == ["s3/one", "s3/two"]
        assert client.request("DELETE", "/v2/s3/one/manifests/v1").status_code == 202
        assert client.request("GET", "/v2/s3/one/tags/list").json()["tags"] == []
        assert client.request("DELETE", f"/v2/s3/one/manifests/{digest}").status_code == 202
        assert client.request("GET", f"/v2/s3/one/manifests/{digest}").status_code == 404


def test_memory_stays_flat_on_s3(tmp_path: Path, s3_store: S3Server) -> None:
    with run_moorage(tmp_path, _config(s3_store)) as server:
        round_trip_big_blob(server.url, server.process.pid, "s3/big", 256, b"s3")


def test_workers_on_s3_share_the_loaded_client_data(tmp_path: Path, s3_store: S3Server) -> None:
    """Two workers on S3 with the inmemory cache: a push, pulls from both workers, the catalog
    and a delete seen by both. The supervisor preloads the S3 client's service data before
    forking (moorage/workers.py), which must leave each worker able to make its own client."""
    config = _config(s3_store, cache={"blobdescriptor": "inmemory"})
    config["http"]["workers"] = 2
    with run_moorage(tmp_path, config) as server:
        client = Client(server.url)
        payload, digest = client.push_image("s3/workers", "v1", seed="workers")
        seen: set[str] = set()
        for _ in range(24):  # new connections, spread over both workers by the kernel
            with requests.Session() as fresh:
                got = fresh.get(
                    f"{server.url}/v2/s3/workers/manifests/v1",
                    headers={"Accept": "*/*", "Connection": "close"},
                    timeout=30,
                )
                assert got.status_code == 200 and got.content == payload
                seen.add(got.headers["X-Request-Id"].split("-")[0])
                names = fresh.get(f"{server.url}/v2/_catalog", timeout=30).json()
                assert names["repositories"] == ["s3/workers"]
        assert len(seen) == 2
        assert client.request("DELETE", f"/v2/s3/workers/manifests/{digest}").status_code == 202
        for _ in range(12):
            with requests.Session() as fresh:
                gone = fresh.get(
                    f"{server.url}/v2/s3/workers/manifests/{digest}",
                    headers={"Accept": "*/*", "Connection": "close"},
                    timeout=30,
                )
                assert gone.status_code == 404
        assert "could not preload" not in server.logs()
