"""Real clients against a real moorage: skopeo, podman, buildah and oras-py push, pull, list,
copy between repositories and delete, and what they leave in the registry is checked byte for
byte. Every test starts its own server (the `moorage` fixture) and keeps every file, and every
client's storage, under its own tmp_path."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import oras.oci
import oras.provider
import pytest
import requests

from tests.images import OCI_INDEX, OCI_MANIFEST, Image, digest_of, make_image
from tests.servers import Server

pytestmark = pytest.mark.timeout(600)

TIMEOUT = 120  # seconds, for any one client command
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ALL_MANIFEST_TYPES = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
ARTIFACT_TYPE = "application/vnd.moorage.test.artifact.v1+json"
ARTIFACT_LAYER = "application/vnd.moorage.test.payload.v1"
# A traceback, or a line logged at error level (as `ERROR` or `error`, whatever the formatter).
_LOGGED_FAILURE = re.compile(r"Traceback|\s(?:ERROR|CRITICAL|error|critical)\s")


@pytest.fixture(autouse=True)
def server_log_clean(moorage: Server) -> Iterator[None]:
    """Clients often shrug off a dropped connection, so a request the server failed on can go
    unnoticed: after each test, the server's log must show no error."""
    yield
    logs = moorage.logs()
    assert not _LOGGED_FAILURE.search(logs), logs


def _require(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.fail(f"{binary} is missing: apt-get install -y {binary}")


def run(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs a client command, bounded by TIMEOUT; with `check`, a failure fails the test with the
    command's output."""
    _require(args[0])
    result = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited with {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["skopeo", "--insecure-policy", *args], check=check)


@pytest.fixture
def short_dirs() -> Iterator[Callable[[], Path]]:
    """Makes directories with short paths, removed after the test: podman refuses a runroot
    longer than 50 characters, which tmp_path usually is."""
    made: list[Path] = []

    def make() -> Path:
        made.append(Path(tempfile.mkdtemp(prefix="moorage-")))
        return made[-1]

    yield make
    for directory in made:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class ContainersCli:
    """podman or buildah with storage of its own (graph root under tmp_path, run root in a short
    directory), so no test shares images with another or with the host."""

    binary: str
    root: Path
    runroot: Path

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        extra = ["--cgroup-manager=cgroupfs", "--events-backend=file"]
        return run(
            [
                self.binary,
                "--root",
                str(self.root),
                "--runroot",
                str(self.runroot),
                "--storage-driver=vfs",
                *(extra if self.binary == "podman" else []),
                *args,
            ]
        )


def get_manifest(
    server: Server, repo: str, reference: str, accept: str = ALL_MANIFEST_TYPES
) -> requests.Response:
    response = requests.get(
        f"{server.url}/v2/{repo}/manifests/{reference}", headers={"Accept": accept}, timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == digest_of(response.content)
    return response


def get_blob(server: Server, repo: str, digest: str) -> bytes:
    response = requests.get(f"{server.url}/v2/{repo}/blobs/{digest}", timeout=30)
    assert response.status_code == 200, response.text
    assert digest_of(response.content) == digest
    return response.content


def read_layout(layout: Path, tag: str) -> tuple[bytes, dict[str, Any]]:
    """The manifest bytes and document an OCI image layout holds under `tag`."""
    index = json.loads((layout / "index.json").read_text())
    [entry] = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ]
    raw = layout_blob(layout, entry["digest"])
    return raw, json.loads(raw)


def layout_blob(layout: Path, digest: str) -> bytes:
    algorithm, _, hex_ = digest.partition(":")
    data = (layout / "blobs" / algorithm / hex_).read_bytes()
    assert digest_of(data) == digest
    return data


def two_layer_image(tmp_path: Path, seed: str, architecture: str = "amd64") -> Image:
    return make_image(
        tmp_path / f"layout-{seed}",
        "v1",
        [
            {"etc/motd": f"welcome {seed}\n".encode()},
            {"data/blob.bin": os.urandom(256 * 1024), "data/note.txt": seed.encode()},
        ],
        architecture=architecture,
        seed=seed,
    )


# skopeo


def test_skopeo_copy_oci_layout_keeps_manifest_bytes(moorage: Server, tmp_path: Path) -> None:
    image = two_layer_image(tmp_path, "skopeo-oci")
    dest = f"docker://{moorage.host}/interop/oci:v1"
    skopeo("copy", "--dest-tls-verify=false", image.ref, dest)

    raw = skopeo("inspect", "--raw", "--tls-verify=false", dest).stdout.encode()
    assert raw.rstrip(b"\n") == image.manifest
    response = get_manifest(moorage, "interop/oci", "v1")
    assert response.content == image.manifest
    assert response.headers["Content-Type"] == OCI_MANIFEST
    assert response.headers["Docker-Content-Digest"] == image.manifest_digest
    for digest in [image.config_digest, *image.layer_digests]:
        assert get_blob(moorage, "interop/oci", digest) == layout_blob(image.layout, digest)

    inspected = json.loads(skopeo("inspect", "--tls-verify=false", dest).stdout)
    assert inspected["Digest"] == image.manifest_digest
    assert inspected["Layers"] == image.layer_digests
    assert inspected["Architecture"] == "amd64"


def test_skopeo_copy_as_docker_schema2(moorage: Server, tmp_path: Path) -> None:
    image = two_layer_image(tmp_path, "skopeo-v2s2")
    dest = f"docker://{moorage.host}/interop/v2s2:v1"
    skopeo("copy", "--dest-tls-verify=false", "--format", "v2s2", image.ref, dest)

    raw = skopeo("inspect", "--raw", "--tls-verify=false", dest).stdout
    manifest = json.loads(raw)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert [layer["mediaType"] for layer in manifest["layers"]] == [DOCKER_LAYER] * 2
    assert [layer["digest"] for layer in manifest["layers"]] == image.layer_digests

    response = get_manifest(moorage, "interop/v2s2", "v1")
    assert response.headers["Content-Type"] == DOCKER_MANIFEST
    assert response.content.rstrip(b"\n") == raw.rstrip("\n").encode()
    # A client that accepts only Docker schema 2 gets it too.
    assert get_manifest(moorage, "interop/v2s2", "v1", DOCKER_MANIFEST).content == response.content
    config = json.loads(get_blob(moorage, "interop/v2s2", manifest["config"]["digest"]))
    assert config["architecture"] == "amd64"
    assert config["rootfs"]["type"] == "layers"


def test_skopeo_list_tags(moorage: Server, tmp_path: Path) -> None:
    image = make_image(tmp_path / "layout", "v1", seed="tags")
    repo = f"docker://{moorage.host}/interop/tags"
    for tag in ("v1", "v2", "latest"):
        skopeo("copy", "--dest-tls-verify=false", image.ref, f"{repo}:{tag}")

    listed = json.loads(skopeo("list-tags", "--tls-verify=false", repo).stdout)
    assert listed["Repository"] == f"{moorage.host}/interop/tags"
    assert sorted(listed["Tags"]) == ["latest", "v1", "v2"]


def test_skopeo_round_trip_to_new_oci_layout(moorage: Server, tmp_path: Path) -> None:
    image = two_layer_image(tmp_path, "round-trip")
    remote = f"docker://{moorage.host}/interop/round-trip:v1"
    skopeo("copy", "--dest-tls-verify=false", image.ref, remote)

    out = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", remote, f"oci:{out}:copy")

    raw, manifest = read_layout(out, "copy")
    assert raw == image.manifest
    assert digest_of(raw) == image.manifest_digest
    assert [layer["digest"] for layer in manifest["layers"]] == image.layer_digests
    assert manifest["config"]["digest"] == image.config_digest
    for digest in [image.config_digest, *image.layer_digests]:
        assert layout_blob(out, digest) == layout_blob(image.layout, digest)


def test_skopeo_copy_between_repositories_mounts_blobs(moorage: Server, tmp_path: Path) -> None:
    image = two_layer_image(tmp_path, "mount")
    source = f"docker://{moorage.host}/team-a/app:v1"
    target = f"docker://{moorage.host}/team-b/app:v1"
    skopeo("copy", "--dest-tls-verify=false", image.ref, source)
    copied = skopeo(
        "--debug", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", source, target
    )

    # skopeo remembers where it pushed each layer and mounts it from there: every layer arrives
    # by cross-repository mount (201 at the POST), none by a second upload.
    log = copied.stderr
    for digest in image.layer_digests:
        quoted = digest.replace(":", "%3A")
        assert f"from=team-a%2Fapp&mount={quoted}" in log
        assert f"?digest={quoted}" not in log
    assert log.count("mount OK") == len(image.layer_digests)

    assert (
        skopeo("inspect", "--raw", "--tls-verify=false", target).stdout.encode().rstrip(b"\n")
        == image.manifest
    )
    for digest in [image.config_digest, *image.layer_digests]:
        head = requests.head(f"{moorage.url}/v2/team-b/app/blobs/{digest}", timeout=10)
        assert head.status_code == 200
        assert get_blob(moorage, "team-b/app", digest) == layout_blob(image.layout, digest)


def test_skopeo_delete_removes_manifest(moorage: Server, tmp_path: Path) -> None:
    image = make_image(tmp_path / "layout", "v1", seed="delete")
    ref = f"docker://{moorage.host}/interop/delete:v1"
    skopeo("copy", "--dest-tls-verify=false", image.ref, ref)
    skopeo("copy", "--dest-tls-verify=false", image.ref, ref.replace(":v1", ":also"))
    assert json.loads(skopeo("inspect", "--tls-verify=false", ref).stdout)["Digest"] == (
        image.manifest_digest
    )

    skopeo("delete", "--tls-verify=false", ref)

    failed = skopeo("inspect", "--raw", "--tls-verify=false", ref, check=False)
    assert failed.returncode != 0
    assert "manifest unknown" in failed.stderr.lower()
    by_digest = requests.get(
        f"{moorage.url}/v2/interop/delete/manifests/{image.manifest_digest}",
        headers={"Accept": OCI_MANIFEST},
        timeout=10,
    )
    assert by_digest.status_code == 404
    assert by_digest.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    # skopeo deletes by digest: the other tag on the same manifest goes too.
    listed = json.loads(skopeo("list-tags", "--tls-verify=false", ref.rsplit(":", 1)[0]).stdout)
    assert not listed["Tags"]

    # The layers stay linked, so pushing the image again only needs the manifest.
    skopeo("copy", "--dest-tls-verify=false", image.ref, ref)
    assert (
        skopeo("inspect", "--raw", "--tls-verify=false", ref).stdout.encode().rstrip(b"\n")
        == image.manifest
    )


# podman


@pytest.mark.parametrize("push_format", ["v2s2", "oci"])
def test_podman_push_and_pull(
    moorage: Server, tmp_path: Path, short_dirs: Callable[[], Path], push_format: str
) -> None:
    image = two_layer_image(tmp_path, f"podman-{push_format}")
    pusher = ContainersCli("podman", tmp_path / "push-root", short_dirs())
    puller = ContainersCli("podman", tmp_path / "pull-root", short_dirs())
    image_id = pusher("pull", image.ref).stdout.split()[-1]
    name = f"{moorage.host}/interop/podman-{push_format}:v1"
    pusher("tag", image_id, name)
    digest_file = tmp_path / "digest"
    pusher(
        "push",
        "--tls-verify=false",
        "--format",
        push_format,
        "--digestfile",
        str(digest_file),
        name,
    )
    pushed_digest = digest_file.read_text().strip()

    response = get_manifest(moorage, f"interop/podman-{push_format}", "v1")
    assert response.headers["Docker-Content-Digest"] == pushed_digest
    manifest = response.json()
    expected_type = DOCKER_MANIFEST if push_format == "v2s2" else OCI_MANIFEST
    assert manifest["mediaType"] == expected_type
    assert response.headers["Content-Type"] == expected_type
    assert len(manifest["layers"]) == 2
    for descriptor in [manifest["config"], *manifest["layers"]]:
        blob = get_blob(moorage, f"interop/podman-{push_format}", descriptor["digest"])
        assert len(blob) == descriptor["size"]

    puller("pull", "--tls-verify=false", name)
    [inspected] = json.loads(puller("image", "inspect", name).stdout)
    assert inspected["Digest"] == pushed_digest
    assert f"{name.rsplit(':', 1)[0]}@{pushed_digest}" in inspected["RepoDigests"]
    assert inspected["Architecture"] == "amd64"
    [source] = json.loads(pusher("image", "inspect", name).stdout)
    # The same image: its config (the image ID) and uncompressed layers survive the trip.
    assert inspected["Id"] == source["Id"]
    assert inspected["RootFS"]["Layers"] == source["RootFS"]["Layers"]


# buildah


def test_buildah_manifest_list_push_all(
    moorage: Server, tmp_path: Path, short_dirs: Callable[[], Path]
) -> None:
    amd64 = make_image(tmp_path / "amd64", "v1", architecture="amd64", seed="amd64")
    arm64 = make_image(tmp_path / "arm64", "v1", architecture="arm64", seed="arm64")
    buildah = ContainersCli("buildah", tmp_path / "buildah-root", short_dirs())
    buildah("manifest", "create", "interop-list")
    buildah("manifest", "add", "interop-list", amd64.ref)
    buildah("manifest", "add", "--arch", "arm64", "interop-list", arm64.ref)
    ref = f"docker://{moorage.host}/interop/multi:v1"
    buildah("manifest", "push", "--all", "--tls-verify=false", "interop-list", ref)

    response = get_manifest(moorage, "interop/multi", "v1", f"{OCI_INDEX}, {DOCKER_LIST}")
    index = response.json()
    assert response.headers["Content-Type"] in (OCI_INDEX, DOCKER_LIST)
    assert index["mediaType"] == response.headers["Content-Type"]
    children = index["manifests"]
    assert sorted(child["platform"]["architecture"] for child in children) == ["amd64", "arm64"]
    expected = {"amd64": amd64, "arm64": arm64}
    for child in children:
        fetched = get_manifest(moorage, "interop/multi", child["digest"])
        assert fetched.headers["Docker-Content-Digest"] == child["digest"]
        assert len(fetched.content) == child["size"]
        assert fetched.headers["Content-Type"] == child["mediaType"]
        manifest = fetched.json()
        source = expected[child["platform"]["architecture"]]
        assert [layer["digest"] for layer in manifest["layers"]] == source.layer_digests
        config = json.loads(get_blob(moorage, "interop/multi", manifest["config"]["digest"]))
        assert config["architecture"] == child["platform"]["architecture"]

    raw = skopeo("inspect", "--raw", "--tls-verify=false", ref).stdout
    assert json.loads(raw) == index
    assert digest_of(raw.rstrip("\n").encode()) == response.headers["Docker-Content-Digest"]
    arm = json.loads(
        skopeo("inspect", "--tls-verify=false", "--override-arch", "arm64", ref).stdout
    )
    assert arm["Architecture"] == "arm64"
    assert arm["Layers"] == arm64.layer_digests

    # podman picks the child of the requested platform.
    podman = ContainersCli("podman", tmp_path / "podman-root", short_dirs())
    name = ref.removeprefix("docker://")
    podman("pull", "--tls-verify=false", "--arch", "arm64", name)
    [pulled] = json.loads(podman("image", "inspect", name).stdout)
    assert pulled["Architecture"] == "arm64"
    arm_child = next(c for c in children if c["platform"]["architecture"] == "arm64")
    # podman records the digest it pulled by (the index) and the child's among its RepoDigests.
    assert pulled["Digest"] == response.headers["Docker-Content-Digest"]
    repo_name = name.rsplit(":", 1)[0]
    assert f"{repo_name}@{arm_child['digest']}" in pulled["RepoDigests"]

    # The whole index, children included, copies on to another repository and out to a layout.
    copy = f"docker://{moorage.host}/interop/multi-copy:v1"
    skopeo("copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false", ref, copy)
    copied = get_manifest(moorage, "interop/multi-copy", "v1", f"{OCI_INDEX}, {DOCKER_LIST}")
    assert copied.content == response.content
    out = tmp_path / "multi-out"
    skopeo("copy", "--all", "--src-tls-verify=false", copy, f"oci:{out}:v1")
    raw_index, _ = read_layout(out, "v1")
    assert raw_index == response.content
    for child in children:
        manifest = json.loads(layout_blob(out, child["digest"]))
        for layer in manifest["layers"]:
            source = expected[child["platform"]["architecture"]]
            assert layout_blob(out, layer["digest"]) == layout_blob(source.layout, layer["digest"])


def test_buildah_from_scratch_push_zstd_then_podman_pull(
    moorage: Server, tmp_path: Path, short_dirs: Callable[[], Path]
) -> None:
    buildah = ContainersCli("buildah", tmp_path / "buildah-root", short_dirs())
    content = tmp_path / "content.bin"
    content.write_bytes(os.urandom(200 * 1024))
    container = buildah("from", "scratch").stdout.strip()
    buildah("copy", container, str(content), "/content.bin")
    buildah("config", "--label", "org.example.built-by=moorage-tests", container)
    buildah("commit", container, "localhost/built:v1")
    ref = f"docker://{moorage.host}/interop/zstd:v1"
    digest_file = tmp_path / "digest"
    buildah(
        "push",
        "--tls-verify=false",
        "--format",
        "oci",
        "--compression-format",
        "zstd",
        "--digestfile",
        str(digest_file),
        "localhost/built:v1",
        ref,
    )

    response = get_manifest(moorage, "interop/zstd", "v1")
    assert response.headers["Docker-Content-Digest"] == digest_file.read_text().strip()
    manifest = response.json()
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
    blob = get_blob(moorage, "interop/zstd", layer["digest"])
    assert blob[:4] == b"\x28\xb5\x2f\xfd"  # the zstd frame magic
    config = json.loads(get_blob(moorage, "interop/zstd", manifest["config"]["digest"]))
    assert config["config"]["Labels"]["org.example.built-by"] == "moorage-tests"

    podman = ContainersCli("podman", tmp_path / "podman-root", short_dirs())
    podman("pull", "--tls-verify=false", ref.removeprefix("docker://"))
    [inspected] = json.loads(podman("image", "inspect", ref.removeprefix("docker://")).stdout)
    assert inspected["Digest"] == response.headers["Docker-Content-Digest"]
    assert inspected["Id"] == manifest["config"]["digest"].split(":")[1]


# oras-py


def _oras_push_and_pull(moorage: Server, tmp_path: Path, *, chunked: bool) -> None:
    files = tmp_path / "files"
    files.mkdir()
    payload = files / "payload.bin"
    payload.write_bytes(os.urandom(300 * 1024 + 17))  # several chunks, the last one short
    notes = files / "notes.txt"
    notes.write_text("moorage interop\n")
    empty = files / "empty"
    empty.write_bytes(b"")  # a zero-length blob: pushed, and served back with no body
    tree = files / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "leaf.txt").write_text("leaf\n")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"purpose": "interop"}))

    client = oras.provider.Registry(hostname=moorage.host, insecure=True)
    target = f"{moorage.host}/interop/artifact:{'chunked' if chunked else 'mono'}"
    response = client.push(
        target=target,
        files=[f"{payload}:{ARTIFACT_LAYER}", f"{notes}:{ARTIFACT_LAYER}", str(empty), str(tree)],
        manifest_config=f"{config}:{ARTIFACT_TYPE}",
        manifest_annotations={"org.opencontainers.image.description": "interop"},
        disable_path_validation=True,
        do_chunked=chunked,
        chunk_size=64 * 1024,
        quiet=True,
    )
    assert response.status_code == 201
    manifest_digest = response.headers["Docker-Content-Digest"]

    manifest = client.get_manifest(target)
    assert manifest["config"]["mediaType"] == ARTIFACT_TYPE
    layers = manifest["layers"]
    assert [layer["mediaType"] for layer in layers[:2]] == [ARTIFACT_LAYER] * 2
    assert layers[2]["size"] == 0
    assert manifest["annotations"]["org.opencontainers.image.description"] == "interop"
    assert get_manifest(moorage, "interop/artifact", manifest_digest).json() == manifest
    assert get_blob(moorage, "interop/artifact", manifest["config"]["digest"]) == (
        config.read_bytes()
    )
    for layer in layers:
        assert len(get_blob(moorage, "interop/artifact", layer["digest"])) == layer["size"]

    out = tmp_path / "pulled"
    pulled = client.pull(target=target, outdir=str(out))
    assert sorted(Path(f).name for f in pulled) == ["empty", "notes.txt", "payload.bin", "tree"]
    assert (out / "payload.bin").read_bytes() == payload.read_bytes()
    assert (out / "notes.txt").read_bytes() == notes.read_bytes()
    assert (out / "empty").read_bytes() == b""
    assert (out / "tree" / "sub" / "leaf.txt").read_text() == "leaf\n"
    assert (
        hashlib.sha256((out / "payload.bin").read_bytes()).hexdigest()
        == layers[0]["digest"].split(":")[1]
    )


def test_oras_push_pull_monolithic(moorage: Server, tmp_path: Path) -> None:
    _oras_push_and_pull(moorage, tmp_path, chunked=False)


def test_oras_push_pull_chunked(moorage: Server, tmp_path: Path) -> None:
    _oras_push_and_pull(moorage, tmp_path, chunked=True)


def test_oras_tags_and_delete_tag(moorage: Server, tmp_path: Path) -> None:
    client = oras.provider.Registry(hostname=moorage.host, insecure=True)
    repo = f"{moorage.host}/interop/tagged"
    digests = {}
    for tag in ("one", "two", "three"):
        blob = tmp_path / f"{tag}.txt"
        blob.write_text(f"artifact {tag}\n")
        response = client.push(
            target=f"{repo}:{tag}",
            files=[f"{blob}:{ARTIFACT_LAYER}"],
            manifest_config=f"/dev/null:{ARTIFACT_TYPE}",
            disable_path_validation=True,
            quiet=True,
        )
        assert response.status_code == 201
        digests[tag] = response.headers["Docker-Content-Digest"]
    assert len(set(digests.values())) == 3

    assert sorted(client.get_tags(repo)) == ["one", "three", "two"]
    assert len(client.get_tags(repo, N=2)) == 2

    assert client.delete_tag(repo, "two") is True
    assert sorted(client.get_tags(repo)) == ["one", "three"]
    gone = requests.get(
        f"{moorage.url}/v2/interop/tagged/manifests/{digests['two']}",
        headers={"Accept": OCI_MANIFEST},
        timeout=10,
    )
    assert gone.status_code == 404
    assert client.delete_tag(repo, "two") is False
    assert (
        get_manifest(moorage, "interop/tagged", "one").headers["Docker-Content-Digest"]
        == (digests["one"])
    )


def test_oras_push_with_subject_is_listed_as_referrer(moorage: Server, tmp_path: Path) -> None:
    client = oras.provider.Registry(hostname=moorage.host, insecure=True)
    repo = f"{moorage.host}/interop/referred"
    subject_file = tmp_path / "subject.txt"
    subject_file.write_text("the subject\n")
    client.push(
        target=f"{repo}:v1",
        files=[f"{subject_file}:{ARTIFACT_LAYER}"],
        disable_path_validation=True,
        quiet=True,
    )
    subject = oras.oci.Subject.from_manifest(client.get_manifest(f"{repo}:v1"))
    assert (
        subject.digest
        == get_manifest(moorage, "interop/referred", "v1").headers["Docker-Content-Digest"]
    )

    signature = tmp_path / "signature.sig"
    signature.write_text("signed\n")
    sig_type = "application/vnd.moorage.test.signature.v1"
    pushed = client.push(
        target=f"{repo}:sig",
        files=[f"{signature}:{ARTIFACT_LAYER}"],
        manifest_config=f"/dev/null:{sig_type}",
        subject=subject,
        disable_path_validation=True,
        quiet=True,
    )
    assert pushed.status_code == 201
    assert pushed.headers["OCI-Subject"] == subject.digest
    referrer_digest = pushed.headers["Docker-Content-Digest"]

    referrers_url = f"{moorage.url}/v2/interop/referred/referrers/{subject.digest}"
    listed = requests.get(referrers_url, timeout=10)
    assert listed.status_code == 200
    assert listed.headers["Content-Type"] == OCI_INDEX
    [entry] = listed.json()["manifests"]
    assert entry["digest"] == referrer_digest
    assert entry["artifactType"] == sig_type
    assert entry["mediaType"] == OCI_MANIFEST
    filtered = requests.get(referrers_url, params={"artifactType": "other/type"}, timeout=10)
    assert filtered.json()["manifests"] == []

    assert client.delete_tag(repo, "sig") is True
    assert requests.get(referrers_url, timeout=10).json()["manifests"] == []
