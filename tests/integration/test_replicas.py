"""moorage in production shape: the user's config (S3, a Redis blob descriptor cache, a debug
listener) against a real S3-compatible store (SeaweedFS) and a real Redis, as one process and as
three replicas behind a round-robin nginx; Redis going away and coming back; abandoned multipart
uploads purged.

Every test keeps to a bucket (or Redis database) of its own, starts its servers on free loopback
ports and stops them by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.images import OCI_INDEX, OCI_MANIFEST, Image, digest_of, make_image
from tests.integration.replicas_support import (
    debug_url,
    push,
    redis_client,
    run,
    run_nginx,
    run_replicas,
    seed_config,
)
from tests.integration.s3_support import bucket, list_multipart_uploads
from tests.servers import (
    RedisServer,
    S3Server,
    Server,
    free_port,
    read_back,
    run_moorage,
    run_redis,
)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(600)]

HTTP_TIMEOUT = 60  # seconds, for any one request
MiB = 1024 * 1024
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
CACHE_HITS = re.compile(r'^moorage_cache_requests_total\{cache="redis",result="hit"\} (\S+)$', re.M)
ACCESS = re.compile(r" moorage\.access: ")
ERROR_LINE = re.compile(r"^\S+ (?:error|critical) .*$", re.M)

def cache_hits(config: dict[str, Any]) -> float:
    metrics = requests.get(f"{debug_url(config)}/metrics", timeout=HTTP_TIMEOUT)
    assert metrics.status_code == 200, metrics.text
    match = CACHE_HITS.search(metrics.text)
    return float(match.group(1)) if match else 0.0


def pull_and_check(source: str, image: Image, out: Path) -> None:
    """skopeo copies the image to an OCI layout; every blob and the manifest are byte-exact."""
    run(["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
         "--preserve-digests", f"docker://{source}", f"oci:{out}:pulled"])  # fmt: skip
    for digest in (image.manifest_digest, image.config_digest, *image.layer_digests):
        blob = out / "blobs" / "sha256" / digest.split(":")[1]
        assert digest_of(blob.read_bytes()) == digest


def no_errors(*servers: Server) -> None:
    for server in servers:
        logs = server.logs()
        assert not ERROR_LINE.search(logs) and "Traceback" not in logs, logs


MakeBucket = Callable[[str], str]


@pytest.fixture
def make_bucket(s3_store: S3Server) -> Iterator[MakeBucket]:
    """Makes buckets for the test, deleted after it (see s3_support)."""
    with contextlib.ExitStack() as stack:
        yield lambda name: stack.enter_context(bucket(s3_store, name))


@pytest.fixture
def image(tmp_path: Path) -> Image:
    return make_image(
        tmp_path / "layout",
        "v1",
        [{"big.bin": os.urandom(2 * MiB)}, {"etc/hello": b"hello\n"}],
        seed=tmp_path.name,
    )


# --- 1: the user's production config --------------------------------------------------------


def test_seed_production_config_serves_pushes_and_pulls(
    tmp_path: Path,
    s3_store: S3Server,
    make_bucket: MakeBucket,
    redis_server: RedisServer,
    image: Image,
) -> None:
    make_bucket("registry")
    redis_client(redis_server.addr, 0).flushdb()
    config = seed_config(s3_store, redis_server.addr)
    # As the user runs it: no http.workers, so one worker per CPU.
    with run_moorage(tmp_path / "seed", config, workers=None) as server:
        push(image, f"{server.host}/team/app:v1")
        pull_and_check(f"{server.host}/team/app:v1", image, tmp_path / "pulled")

        # A blob GET is a redirect to a presigned URL of the store, which works by itself.
        layer = image.layer_digests[0]
        url = f"{server.url}/v2/team/app/blobs/{layer}"
        answer = requests.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)
        assert answer.status_code == 307, answer.text
        location = answer.headers["Location"]
        assert location.startswith(f"{s3_store.endpoint}/registry/registryv2/docker/registry/v2/")
        assert "Signature" in location
        presigned = requests.get(location, timeout=HTTP_TIMEOUT)
        assert presigned.status_code == 200
        assert digest_of(presigned.content) == layer
        assert digest_of(requests.get(url, timeout=HTTP_TIMEOUT).content) == layer

        # Repeated pulls are answered from the Redis cache.
        before = cache_hits(config)
        for attempt in range(2):
            pull_and_check(f"{server.host}/team/app:v1", image, tmp_path / f"again-{attempt}")
        assert cache_hits(config) > before
    no_errors(server)

    # With redirects disabled, the blob streams through moorage.
    config["storage"]["redirect"] = {"disable": True}
    with run_moorage(tmp_path / "noredirect", config) as server:
        url = f"{server.url}/v2/team/app/blobs/{image.layer_digests[0]}"
        answer = requests.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)
        assert answer.status_code == 200
        assert digest_of(answer.content) == image.layer_digests[0]
        pull_and_check(f"{server.host}/team/app:v1", image, tmp_path / "streamed")
    no_errors(server)


# --- 2: three replicas behind a round robin --------------------------------------------------


def access_lines(server: Server, start: int = 0) -> list[str]:
    return [line for line in server.logs()[start:].splitlines() if ACCESS.search(line)]


def rewrite(location: str, host: str) -> str:
    """The Location a replica returned, aimed at another replica (host:port only)."""
    return re.sub(r"^http://[^/]+", f"http://{host}", location)


def chunked_upload_across(servers: list[Server], name: str, chunks: list[bytes]) -> str:
    """POST, each PATCH and the final PUT, each to the next replica in turn; returns the
    digest."""
    data = b"".join(chunks)
    digest = digest_of(data)
    turn = 0

    def next_host() -> str:
        nonlocal turn
        turn += 1
        return servers[(turn - 1) % len(servers)].host

    started = requests.post(f"http://{next_host()}/v2/{name}/blobs/uploads/", timeout=HTTP_TIMEOUT)
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    offset = 0
    for chunk in chunks:
        patched = requests.patch(
            rewrite(location, next_host()),
            data=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
            },
            timeout=HTTP_TIMEOUT,
        )
        assert patched.status_code == 202, patched.text
        offset += len(chunk)
        assert patched.headers["Range"] == f"0-{offset - 1}"
        location = patched.headers["Location"]
    separator = "&" if "?" in location else "?"
    finished = requests.put(
        f"{rewrite(location, next_host())}{separator}digest={digest}", timeout=HTTP_TIMEOUT
    )
    assert finished.status_code == 201, finished.text
    return digest


def test_three_replicas_behave_as_one_registry(
    tmp_path: Path,
    s3_store: S3Server,
    make_bucket: MakeBucket,
    redis_server: RedisServer,
    image: Image,
) -> None:
    make_bucket("replicas")
    redis_client(redis_server.addr, 2).flushdb()
    config = seed_config(s3_store, redis_server.addr, bucket="replicas", db=2)
    config["storage"]["delete"] = {"enabled": True}
    with (
        run_replicas(tmp_path, config) as servers,
        run_nginx(tmp_path / "nginx", [s.host for s in servers]) as front,
    ):
        # A skopeo push and pull through the round robin: every replica served part of the push.
        marks = [len(s.logs()) for s in servers]
        push(image, f"{front}/team/app:v1")
        served = [len(access_lines(s, mark)) for s, mark in zip(servers, marks, strict=True)]
        assert all(count > 0 for count in served), served
        pull_and_check(f"{front}/team/app:v1", image, tmp_path / "pulled")

        # A chunked upload whose every request goes to another replica; chunks cross the
        # 5 MiB part size. Each replica continues the running digest from the state the last
        # one saved in the bucket.
        chunks = [os.urandom(size) for size in (3 * MiB, 7 * MiB, 1 * MiB, 6 * MiB + 5, 2 * MiB)]
        digest = chunked_upload_across(servers, "team/chunked", chunks)
        assert [line for server in servers for line in read_back(server)] == []
        data = b"".join(chunks)
        for server in servers:
            blob = requests.get(
                f"{server.url}/v2/team/chunked/blobs/{digest}", timeout=HTTP_TIMEOUT
            )
            assert blob.status_code == 200
            assert hashlib.sha256(blob.content).hexdigest() == digest.split(":")[1]
            assert len(blob.content) == len(data)

        # A manifest deleted on one replica is gone on the others at once, though they served
        # (and cached) it a moment ago.
        manifest = f"/v2/team/app/manifests/{image.manifest_digest}"
        for server in servers:
            for method in ("HEAD", "GET"):
                answer = requests.request(
                    method, f"{server.url}{manifest}", headers={"Accept": ACCEPT}, timeout=30
                )
                assert answer.status_code == 200, (server.host, method)
            as_blob = requests.head(
                f"{server.url}/v2/team/app/blobs/{image.manifest_digest}", timeout=30
            )
            assert as_blob.status_code == 200
        deleted = requests.delete(f"{servers[0].url}{manifest}", timeout=HTTP_TIMEOUT)
        assert deleted.status_code == 202, deleted.text
        for server in servers[1:]:
            for method in ("HEAD", "GET"):
                answer = requests.request(
                    method, f"{server.url}{manifest}", headers={"Accept": ACCEPT}, timeout=30
                )
                assert answer.status_code == 404, (server.host, method)
            tag = requests.get(
                f"{server.url}/v2/team/app/manifests/v1", headers={"Accept": ACCEPT}, timeout=30
            )
            assert tag.status_code == 404
            as_blob = requests.head(
                f"{server.url}/v2/team/app/blobs/{image.manifest_digest}", timeout=30
            )
            assert as_blob.status_code == 404, server.host

    no_errors(*servers)


def test_catalog_follows_other_replicas(
    tmp_path: Path,
    s3_store: S3Server,
    make_bucket: MakeBucket,
    redis_server: RedisServer,
    image: Image,
) -> None:
    """A repository pushed through one replica is at once in the catalog of another that had
    already answered a catalog request (and so holds a catalog of its own)."""
    make_bucket("catalog")
    redis_client(redis_server.addr, 4).flushdb()
    config = seed_config(s3_store, redis_server.addr, bucket="catalog", db=4)
    with run_replicas(tmp_path, config) as servers:
        push(image, f"{servers[0].host}/first/app:v1")
        for server in servers:
            listed = requests.get(f"{server.url}/v2/_catalog", timeout=HTTP_TIMEOUT)
            assert listed.json()["repositories"] == ["first/app"], server.host
        push(image, f"{servers[0].host}/later/app:v1")
        for server in servers[1:]:
            listed = requests.get(f"{server.url}/v2/_catalog", timeout=HTTP_TIMEOUT)
            assert listed.json()["repositories"] == ["first/app", "later/app"], server.host
    no_errors(*servers)


# --- 3: Redis goes away and comes back -------------------------------------------------------


def redis_errors(server: Server) -> list[str]:
    return [line for line in ERROR_LINE.findall(server.logs()) if "redis" in line.lower()]


def test_redis_outage_falls_back_to_storage_and_recovers(
    tmp_path: Path, s3_store: S3Server, make_bucket: MakeBucket, image: Image
) -> None:
    make_bucket("redisdown")
    with run_redis() as cache_server:
        config = seed_config(s3_store, cache_server.addr, bucket="redisdown")
        config["storage"]["delete"] = {"enabled": True}
        with run_moorage(tmp_path / "moorage", config) as server:
            source = f"{server.host}/team/app:v1"
            push(image, source)
            for attempt in range(2):  # the first pull fills the cache, the second hits it
                pull_and_check(source, image, tmp_path / f"warm-{attempt}")
            warm = cache_hits(config)
            assert warm > 0

            cache_server.stop()
            for attempt in range(3):
                pull_and_check(source, image, tmp_path / f"down-{attempt}")
            # Deletes are refused while Redis is down (a stale entry could outlive them);
            # nothing is deleted.
            layer = image.layer_digests[1]
            url = f"{server.url}/v2/team/app/blobs/{layer}"
            refused = requests.delete(url, timeout=HTTP_TIMEOUT)
            assert refused.status_code == 503, refused.text
            assert refused.json()["errors"][0]["code"] == "UNAVAILABLE"
            assert requests.head(url, timeout=HTTP_TIMEOUT).status_code == 200
            errors = redis_errors(server)
            assert len(errors) == 1, server.logs()

            cache_server.start()
            deadline = time.monotonic() + 15
            pulled = 0
            while cache_hits(config) <= warm:
                assert time.monotonic() < deadline, server.logs()
                requests.head(
                    f"{server.url}/v2/team/app/blobs/{image.layer_digests[0]}", timeout=30
                )
                requests.head(f"{server.url}/v2/team/app/blobs/{image.config_digest}", timeout=30)
                pulled += 1
                time.sleep(0.2)
            assert requests.delete(url, timeout=HTTP_TIMEOUT).status_code == 202
            assert requests.head(url, timeout=HTTP_TIMEOUT).status_code == 404
            assert requests.get(url, timeout=HTTP_TIMEOUT).status_code == 404
            assert len(redis_errors(server)) == 1, server.logs()


class PersistentRedis:
    """A Redis that keeps its data across a restart (an append-only file), as a production
    Redis does: unlike run_redis(), it comes back with the entries it had."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.addr = f"127.0.0.1:{free_port()}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", self.addr.rpartition(":")[2],
             "--save", "", "--appendonly", "yes", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(redis.RedisError):
                if redis_client(self.addr, 0).ping():
                    return
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def test_blob_deleted_during_an_outage_stays_deleted_when_redis_keeps_its_data(
    tmp_path: Path, s3_store: S3Server, make_bucket: MakeBucket, image: Image
) -> None:
    """Two replicas; Redis goes down; one replica is asked to delete a blob link, and is then
    stopped (a rolling deploy); Redis comes back with the entries it had. The delete was
    refused, so both agree the link is there; deleted once Redis is back, no replica reports it
    present."""
    make_bucket("redispersistent")
    cache_server = PersistentRedis(tmp_path / "redis")
    cache_server.start()
    try:
        config = seed_config(s3_store, cache_server.addr, bucket="redispersistent")
        config["storage"]["delete"] = {"enabled": True}
        path = f"/v2/team/app/blobs/{image.layer_digests[0]}"
        with run_replicas(tmp_path / "other", config, 1) as (other,):
            with run_replicas(tmp_path / "deleter", config, 1) as (deleter,):
                push(image, f"{deleter.host}/team/app:v1")
                for server in (deleter, other):  # both know the link; Redis caches it
                    assert requests.head(f"{server.url}{path}", timeout=30).status_code == 200
                cache_server.stop()
                assert requests.delete(f"{deleter.url}{path}", timeout=30).status_code == 503
                assert requests.head(f"{deleter.url}{path}", timeout=30).status_code == 200
            cache_server.start()
            time.sleep(2.5)  # the replica's recovery notices Redis again
            assert requests.head(f"{other.url}{path}", timeout=30).status_code == 200
            assert requests.delete(f"{other.url}{path}", timeout=30).status_code == 202
            with run_replicas(tmp_path / "again", config, 1) as (again,):
                for _ in range(3):
                    for server in (other, again):
                        assert requests.head(f"{server.url}{path}", timeout=30).status_code == 404
                    time.sleep(1)
    finally:
        cache_server.stop()


# --- 5: abandoned multipart uploads are purged -----------------------------------------------


def test_abandoned_multipart_uploads_are_purged(
    tmp_path: Path, s3_store: S3Server, make_bucket: MakeBucket, redis_server: RedisServer
) -> None:
    make_bucket("purging")
    config = seed_config(s3_store, redis_server.addr, bucket="purging", db=3)
    with run_moorage(tmp_path / "writer", config) as server:
        started = requests.post(f"{server.url}/v2/team/app/blobs/uploads/", timeout=30)
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        patched = requests.patch(location, data=os.urandom(6 * MiB), timeout=HTTP_TIMEOUT)
        assert patched.status_code == 202, patched.text
    prefix = "registryv2/"
    uploads = asyncio.run(list_multipart_uploads(s3_store, "purging", prefix))
    assert uploads, "a 6 MiB chunk leaves a multipart upload"

    config["storage"]["maintenance"] = {
        "uploadpurging": {"enabled": True, "age": "1s", "interval": "1s"}
    }
    with run_moorage(tmp_path / "purger", config) as server:
        session = rewrite(location, server.host)
        deadline = time.monotonic() + 15
        while requests.get(session, timeout=30).status_code != 404:
            assert time.monotonic() < deadline, server.logs()
            time.sleep(0.5)
        while asyncio.run(list_multipart_uploads(s3_store, "purging", prefix)):
            assert time.monotonic() < deadline, server.logs()
            time.sleep(0.5)
        assert "purged 1 upload sessions" in server.logs()
    no_errors(server)
