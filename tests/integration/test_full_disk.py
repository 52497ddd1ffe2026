"""A full disk: moorage on a small tmpfs (mounted here, as root) that a ballast file fills while
blobs and manifests are pushed.

Each push that finds no space gets an OCI error envelope, 507 `UNAVAILABLE`, whose message says
the registry's storage is full; nothing partial is committed or served (no blob, no manifest, no
tag listed that does not resolve, no temp file, no orphaned session); pulls of what was pushed
before go on while the disk is full; and once the ballast is gone the same pushes succeed, an
interrupted upload session resumed where the disk stopped it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.api import OCI_MANIFEST, Client, RepeatedBody, error_codes, sha256
from tests.integration.notifications_support import endpoint, run_receiver, wait_for
from tests.servers import Server, moorage_config, run_moorage

MiB = 1024 * 1024
SIZE = 64 * MiB  # the tmpfs
BLOB = 4 * MiB  # what a push sends, more than the space left it


@dataclass
class Disk:
    mount: Path  # the tmpfs: moorage's root is `data` in it, the ballast beside it
    server: Server
    client: Client
    image: tuple[str, bytes, list[bytes]]  # pushed before: a tag, its manifest, its blobs

    @property
    def root(self) -> Path:
        assert self.server.root is not None
        return self.server.root

    def free(self) -> int:
        stat = os.statvfs(self.mount)
        return stat.f_bavail * stat.f_frsize

    @property
    def page(self) -> int:
        return os.statvfs(self.mount).f_frsize

    @contextlib.contextmanager
    def full(self, leave: int = 0) -> Iterator[None]:
        """The disk filled by a ballast file but for `leave` bytes, until the block ends."""
        ballast = self.mount / "ballast"
        fd = os.open(ballast, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, self.free() - leave)
            finally:
                os.close(fd)
            assert self.free() == leave
            yield
        finally:
            ballast.unlink()


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@contextlib.contextmanager
def tmpfs(mount: Path, size: int) -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.fail("the full-disk tests mount a tmpfs: run them as root")
    mounted = run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount))
    if mounted.returncode != 0:
        pytest.fail(f"mount -t tmpfs failed: {mounted.stderr.strip()}")
    try:
        yield
    finally:
        if run("umount", str(mount)).returncode != 0:
            run("umount", "-l", str(mount))


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Disk]:
    """moorage (the embedded default's in-memory descriptor cache) on a 64 MiB tmpfs, with an
    image pushed."""
    mount = tmp_path_factory.mktemp("tmpfs")
    workdir = tmp_path_factory.mktemp("full-disk")
    with tmpfs(mount, SIZE):
        config = moorage_config(mount / "data", 0)
        config["storage"]["cache"] = {"blobdescriptor": "inmemory"}
        with run_moorage(workdir, config) as server:
            client = Client(server.url)
            blobs = [b'{"config":"before"}', os.urandom(2 * MiB)]
            payload = client.manifest("full/before", blobs[0], blobs[1:])
            assert client.put_manifest("full/before", "v1", payload).status_code == 201
            yield Disk(mount, server, client, ("v1", payload, blobs))


def assert_storage_full(response: requests.Response) -> None:
    assert response.status_code == 507, response.text
    assert error_codes(response) == ["UNAVAILABLE"]
    assert "storage is full" in response.json()["errors"][0]["message"]


def assert_intact(disk: Disk) -> None:
    """What was pushed before is served whole, and no temp file lies anywhere."""
    client = disk.client
    tag, payload, blobs = disk.image
    got = client.request("GET", f"/v2/full/before/manifests/{tag}", headers={"Accept": "*/*"})
    assert got.status_code == 200 and got.content == payload
    assert client.request("GET", f"/v2/full/before/manifests/{sha256(payload)}").status_code == 200
    for blob in blobs:
        assert client.request("HEAD", f"/v2/full/before/blobs/{sha256(blob)}").status_code == 200
        assert client.request("GET", f"/v2/full/before/blobs/{sha256(blob)}").content == blob
    assert client.request("GET", "/v2/full/before/tags/list").json()["tags"] == [tag]
    assert "full/before" in client.request("GET", "/v2/_catalog").json()["repositories"]
    assert not [path for path in disk.root.rglob("*") if "~" in path.name]


def assert_not_served(disk: Disk, repo: str, digest: str) -> None:
    """The blob is neither linked in the repository nor stored (no repository made either)."""
    for method in ("HEAD", "GET"):
        assert disk.client.request(method, f"/v2/{repo}/blobs/{digest}").status_code == 404
    hex_ = digest.split(":")[1]
    assert not (disk.root / f"docker/registry/v2/blobs/sha256/{hex_[:2]}/{hex_}").exists()
    assert not (disk.root / f"docker/registry/v2/repositories/{repo}/_layers").exists()


def sessions(disk: Disk, repo: str) -> list[str]:
    uploads = disk.root / f"docker/registry/v2/repositories/{repo}/_uploads"
    return sorted(path.name for path in uploads.iterdir()) if uploads.exists() else []


def test_monolithic_upload_leaves_no_blob_and_no_session(disk: Disk) -> None:
    client = disk.client
    data = os.urandom(BLOB)
    digest = sha256(data)
    push = ("POST", "/v2/full/mono/blobs/uploads/")
    with disk.full(leave=MiB):
        assert_storage_full(client.request(*push, params={"digest": digest}, data=data))
        assert_not_served(disk, "full/mono", digest)
        assert sessions(disk, "full/mono") == []
        assert_intact(disk)
    assert client.request(*push, params={"digest": digest}, data=data).status_code == 201
    assert client.request("GET", f"/v2/full/mono/blobs/{digest}").content == data


def test_chunked_upload_resumes_where_the_disk_stopped_it(disk: Disk) -> None:
    client = disk.client
    data = os.urandom(BLOB)
    digest = sha256(data)
    location = client.start_upload("full/chunked")
    first = client.request(
        "PATCH", location, data=data[:MiB], headers={"Content-Range": f"0-{MiB - 1}"}
    )
    assert first.status_code == 202
    location = first.headers["Location"]
    with disk.full(leave=MiB):
        rest = client.request(
            "PATCH", location, data=data[MiB:], headers={"Content-Range": f"{MiB}-{BLOB - 1}"}
        )
        assert_storage_full(rest)
        status = client.request("GET", location)
        assert status.status_code == 204
        stored = int(status.headers["Range"].split("-")[1]) + 1
        assert MiB <= stored < BLOB
        # the refusal said as much, as a 416 does, so a client can go on without asking
        assert rest.headers["Range"] == status.headers["Range"]
        assert rest.headers["Location"].split("?")[0] == status.headers["Location"].split("?")[0]
        assert_not_served(disk, "full/chunked", digest)
        assert_intact(disk)
    # What the session holds is what was sent, up to where the disk was full: it goes on there.
    resumed = client.request(
        "PATCH", location, data=data[stored:], headers={"Content-Range": f"{stored}-{BLOB - 1}"}
    )
    assert resumed.status_code == 202, resumed.text
    done = client.request("PUT", resumed.headers["Location"], params={"digest": digest})
    assert done.status_code == 201, done.text
    assert client.request("GET", f"/v2/full/chunked/blobs/{digest}").content == data
    assert sessions(disk, "full/chunked") == []


def test_final_put_with_the_body_resumes_where_the_disk_stopped_it(disk: Disk) -> None:
    client = disk.client
    data = os.urandom(BLOB)
    digest = sha256(data)
    location = client.start_upload("full/put")
    with disk.full(leave=MiB):
        assert_storage_full(client.request("PUT", location, params={"digest": digest}, data=data))
        stored = int(client.request("GET", location).headers["Range"].split("-")[1]) + 1
        assert stored < BLOB
        assert_not_served(disk, "full/put", digest)
        assert_intact(disk)
    resumed = client.request(
        "PUT",
        location,
        params={"digest": digest},
        data=data[stored:],
        headers={"Content-Range": f"{stored}-{BLOB - 1}"},
    )
    assert resumed.status_code == 201, resumed.text
    assert client.request("GET", f"/v2/full/put/blobs/{digest}").content == data


def test_final_put_that_cannot_link_the_blob_spends_the_session(disk: Disk) -> None:
    """All the data is in the session: the PUT moves it into the blob store (no space needed)
    and then cannot write the repository's link. The blob is not served there, and the session,
    whose data is gone, is unknown from then on: the client starts again, and the upload then
    needs no data written."""
    client = disk.client
    data = os.urandom(BLOB)
    digest = sha256(data)
    location = client.start_upload("full/link")
    patched = client.request("PATCH", location, data=data)
    assert patched.status_code == 202
    location = patched.headers["Location"]
    with disk.full():
        assert_storage_full(client.request("PUT", location, params={"digest": digest}))
        for method in ("HEAD", "GET"):
            assert client.request(method, f"/v2/full/link/blobs/{digest}").status_code == 404
        assert client.request("GET", location).status_code == 404
        assert sessions(disk, "full/link") == []
        assert_intact(disk)
    again = client.request(
        "POST", "/v2/full/link/blobs/uploads/", params={"digest": digest}, data=data
    )
    assert again.status_code == 201, again.text
    assert client.request("GET", f"/v2/full/link/blobs/{digest}").content == data


def test_manifest_put_commits_nothing_partial_wherever_the_disk_fills(disk: Disk) -> None:
    """A manifest push writes several small files, one page each on tmpfs: the content, the
    revision link, then for each tag its current and index links. Pushes of new manifests (each
    naming a new tag and one that points elsewhere) are made with the disk filled to leave 0, 1,
    2, ... pages, until one fits: so each write in turn is the one that finds the disk full.
    Each push before gets 507, and whatever it left is whole: the manifest is served by digest
    whole or not at all, a tag resolves to a whole manifest if it is listed, and the tag that
    pointed elsewhere points there still or at the new manifest."""
    client = disk.client
    repo = "full/manifests"
    old = client.manifest(repo, b'{"config":"old"}', [b"old layer"])
    assert client.put_manifest(repo, "moved", old).status_code == 201
    accept = {"Accept": OCI_MANIFEST}
    outcomes = []
    pushes = []
    for pages in range(10):
        tag = f"new-{pages}"
        payload = client.manifest(repo, f'{{"attempt":{pages}}}'.encode(), [b"new layer"])
        digest = sha256(payload)
        pushes.append((tag, payload))
        with disk.full(leave=pages * disk.page):
            pushed = client.put_manifest(repo, digest, payload, tag=[tag, "moved"])
            if pushed.status_code != 201:
                assert_storage_full(pushed)
            by_digest = client.request("GET", f"/v2/{repo}/manifests/{digest}", headers=accept)
            assert by_digest.status_code in (200, 404)
            assert by_digest.status_code == 404 or by_digest.content == payload
            listed = client.request("GET", f"/v2/{repo}/tags/list").json()["tags"]
            new = client.request("GET", f"/v2/{repo}/manifests/{tag}", headers=accept)
            assert new.status_code == (200 if tag in listed else 404), (pages, listed)
            assert new.status_code == 404 or new.content == payload
            moved = client.request("GET", f"/v2/{repo}/manifests/moved", headers=accept)
            assert moved.status_code == 200, moved.text
            for blob in json.loads(moved.content)["layers"]:
                assert client.request("HEAD", f"/v2/{repo}/blobs/{blob['digest']}").ok
            old, previous = moved.content, old
            assert old in (previous, payload)
            assert_intact(disk)
        outcomes.append((pushed.status_code, by_digest.status_code, new.status_code))
        if pushed.status_code == 201:
            break
    assert outcomes[0] == (507, 404, 404), outcomes  # no space at all: nothing written
    assert outcomes[-1] == (201, 200, 200), outcomes
    assert len(outcomes) > 4, outcomes  # the tags' writes too found the disk full
    # With space again, each push succeeds.
    for tag, payload in pushes:
        assert client.put_manifest(repo, tag, payload).status_code == 201
        assert client.request("GET", f"/v2/{repo}/manifests/{tag}").content == payload


def test_a_body_larger_than_the_space_left_gets_its_answer(disk: Disk) -> None:
    """The answer comes while the client is still sending (the server reads the rest and drops
    it, aiohttp's lingering close): a client that sends the whole body first, as requests does,
    still reads the 507 instead of a broken connection."""
    client = disk.client
    block = os.urandom(MiB)
    count = SIZE // MiB + 16  # more than the whole disk
    digest = sha256(b"")  # never reached: the disk is full first
    with disk.full(leave=MiB):
        monolithic = requests.post(
            f"{disk.server.url}/v2/full/large/blobs/uploads/",
            params={"digest": digest},
            data=RepeatedBody(block, count),
            timeout=120,
        )
        assert_storage_full(monolithic)
        assert sessions(disk, "full/large") == []
        location = client.start_upload("full/large")
        streamed = requests.patch(location, data=RepeatedBody(block, count), timeout=120)
        assert_storage_full(streamed)
        assert_intact(disk)
    assert client.request("DELETE", location).status_code == 204
    assert sessions(disk, "full/large") == []


def test_a_spool_on_the_full_disk_loses_events_not_pulls(
    disk: Disk, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Notifications spooled on the full disk (the default spool, under the root): a pull that
    finds no room for its event is answered all the same, the log says events were lost, and
    once there is room the next pulls' events are delivered. (Before, the event went through a
    mapping onto a hole of the file, and the full disk killed the worker with SIGBUS.)"""
    with run_receiver() as receiver:
        config = moorage_config(disk.mount / "notified", 0)
        # pushes make no event: the first event, a pull's, opens the spool's files
        hook = endpoint("hook", receiver, "/hook", ignore={"actions": ["push"]})
        config["notifications"] = {"endpoints": [hook]}
        with run_moorage(tmp_path_factory.mktemp("notified"), config) as server:
            client = Client(server.url)
            payload = client.manifest("full/notified", b'{"config":"notified"}', [b"layer"])
            assert client.put_manifest("full/notified", "v1", payload).status_code == 201
            pull = ("GET", "/v2/full/notified/manifests/v1")
            with disk.full():
                for _ in range(4):  # each worker's first pull
                    got = client.request(*pull, headers={"Accept": OCI_MANIFEST})
                    assert got.status_code == 200 and got.content == payload
                wait_for(
                    lambda: "events lost, the spool cannot take them" in server.logs(),
                    "the log saying events were lost",
                )
            assert client.request(*pull, headers={"Accept": OCI_MANIFEST}).status_code == 200
            wait_for(lambda: receiver.events("/events/hook"), "an event once there is room")
            event = receiver.events("/events/hook")[0]
            assert (event["action"], event["target"]["tag"]) == ("pull", "v1")
            assert "starting it again" not in server.logs()  # no worker died
