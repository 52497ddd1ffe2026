"""Cross-compatibility with the reference registry (CNCF distribution 2.8) on S3: one bucket of a
real S3-compatible store (SeaweedFS), written by either registry and served by the other byte for
byte; the same pushes leave the same object keys; and moorage's multipart copy (the path blobs
over 5 GiB take) proven on a small threshold.

Each test keeps to a bucket of its own in the session's SeaweedFS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.images import OCI_INDEX, OCI_MANIFEST, Image, digest_of, make_image
from tests.integration.s3_support import bucket, get_object, list_objects
from tests.servers import S3Server, Server, run_moorage, run_reference_registry

pytestmark = [pytest.mark.interop, pytest.mark.timeout(600)]

DISTRIBUTION = "distribution"
MOORAGE = "moorage"
TIMEOUT = 120  # seconds, for any one command
HTTP_TIMEOUT = 60  # seconds, for any one request
MiB = 1024 * 1024
ROOT = "/compat"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# distribution 2.8 answers only the manifest types a client lists.
ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
REPOSITORIES = ("team/app", "team/app/tools", "big")
TAGS = ("v1", "latest", "docker", "big")


def distribution_s3(s3: S3Server, bucket: str) -> dict[str, Any]:
    """storage.s3 for distribution 2.8's driver: it has no `forcepathstyle` (a regionendpoint
    implies path style) and signs with v4 when `v4auth` is set."""
    params = s3.params(bucket, rootdirectory=ROOT)
    del params["forcepathstyle"]
    params["v4auth"] = True
    return params


def run_distribution_s3(
    workdir: Path, s3: S3Server, bucket: str
) -> contextlib.AbstractContextManager[Server]:
    """CNCF distribution on the bucket."""
    return run_reference_registry(
        workdir, secret="shared-secret", storage={"s3": distribution_s3(s3, bucket)}
    )


def moorage_s3_config(s3: S3Server, bucket: str, **extra: Any) -> dict[str, Any]:
    return {
        "version": "0.1",
        "log": {"level": "info"},
        "storage": {
            "s3": s3.params(bucket, rootdirectory=ROOT, **extra),
            "delete": {"enabled": True},
        },
        "http": {"addr": "127.0.0.1:0", "secret": "shared-secret"},
    }


@contextlib.contextmanager
def serve(kind: str, tmp_path: Path, s3: S3Server, bucket: str) -> Iterator[Server]:
    workdir = tmp_path / "servers"
    if kind == DISTRIBUTION:
        with run_distribution_s3(workdir, s3, bucket) as server:
            yield server
        return
    with run_moorage(workdir, moorage_s3_config(s3, bucket)) as server:
        yield server
    logs = server.logs()
    assert " error " not in logs and "Traceback" not in logs, logs


def other(kind: str) -> str:
    return MOORAGE if kind == DISTRIBUTION else DISTRIBUTION


def run(args: list[str]) -> bytes:
    result = subprocess.run(args, capture_output=True, timeout=TIMEOUT, check=False)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout.decode(errors='replace')}{result.stderr.decode(errors='replace')}"
        )
    return result.stdout


def push(image: Image, dest: str, *flags: str) -> None:
    run(["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", *flags,
         image.ref, f"docker://{dest}"])  # fmt: skip


@pytest.fixture
def images(tmp_path: Path) -> list[Image]:
    layouts = tmp_path / "layouts"
    # Fixed content, so the two buckets of the key comparison receive the same bytes.
    return [
        make_image(layouts / "oci", "v1", [{"a.txt": b"a" * 70_000}, {"b/c": b"c\n"}], seed="oci"),
        make_image(layouts / "docker", "v1", seed="docker"),
        # A 12 MiB layer: multipart uploads of 5 MiB parts in both registries.
        make_image(layouts / "big", "v1", [{"big.bin": os.urandom(12 * MiB)}], seed="big"),
    ]


def push_all(host: str, images: list[Image]) -> None:
    oci, docker, big = images
    push(oci, f"{host}/team/app:v1")
    push(oci, f"{host}/team/app:latest")
    push(docker, f"{host}/team/app:docker", "--format", "v2s2")
    push(oci, f"{host}/team/app/tools:v1")
    push(big, f"{host}/big:big")


def view(server: Server, images: list[Image]) -> dict[str, Any]:
    """What a client sees: catalog, tags, every manifest by tag and digest, every blob (a
    redirect to the store followed), in every repository."""
    session = requests.Session()

    def get(path: str, method: str = "GET") -> requests.Response:
        return session.request(
            method, f"{server.url}{path}", headers={"Accept": ACCEPT}, timeout=HTTP_TIMEOUT
        )

    seen: dict[str, Any] = {"catalog": get("/v2/_catalog").json()["repositories"]}
    digests = {image.manifest_digest for image in images}
    for name in REPOSITORIES:
        tags = get(f"/v2/{name}/tags/list").json()["tags"]
        seen[f"tags {name}"] = sorted(tags or [])
        for tag in tags or []:
            digests.add(get(f"/v2/{name}/manifests/{tag}", "HEAD").headers["Docker-Content-Digest"])
    blobs = sorted({d for image in images for d in (image.config_digest, *image.layer_digests)})
    for name in REPOSITORIES:
        for reference in (*TAGS, *sorted(digests)):
            body = get(f"/v2/{name}/manifests/{reference}")
            head = get(f"/v2/{name}/manifests/{reference}", "HEAD")
            seen[f"manifest {name}:{reference}"] = (
                (body.status_code, head.status_code)
                if body.status_code != 200
                else (
                    body.headers["Docker-Content-Digest"],
                    head.headers["Docker-Content-Digest"],
                    body.headers["Content-Type"],
                    digest_of(body.content),
                )
            )
        for digest in blobs:
            body = get(f"/v2/{name}/blobs/{digest}")
            head = get(f"/v2/{name}/blobs/{digest}", "HEAD")
            seen[f"blob {name}@{digest}"] = (
                (body.status_code, head.status_code)
                if body.status_code != 200
                else (digest_of(body.content), len(body.content), head.status_code)
            )
    return seen


@pytest.mark.parametrize("writer", [DISTRIBUTION, MOORAGE])
def test_bucket_written_by_one_registry_is_served_by_the_other(
    tmp_path: Path, s3_store: S3Server, images: list[Image], writer: str
) -> None:
    with contextlib.ExitStack() as stack:
        name = stack.enter_context(bucket(s3_store, f"compat-{writer}"))
        check_both_ways(tmp_path, s3_store, images, writer, name)


def check_both_ways(
    tmp_path: Path, s3_store: S3Server, images: list[Image], writer: str, bucket: str
) -> None:
    with serve(writer, tmp_path, s3_store, bucket) as server:
        push_all(server.host, images)
        written = view(server, images)
    oci, _, big = images
    assert written["catalog"] == ["big", "team/app", "team/app/tools"]
    assert written["tags team/app"] == ["docker", "latest", "v1"]
    assert written["manifest team/app:v1"][3] == oci.manifest_digest
    assert written["manifest big:big"][3] == big.manifest_digest
    assert written[f"blob big@{big.layer_digests[0]}"][0] == big.layer_digests[0]

    with serve(other(writer), tmp_path, s3_store, bucket) as server:
        assert view(server, images) == written
        out = tmp_path / "pulled"
        run(["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
             f"docker://{server.host}/big:big", f"oci:{out}:big"])  # fmt: skip
        for digest in (big.manifest_digest, big.config_digest, *big.layer_digests):
            assert digest_of((out / "blobs/sha256" / digest[7:]).read_bytes()) == digest


def objects(s3: S3Server, bucket: str) -> dict[str, str]:
    """Every object below the root directory but upload sessions and moorage's own records
    (referrers, pull times): a link by its content, anything else by its size."""
    found: dict[str, str] = {}
    for item in asyncio.run(list_objects(s3, bucket, ROOT.strip("/") + "/")):
        key = item["Key"]
        if key.endswith("/") or {"_uploads", "_referrers", "_pulls"} & set(key.split("/")):
            continue
        if key.endswith("/link"):
            found[key] = asyncio.run(get_object(s3, bucket, key))[0].decode()
        else:
            found[key] = str(item["Size"])
    return found


def test_same_pushes_write_the_same_keys(
    tmp_path: Path, s3_store: S3Server, images: list[Image]
) -> None:
    listings = {}
    for kind in (DISTRIBUTION, MOORAGE):
        with bucket(s3_store, f"keys-{kind}") as name:
            with serve(kind, tmp_path / kind, s3_store, name) as server:
                push_all(server.host, images)
            listings[kind] = objects(s3_store, name)
    reference = listings[DISTRIBUTION]
    oci = images[0]
    tag_link = "compat/docker/registry/v2/repositories/team/app/_manifests/tags/v1/current/link"
    assert reference[tag_link] == oci.manifest_digest
    big_layer = images[2].layer_digests[0][7:]
    assert reference[f"compat/docker/registry/v2/blobs/sha256/{big_layer[:2]}/{big_layer}/data"]
    assert listings[MOORAGE] == reference


def test_blob_over_the_copy_threshold_is_moved_by_multipart_copy(
    tmp_path: Path, s3_store: S3Server
) -> None:
    """Blobs over `multipartcopythresholdsize` (and all over 5 GiB, S3's limit for one copy)
    are moved into place by a multipart copy of `multipartcopychunksize` parts: proven here
    with 5 MiB on a 12 MiB blob, uploaded in 10 MiB parts, so the stored object's ETag (parts
    count after the dash) tells which copy made it."""
    with bucket(s3_store, "multipartcopy") as name:
        copy_and_check(tmp_path, s3_store, name)


def copy_and_check(tmp_path: Path, s3_store: S3Server, bucket: str) -> None:
    config = moorage_s3_config(
        s3_store,
        bucket,
        chunksize=10 * MiB,
        multipartcopythresholdsize=5 * MiB,
        multipartcopychunksize=5 * MiB,
    )
    data = os.urandom(12 * MiB + 3)
    digest = digest_of(data)
    with run_moorage(tmp_path / "moorage", config) as server:
        started = requests.post(f"{server.url}/v2/big/blobs/uploads/", timeout=HTTP_TIMEOUT)
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        finished = requests.put(f"{location}&digest={digest}", data=data, timeout=HTTP_TIMEOUT)
        assert finished.status_code == 201, finished.text
        blob = requests.get(f"{server.url}/v2/big/blobs/{digest}", timeout=HTTP_TIMEOUT)
        assert blob.status_code == 200
        assert blob.content == data
    key = f"compat/docker/registry/v2/blobs/sha256/{digest[7:9]}/{digest[7:]}/data"
    stored, etag = asyncio.run(get_object(s3_store, bucket, key))
    assert stored == data
    assert etag.strip('"').endswith("-3"), etag

    with run_distribution_s3(tmp_path / "distribution", s3_store, bucket) as server:
        blob = requests.get(f"{server.url}/v2/big/blobs/{digest}", timeout=HTTP_TIMEOUT)
        assert blob.status_code == 200
        assert blob.content == data
