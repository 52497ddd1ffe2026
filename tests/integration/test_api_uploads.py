"""Blob uploads against a real server: monolithic, streamed, chunked, resumed, mounted."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.api import Client, error_codes, sha256
from tests.servers import Server, moorage_config, read_back, run_moorage


@pytest.fixture
def client(moorage: Server) -> Client:
    return Client(moorage.url)


def test_post_answers_with_a_session(client: Client) -> None:
    response = client.request("POST", "/v2/app/blobs/uploads/")
    assert response.status_code == 202
    uuid = response.headers["Docker-Upload-UUID"]
    location = urlsplit(response.headers["Location"])
    assert location.path == f"/v2/app/blobs/uploads/{uuid}"
    assert location.query.startswith("_state=")
    assert response.headers["Range"] == "0-0"
    assert response.headers["Content-Length"] == "0"


def test_post_then_put_with_the_whole_body(client: Client) -> None:
    data = os.urandom(100_000)
    location = client.start_upload("app")
    response = client.request("PUT", location, params={"digest": sha256(data)}, data=data)
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == sha256(data)
    assert response.headers["Location"].endswith(f"/v2/app/blobs/{sha256(data)}")
    assert client.request("GET", f"/v2/app/blobs/{sha256(data)}").content == data


def test_streamed_patch_without_content_range(client: Client) -> None:
    parts = [os.urandom(70_000) for _ in range(5)]
    data = b"".join(parts)
    location = client.start_upload("app")

    def body() -> Iterator[bytes]:
        yield from parts  # chunked transfer encoding, no Content-Length

    response = client.request("PATCH", location, data=body())
    assert response.status_code == 202, response.text
    assert response.headers["Range"] == f"0-{len(data) - 1}"
    done = client.request("PUT", response.headers["Location"], params={"digest": sha256(data)})
    assert done.status_code == 201, done.text
    assert client.request("GET", f"/v2/app/blobs/{sha256(data)}").content == data


def test_chunked_upload_with_content_range_and_status(client: Client) -> None:
    data = os.urandom(250_000)
    chunks = [data[:100_000], data[100_000:200_000], data[200_000:]]
    location = client.start_upload("app")
    offset = 0
    for chunk in chunks:
        response = client.request(
            "PATCH",
            location,
            data=chunk,
            headers={"Content-Range": f"{offset}-{offset + len(chunk) - 1}"},
        )
        assert response.status_code == 202, response.text
        offset += len(chunk)
        assert response.headers["Range"] == f"0-{offset - 1}"
        location = response.headers["Location"]
    status = client.request("GET", location)
    assert status.status_code == 204
    assert status.headers["Range"] == f"0-{len(data) - 1}"
    assert client.request("PUT", location, params={"digest": sha256(data)}).status_code == 201


@pytest.mark.parametrize("start", [0, 50, 150])
def test_out_of_order_or_overlapping_chunk_is_416_and_keeps_the_session(
    client: Client, start: int
) -> None:
    data = os.urandom(200)
    location = client.start_upload("app")
    first = client.request("PATCH", location, data=data[:100], headers={"Content-Range": "0-99"})
    assert first.status_code == 202
    bad = client.request(
        "PATCH",
        location,
        data=data[start : start + 50],
        headers={"Content-Range": f"{start}-{start + 49}"},
    )
    assert bad.status_code == 416
    assert bad.headers["Range"] == "0-99"
    assert error_codes(bad) == ["BLOB_UPLOAD_INVALID"]
    assert client.request("GET", location).headers["Range"] == "0-99"
    rest = client.request("PATCH", location, data=data[100:], headers={"Content-Range": "100-199"})
    assert rest.status_code == 202
    assert client.request("PUT", location, params={"digest": sha256(data)}).status_code == 201


@pytest.mark.parametrize("content_range", ["garbage", "10-5", "0-99"])
def test_malformed_or_mismatched_content_range_is_416(client: Client, content_range: str) -> None:
    location = client.start_upload("app")
    response = client.request(
        "PATCH", location, data=b"a" * 10, headers={"Content-Range": content_range}
    )
    assert response.status_code == 416
    assert client.request("GET", location).headers["Range"] == "0-0"


def test_final_chunk_on_put_with_content_range(client: Client) -> None:
    data = os.urandom(5000)
    location = client.start_upload("app")
    client.request("PATCH", location, data=data[:3000], headers={"Content-Range": "0-2999"})
    response = client.request(
        "PUT",
        location,
        params={"digest": sha256(data)},
        data=data[3000:],
        headers={"Content-Range": "3000-4999"},
    )
    assert response.status_code == 201, response.text
    assert client.request("GET", f"/v2/app/blobs/{sha256(data)}").content == data


def test_digest_mismatch_commits_nothing(client: Client) -> None:
    location = client.start_upload("app")
    wrong = sha256(b"something else")
    response = client.request("PUT", location, params={"digest": wrong}, data=b"actual bytes")
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]
    assert client.request("HEAD", f"/v2/app/blobs/{wrong}").status_code == 404
    assert client.request("HEAD", f"/v2/app/blobs/{sha256(b'actual bytes')}").status_code == 404


def test_monolithic_post_with_wrong_digest_commits_nothing(client: Client) -> None:
    wrong = sha256(b"other")
    response = client.request(
        "POST", "/v2/app/blobs/uploads/", params={"digest": wrong}, data=b"payload"
    )
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]
    assert client.request("HEAD", f"/v2/app/blobs/{wrong}").status_code == 404


def test_put_without_digest_is_refused(client: Client) -> None:
    location = client.start_upload("app")
    response = client.request("PUT", location, data=b"abc")
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]


def test_delete_cancels_the_session(client: Client) -> None:
    location = client.start_upload("app")
    client.request("PATCH", location, data=b"partial")
    assert client.request("DELETE", location).status_code == 204
    gone = client.request("GET", location)
    assert gone.status_code == 404
    assert error_codes(gone) == ["BLOB_UPLOAD_UNKNOWN"]


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_unknown_session_is_404(client: Client, method: str) -> None:
    response = client.request(
        method,
        "/v2/app/blobs/uploads/5b6c9b33-0c71-4f5e-9d56-1e2f3a4b5c6d",
        params={"digest": sha256(b"")},
    )
    assert response.status_code == 404
    assert error_codes(response) == ["BLOB_UPLOAD_UNKNOWN"]


def test_mount_from_another_repository(client: Client) -> None:
    digest = client.push_blob("source", b"shared layer")
    response = client.request(
        "POST", "/v2/target/blobs/uploads/", params={"mount": digest, "from": "source"}
    )
    assert response.status_code == 201
    assert response.headers["Docker-Content-Digest"] == digest
    assert client.request("GET", f"/v2/target/blobs/{digest}").content == b"shared layer"


def test_mount_without_from_when_the_blob_is_known(client: Client) -> None:
    digest = client.push_blob("source", b"known layer")
    response = client.request("POST", "/v2/target/blobs/uploads/", params={"mount": digest})
    assert response.status_code == 201
    assert client.request("HEAD", f"/v2/target/blobs/{digest}").status_code == 200


def test_mount_of_an_unknown_blob_falls_back_to_an_upload(client: Client) -> None:
    client.push_blob("source", b"some layer")
    response = client.request(
        "POST",
        "/v2/target/blobs/uploads/",
        params={"mount": sha256(b"not there"), "from": "source"},
    )
    assert response.status_code == 202
    assert "/v2/target/blobs/uploads/" in response.headers["Location"]


def test_mount_from_a_repository_without_the_blob_falls_back(client: Client) -> None:
    digest = client.push_blob("elsewhere", b"layer in elsewhere")
    response = client.request(
        "POST", "/v2/target/blobs/uploads/", params={"mount": digest, "from": "source"}
    )
    assert response.status_code == 202


def test_sha512_chunked_upload_with_digest_algorithm(client: Client) -> None:
    data = os.urandom(10_000)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    location = client.start_upload("app", **{"digest-algorithm": "sha512"})
    client.request("PATCH", location, data=data)
    response = client.request("PUT", location, params={"digest": digest})
    assert response.status_code == 201, response.text
    assert client.request("GET", f"/v2/app/blobs/{digest}").content == data


def test_unsupported_digest_algorithm_is_refused(client: Client) -> None:
    response = client.request("POST", "/v2/app/blobs/uploads/", params={"digest-algorithm": "md5"})
    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]


def test_finishing_with_another_algorithm_rederives_the_digest(client: Client) -> None:
    data = os.urandom(3000)
    location = client.start_upload("app")  # running sha256
    client.request("PATCH", location, data=data)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    assert client.request("PUT", location, params={"digest": digest}).status_code == 201


def _raw_patch_then_hang_up(location: str, declared: int, sent: bytes) -> None:
    """Sends a PATCH that declares `declared` bytes, sends fewer, and closes the connection."""
    url = urlsplit(location)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        head = (
            f"PATCH {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n"
        )
        sock.sendall(head.encode() + sent)


def test_upload_resumes_after_a_failed_patch(client: Client) -> None:
    data = os.urandom(200_000)
    location = client.start_upload("app")
    _raw_patch_then_hang_up(location, len(data), data[:80_000])
    received = 0
    for _ in range(100):  # the server notices the hang-up asynchronously
        status = client.request("GET", location)
        assert status.status_code == 204
        received = int(status.headers["Range"].split("-")[1]) + 1
        if received == 80_000:
            break
    assert 0 < received <= 80_000
    rest = client.request(
        "PATCH",
        location,
        data=data[received:],
        headers={"Content-Range": f"{received}-{len(data) - 1}"},
    )
    assert rest.status_code == 202, rest.text
    assert client.request("PUT", location, params={"digest": sha256(data)}).status_code == 201
    assert client.request("GET", f"/v2/app/blobs/{sha256(data)}").content == data


def session_dir(root: Path, name: str, location: str) -> Path:
    upload_id = urlsplit(location).path.rpartition("/")[2]
    return root / "docker/registry/v2/repositories" / name / "_uploads" / upload_id


def test_upload_session_survives_a_restart(tmp_path: Path) -> None:
    """The restarted server continues the running digest from the state the first one saved,
    without reading the stored bytes back."""
    data = os.urandom(300_000)
    root = tmp_path / "data"
    with run_moorage(tmp_path / "first", root=root) as first:
        client = Client(first.url)
        location = client.start_upload("app")
        client.request(
            "PATCH", location, data=data[:120_000], headers={"Content-Range": "0-119999"}
        )
        path = urlsplit(location).path
    with run_moorage(tmp_path / "second", root=root) as second:
        client = Client(second.url)
        status = client.request("GET", path)
        assert status.status_code == 204
        assert status.headers["Range"] == "0-119999"
        rest = client.request(
            "PATCH", path, data=data[120_000:], headers={"Content-Range": f"120000-{len(data) - 1}"}
        )
        assert rest.status_code == 202
        done = client.request("PUT", path, params={"digest": sha256(data)})
        assert done.status_code == 201, done.text
        assert client.request("GET", f"/v2/app/blobs/{sha256(data)}").content == data
        assert read_back(second) == []


def test_each_chunk_saves_the_running_hash_state_with_the_session(moorage: Server) -> None:
    """`_uploads/<id>/hashstates/sha256/<offset>` after each PATCH, in Go's encoding of
    crypto/sha256's state as distribution writes it: magic, 8 state words, the partial block
    zero-filled, the length."""
    assert moorage.root is not None
    client = Client(moorage.url)
    data = os.urandom(200_000)
    location = client.start_upload("app")
    session = session_dir(moorage.root, "app", location)
    for start, end in ((0, 100), (100, 150_000), (150_000, 200_000)):
        patched = client.request(
            "PATCH", location, data=data[start:end], headers={"Content-Range": f"{start}-{end - 1}"}
        )
        assert patched.status_code == 202, patched.text
        location = patched.headers["Location"]
        state = (session / "hashstates/sha256" / str(end)).read_bytes()
        assert len(state) == 4 + 32 + 64 + 8
        assert state[:4] == b"sha\x03"
        partial = data[end - end % 64 : end]
        assert state[36:100] == partial + bytes(64 - len(partial))
        assert int.from_bytes(state[100:], "big") == end
    assert sorted(p.name for p in (session / "hashstates/sha256").iterdir()) == [
        "100",
        "150000",
        "200000",
    ]
    assert client.request("PUT", location, params={"digest": sha256(data)}).status_code == 201
    assert not session.exists()
    assert read_back(moorage) == []


@pytest.mark.parametrize("damage", ["malformed", "of other bytes", "missing"])
def test_a_wrong_saved_state_costs_a_read_back_never_a_wrong_digest(
    tmp_path: Path, damage: str
) -> None:
    """A saved state that is not what the session's bytes make: the server that continues the
    session reads the stored bytes back, and the digest is checked against them."""
    data = os.urandom(70_000)
    root = tmp_path / "data"
    with run_moorage(tmp_path / "first", root=root) as first:
        location = Client(first.url).start_upload("app")
        assert Client(first.url).request("PATCH", location, data=data[:50_000]).status_code == 202
    state = session_dir(root, "app", location) / "hashstates/sha256/50000"
    if damage == "malformed":
        state.write_bytes(state.read_bytes()[:-1])
    elif damage == "of other bytes":
        forged = bytearray(state.read_bytes())
        forged[4] ^= 1  # a state word
        state.write_bytes(bytes(forged))
    else:
        state.unlink()
    with run_moorage(tmp_path / "second", root=root) as second:
        client = Client(second.url)
        path = urlsplit(location).path
        assert client.request("PATCH", path, data=data[50_000:]).status_code == 202
        done = client.request("PUT", path, params={"digest": sha256(data)})
        assert done.status_code == 201, done.text
        assert client.request("GET", f"/v2/app/blobs/{sha256(data)}").content == data
        assert len(read_back(second)) == 1, second.logs()


def test_a_sha512_session_continues_in_another_process(tmp_path: Path) -> None:
    """The session's algorithm goes with it (its empty state is saved at the start), so a
    process that did not start it hashes in sha512; only the sha256 the content is stored
    under is read back, as for every sha512 upload."""
    data = os.urandom(90_000)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    root = tmp_path / "data"
    with run_moorage(tmp_path / "first", root=root) as first:
        location = Client(first.url).start_upload("app", **{"digest-algorithm": "sha512"})
    assert (session_dir(root, "app", location) / "hashstates/sha512/0").is_file()
    with run_moorage(tmp_path / "second", root=root) as second:
        client = Client(second.url)
        path = urlsplit(location).path
        assert client.request("PATCH", path, data=data[:40_000]).status_code == 202
    assert (session_dir(root, "app", location) / "hashstates/sha512/40000").is_file()
    with run_moorage(tmp_path / "third", root=root) as third:
        client = Client(third.url)
        assert client.request("PATCH", path, data=data[40_000:]).status_code == 202
        done = client.request("PUT", path, params={"digest": digest})
        assert done.status_code == 201, done.text
        assert client.request("GET", f"/v2/app/blobs/{digest}").content == data
        (line,) = read_back(third)
        assert "sha256 (hashed as sha512)" in line


def test_a_tampered_upload_state_is_refused(client: Client) -> None:
    location = client.start_upload("app")
    other = client.start_upload("app")
    other_state = urlsplit(other).query
    forged = f"{location.split('?')[0]}?{other_state}"
    response = client.request("PATCH", forged, data=b"abc")
    assert response.status_code == 400
    assert error_codes(response) == ["BLOB_UPLOAD_INVALID"]
    garbled = location[:-4] + "AAAA"
    assert client.request("GET", garbled).status_code == 400
    assert client.request("GET", location).status_code == 204


def test_upload_url_from_before_a_restart_works_with_a_shared_secret(tmp_path: Path) -> None:
    data = os.urandom(1000)
    root = tmp_path / "data"
    config = moorage_config(root, 0, http={"secret": "shared-secret-for-replicas"})
    with run_moorage(tmp_path / "a", config) as first:
        location = Client(first.url).start_upload("app")
        query = urlsplit(location).query
    with run_moorage(tmp_path / "b", config) as second:
        client = Client(second.url)
        url = f"{second.url}{urlsplit(location).path}?{query}"
        assert client.request("PATCH", url, data=data).status_code == 202
        assert client.request("PUT", url, params={"digest": sha256(data)}).status_code == 201
