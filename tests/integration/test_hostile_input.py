"""Input from the network that once crashed a handler or leaked into a header or the log, each
answered now with a 4xx in the OCI envelope (or ignored where a header is only advisory). The
property tests generate such inputs; these pin the cases found."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.api import Client, error_codes, sha256
from tests.servers import Server, moorage_config, run_moorage

DIGITS = "9" * 5000  # past Python's int-from-string limit (4300 digits)


def nested(depth: int) -> bytes:
    return b'{"schemaVersion": 2, "config": ' * depth + b"{}" + b"}" * depth


@pytest.mark.parametrize(
    "payload",
    [
        nested(10_000),
        b'{"schemaVersion": 2, "layers": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}",
        b'{"schemaVersion": ' + DIGITS.encode() + b"}",
        b'{"schemaVersion": 2, "config": {"size": NaN}}',
        b'{"schemaVersion": 2, "mediaType": "\xff\xfe"}',
    ],
)
def test_hostile_manifests_are_manifest_invalid(moorage: Server, payload: bytes) -> None:
    client = Client(moorage.url)
    for reference in ("v1", sha256(payload)):
        response = client.put_manifest("team/app", reference, payload)
        assert response.status_code == 400, response.text
        assert error_codes(response) == ["MANIFEST_INVALID"]
    assert client.request("GET", "/v2/team/app/manifests/v1").status_code == 404


def test_huge_numbers_in_ranges_are_416(moorage: Server) -> None:
    client = Client(moorage.url)
    digest = client.push_blob("team/app", b"some bytes")
    for header in (
        f"bytes={DIGITS}-",
        f"bytes=0-{DIGITS}",
        f"bytes=-{DIGITS}",
        f"bytes=1{'0' * 19}-",
    ):
        response = client.request("GET", f"/v2/team/app/blobs/{digest}", headers={"Range": header})
        assert response.status_code == 416, header
        assert error_codes(response) == ["RANGE_INVALID"]
    location = client.start_upload("team/app")
    for header in (f"0-{DIGITS}", f"{DIGITS}-1", f"bytes 0-9/{DIGITS}"):
        response = client.request(
            "PATCH", location, data=b"0123456789", headers={"Content-Range": header}
        )
        assert response.status_code == 416, header
        assert error_codes(response) == ["BLOB_UPLOAD_INVALID"]
        assert response.headers["Range"] == "0-0"  # the session is as it was
    chunk = client.request("PATCH", location, data=b"0123456789", headers={"Content-Range": "0-9"})
    assert chunk.status_code == 202


@pytest.mark.parametrize("n", [DIGITS, "-1", "1_000", " 5", "\u0663", "5x", ""])
def test_page_sizes_other_than_plain_numbers_are_refused(moorage: Server, n: str) -> None:
    client = Client(moorage.url)
    client.push_image("team/app", "v1")
    for path in ("/v2/_catalog", "/v2/team/app/tags/list"):
        response = client.request("GET", path, params={"n": n})
        assert response.status_code == 400, (path, n)
        assert error_codes(response) == ["PAGINATION_NUMBER_INVALID"]


@pytest.mark.parametrize(
    ("reference", "code", "says"),
    [
        ("-v1", "TAG_INVALID", "neither a tag"),
        ("v1%20", "TAG_INVALID", "neither a tag"),
        ("a" * 129, "TAG_INVALID", "nor a digest"),
        ("sha256:abc", "DIGEST_INVALID", "sha256 takes 64 lowercase hex characters"),
        ("md5:" + "0" * 32, "DIGEST_INVALID", "unsupported digest algorithm 'md5'"),
    ],
)
def test_references_that_are_neither_say_so(
    moorage: Server, reference: str, code: str, says: str
) -> None:
    client = Client(moorage.url)
    payload, _ = client.push_image("team/app", "v1")
    for method in ("GET", "PUT", "DELETE"):
        data: dict[str, Any] = {"data": payload} if method == "PUT" else {}
        response = client.request(method, f"/v2/team/app/manifests/{reference}", **data)
        assert response.status_code == 400, (method, response.text)
        assert error_codes(response) == [code]
        assert says in response.json()["errors"][0]["message"]


def test_request_ids_and_forwarded_hosts_are_taken_only_when_well_formed(
    moorage: Server,
) -> None:
    client = Client(moorage.url)
    kept = client.request("GET", "/v2/", headers={"X-Request-Id": "trace-42"})
    assert kept.headers["X-Request-Id"] == "trace-42"
    for hostile in ("a b", "x" * 200, "caf\u00e9".encode().decode("latin-1")):
        response = client.request("GET", "/v2/", headers={"X-Request-Id": hostile})
        assert response.headers["X-Request-Id"] not in (hostile, "")
    for headers, prefix in (
        ({"X-Forwarded-Host": "registry.example:443", "X-Forwarded-Proto": "https"},
         "https://registry.example:443/v2/"),
        ({"X-Forwarded-Host": 'evil"/x', "X-Forwarded-Proto": "https"},
         f"https://{moorage.host}/v2/"),
        ({"X-Forwarded-Proto": "javascript"}, f"http://{moorage.host}/v2/"),
        ({"X-Forwarded-Host": "a b", "Host": "also bad"}, "/v2/"),
    ):  # fmt: skip
        response = client.request("POST", "/v2/team/app/blobs/uploads/", headers=headers)
        assert response.status_code == 202
        assert response.headers["Location"].startswith(prefix), (headers, response.headers)


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Server]:
    config = moorage_config(tmp_path / "data", 0, http={"workers": 2})
    config["storage"]["cache"] = {"blobdescriptor": "inmemory"}
    with run_moorage(tmp_path / "run", config) as server:
        yield server


def concurrently(count: int, call: Any) -> list[requests.Response]:
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: call(), range(count)))


def test_concurrent_deletes_are_one_202_and_the_rest_404(two_workers: Server) -> None:
    """Deletes of one blob, one tag or one manifest racing each other (over two worker
    processes): exactly one succeeds, the others find nothing; none fails."""
    client = Client(two_workers.url)
    for round_ in range(5):
        name = f"team/app{round_}"
        payload, digest = client.push_image(name, "v1", seed=str(round_))
        assert client.put_manifest(name, "v2", payload).status_code == 201
        blob = client.push_blob(name, f"alone {round_}".encode())
        for path in (
            f"/v2/{name}/blobs/{blob}",
            f"/v2/{name}/manifests/v2",
            f"/v2/{name}/manifests/{digest}",
        ):
            answers = concurrently(8, lambda path=path: requests.delete(
                f"{two_workers.url}{path}", timeout=30))  # fmt: skip
            statuses = sorted(response.status_code for response in answers)
            assert statuses == [202] + [404] * 7, (path, statuses)
            for response in answers:
                if response.status_code == 404:
                    assert error_codes(response)[0] in ("BLOB_UNKNOWN", "MANIFEST_UNKNOWN")
        assert client.request("GET", f"/v2/{name}/manifests/v1").status_code == 404
        assert client.request("GET", f"/v2/{name}/tags/list").json()["tags"] == []
    assert "Traceback" not in two_workers.logs()
