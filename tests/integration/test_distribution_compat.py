"""Cross-compatibility with the reference registry (CNCF distribution 2.8, `docker-registry`) on
one filesystem root: what either registry wrote, the other serves byte for byte; deletes made by
one are seen by the other; both write the same tree for the same pushes; an upload session begun
on either is finished on the other, which continues the running digest from the state the first
saved with the session.

Every comparison is between the two real registries: a "view" of a registry (catalog, tag lists,
HEAD and GET of every manifest and blob probed) is taken from the one that wrote the data and must
equal the view the other gives of the same root. Each test keeps everything under its tmp_path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.images import OCI_INDEX, OCI_MANIFEST, Image, digest_of, make_image
from tests.servers import Server, moorage_config, read_back, run_moorage, run_reference_registry

pytestmark = [pytest.mark.interop, pytest.mark.timeout(600)]

DISTRIBUTION = "distribution"
MOORAGE = "moorage"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# distribution 2.8 answers only the manifest types a client lists (and 404 without an Accept).
ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
HTTP_TIMEOUT = 30  # seconds, for any one request
COMMAND_TIMEOUT = 120  # seconds, for any one skopeo or docker-registry command
REPOSITORIES = ("team/app", "team/app/tools", "plain")
NOT_REPOSITORIES = ("team", "absent")  # an intermediate directory, and nothing at all
LINK = re.compile(r"sha256:[0-9a-f]{64}")
ERROR_LINE = re.compile(r"^[\d:,.TZ -]+ (?:ERROR|error|CRITICAL|critical) .*", re.MULTILINE)


# --- the registries -------------------------------------------------------------------------


@contextlib.contextmanager
def serve(kind: str, tmp_path: Path, root: Path, secret: str = "") -> Iterator[Server]:
    """Runs one registry of `kind` on the filesystem at `root`, with `http.secret` when given.
    Moorage's log must stay free of errors: a client may shrug off a failed request, the log
    does not."""
    workdir = tmp_path / "servers"
    if kind == DISTRIBUTION:
        with run_reference_registry(workdir, root, secret=secret) as server:
            yield server
        return
    config = moorage_config(root, 0, http={"secret": secret} if secret else {})
    with run_moorage(workdir, config) as server:
        yield server
    logs = server.logs()
    errors = ERROR_LINE.findall(logs)
    assert not errors and "Traceback" not in logs, logs[logs.find(errors[0] if errors else "Tr") :]


def other(kind: str) -> str:
    return MOORAGE if kind == DISTRIBUTION else DISTRIBUTION


def run(args: list[str]) -> bytes:
    """Runs a command bounded by COMMAND_TIMEOUT; a failure fails the test with its output."""
    if shutil.which(args[0]) is None:  # skopeo and docker-registry are both Debian packages
        pytest.fail(f"{args[0]} is missing: apt-get install -y {args[0]}")
    result = subprocess.run(args, capture_output=True, timeout=COMMAND_TIMEOUT, check=False)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited with {result.returncode}\n"
            f"{result.stdout.decode(errors='replace')}\n{result.stderr.decode(errors='replace')}"
        )
    return result.stdout


def push(source: str, dest: str, *flags: str) -> None:
    run(
        ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", *flags, source, f"docker://{dest}"]
    )


def skopeo_delete(reference: str) -> None:
    run(["skopeo", "delete", "--tls-verify=false", f"docker://{reference}"])


# --- the images ------------------------------------------------------------------------------


@dataclass
class Images:
    oci: Image  # two layers, pushed as OCI
    docker: Image  # pushed with --format v2s2
    amd64: Image  # the two platforms of the index
    arm64: Image
    index: bytes
    bare: bytes  # `oci`'s manifest without its mediaType field, pushed with requests
    docker_digest: str = ""  # of the converted manifest, known once pushed
    manifest_digests: list[str] = field(default_factory=list)
    blob_digests: list[str] = field(default_factory=list)

    @property
    def index_digest(self) -> str:
        return digest_of(self.index)

    @property
    def multi_ref(self) -> str:
        return f"oci:{self.amd64.layout}:multi"


@pytest.fixture
def images(tmp_path: Path) -> Images:
    layouts = tmp_path / "layouts"
    oci = make_image(
        layouts / "oci", "v1", [{"a.txt": os.urandom(64 * 1024)}, {"b/c.txt": b"c\n"}], seed="oci"
    )
    docker = make_image(layouts / "docker", "v1", seed="docker")
    amd64 = make_image(layouts / "multi", "amd64", architecture="amd64", seed="multi")
    arm64 = make_image(layouts / "multi", "arm64", architecture="arm64", seed="multi")
    # The index goes into the layout as a blob, tagged `multi` in index.json: `copy --all` of
    # oci:DIR:multi then pushes both platforms and the index.
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": image.manifest_digest,
                    "size": len(image.manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for image, arch in ((amd64, "amd64"), (arm64, "arm64"))
            ],
        }
    ).encode()
    (amd64.layout / "blobs" / "sha256" / digest_of(index).split(":")[1]).write_bytes(index)
    layout_index = json.loads((amd64.layout / "index.json").read_text())
    layout_index["manifests"].append(
        {
            "mediaType": OCI_INDEX,
            "digest": digest_of(index),
            "size": len(index),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }
    )
    (amd64.layout / "index.json").write_text(json.dumps(layout_index))
    bare_document = json.loads(oci.manifest)
    del bare_document["mediaType"]
    bare = json.dumps(bare_document).encode()
    found = Images(oci, docker, amd64, arm64, index, bare)
    found.manifest_digests = [
        oci.manifest_digest,
        docker.manifest_digest,  # the unconverted one: never pushed, probed as absent
        amd64.manifest_digest,
        arm64.manifest_digest,
        digest_of(index),
        digest_of(bare),
    ]
    found.blob_digests = sorted(
        {d for i in (oci, docker, amd64, arm64) for d in (i.config_digest, *i.layer_digests)}
    )
    return found


TAGS = ("v1", "latest", "docker", "multi", "bare", "stable", "1.0", "back")


def push_all(server: Server, images: Images) -> None:
    """The same pushes for every test: OCI, Docker schema 2 and an index, several tags on one
    digest, a tag moved to another digest, nested names (`team/app` and `team/app/tools`), and
    an OCI manifest without a mediaType."""
    host = server.host
    push(images.oci.ref, f"{host}/team/app:v1")
    push(images.oci.ref, f"{host}/team/app:latest")
    push(images.docker.ref, f"{host}/team/app:docker", "--format", "v2s2")
    push(images.multi_ref, f"{host}/team/app:multi", "--all", "--preserve-digests")
    push(images.amd64.ref, f"{host}/team/app/tools:stable")
    push(images.oci.ref, f"{host}/team/app/tools:stable")
    push(images.oci.ref, f"{host}/plain:1.0")
    response = requests.put(
        f"{server.url}/v2/team/app/manifests/bare",
        data=images.bare,
        headers={"Content-Type": OCI_MANIFEST},
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 201, response.text
    docker_digest = head_manifest(server, "team/app", "docker")
    assert docker_digest is not None
    images.docker_digest = docker_digest
    if docker_digest not in images.manifest_digests:
        images.manifest_digests.append(docker_digest)
    converted = json.loads(get(server, f"/v2/team/app/manifests/{docker_digest}").content)
    assert converted["mediaType"] == DOCKER_MANIFEST
    for descriptor in (converted["config"], *converted["layers"]):
        assert descriptor["digest"] in images.blob_digests  # conversion keeps the blobs


# --- views of a registry ---------------------------------------------------------------------


def get(server: Server, path: str, method: str = "GET") -> requests.Response:
    return requests.request(
        method, f"{server.url}{path}", headers={"Accept": ACCEPT}, timeout=HTTP_TIMEOUT
    )


def head_manifest(server: Server, name: str, reference: str) -> str | None:
    response = get(server, f"/v2/{name}/manifests/{reference}", "HEAD")
    return response.headers["Docker-Content-Digest"] if response.status_code == 200 else None


def _answer(head: requests.Response, body: requests.Response) -> dict[str, Any]:
    """What a HEAD and a GET of one object say, in terms both registries must agree on: the
    statuses, and for a hit the digest, type and length headers and the body's own digest."""
    if head.status_code != 200 or body.status_code != 200:
        return {"head": head.status_code, "get": body.status_code}
    assert body.headers["Docker-Content-Digest"] == digest_of(body.content)
    return {
        "head": 200,
        "get": 200,
        "digest": head.headers["Docker-Content-Digest"],
        "length": int(head.headers["Content-Length"]),
        "type": head.headers["Content-Type"],
        "get type": body.headers["Content-Type"],
        "content": digest_of(body.content),
    }


def view(server: Server, images: Images) -> dict[str, Any]:
    """Everything a client can observe of the pushed data, with references probed whether or
    not they exist (so deletes show up as 404s on both sides)."""
    seen: dict[str, Any] = {}
    catalog = get(server, "/v2/_catalog")
    assert catalog.status_code == 200
    seen["catalog"] = catalog.json()["repositories"]
    for name in (*REPOSITORIES, *NOT_REPOSITORIES):
        tags = get(server, f"/v2/{name}/tags/list")
        # distribution lists tags in directory order, and `null` for none
        seen[f"tags {name}"] = (
            sorted(tags.json()["tags"] or []) if tags.status_code == 200 else tags.status_code
        )
        for reference in (*TAGS, *images.manifest_digests):
            path = f"/v2/{name}/manifests/{reference}"
            seen[f"manifest {name}:{reference}"] = _answer(
                get(server, path, "HEAD"), get(server, path)
            )
        for digest in images.blob_digests:
            path = f"/v2/{name}/blobs/{digest}"
            seen[f"blob {name}@{digest}"] = _answer(get(server, path, "HEAD"), get(server, path))
    return seen


def check_pushed_view(seen: dict[str, Any], images: Images) -> None:
    """The writer's own view holds what was pushed, so comparing views is not comparing
    nothing."""
    assert seen["catalog"] == ["plain", "team/app", "team/app/tools"]
    assert seen["tags team/app"] == ["bare", "docker", "latest", "multi", "v1"]
    assert seen["tags team"] == 404
    for reference in ("v1", images.oci.manifest_digest):
        answer = seen[f"manifest team/app:{reference}"]
        assert answer["content"] == answer["digest"] == images.oci.manifest_digest
        assert answer["type"] == answer["get type"] == OCI_MANIFEST
    assert seen["manifest team/app:multi"]["content"] == images.index_digest
    assert seen["manifest team/app:multi"]["type"] == OCI_INDEX
    assert seen["manifest team/app:docker"]["type"] == DOCKER_MANIFEST
    assert seen["manifest team/app:bare"]["type"] == OCI_MANIFEST
    assert seen["manifest team/app/tools:stable"]["digest"] == images.oci.manifest_digest
    assert seen[f"manifest team/app:{images.docker.manifest_digest}"]["head"] == 404
    for digest in images.blob_digests:
        assert seen[f"blob team/app@{digest}"]["content"] == digest


def check_with_skopeo(server: Server, images: Images, out: Path) -> None:
    """A real client reads the data back: raw manifests, tags, and copies to OCI layouts with
    every blob verified."""
    host = server.host
    out.mkdir(parents=True, exist_ok=True)
    inspect = ["skopeo", "inspect", "--raw", "--tls-verify=false"]
    assert run([*inspect, f"docker://{host}/team/app:v1"]) == images.oci.manifest
    assert run([*inspect, f"docker://{host}/team/app:multi"]) == images.index
    listed = json.loads(
        run(["skopeo", "list-tags", "--tls-verify=false", f"docker://{host}/team/app"])
    )
    assert sorted(listed["Tags"]) == ["bare", "docker", "latest", "multi", "v1"]

    copy = ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--preserve-digests"]
    run([*copy, "--all", f"docker://{host}/team/app:multi", f"oci:{out}/multi:multi"])
    run([*copy, f"docker://{host}/team/app/tools:stable", f"oci:{out}/oci:stable"])
    run([*copy, f"docker://{host}/team/app:docker", f"oci:{out}/docker:docker"])
    expected = {
        out / "multi": [
            images.index_digest,
            *(
                d
                for i in (images.amd64, images.arm64)
                for d in (i.manifest_digest, i.config_digest, *i.layer_digests)
            ),
        ],
        out / "oci": [
            images.oci.manifest_digest,
            images.oci.config_digest,
            *images.oci.layer_digests,
        ],
        out / "docker": [images.docker_digest, *images.docker.layer_digests],
    }
    for layout, digests in expected.items():
        top = json.loads((layout / "index.json").read_text())["manifests"]
        assert [entry["digest"] for entry in top] == [digests[0]]
        for digest in digests:
            blob = layout / "blobs" / "sha256" / digest.split(":")[1]
            assert digest_of(blob.read_bytes()) == digest


# --- 1, 2: what one registry wrote, the other serves ----------------------------------------


@pytest.mark.parametrize("writer", [DISTRIBUTION, MOORAGE])
def test_data_written_by_one_registry_is_served_by_the_other(
    tmp_path: Path, images: Images, writer: str
) -> None:
    root = tmp_path / "root"
    with serve(writer, tmp_path, root) as server:
        push_all(server, images)
        written = view(server, images)
    check_pushed_view(written, images)

    with serve(other(writer), tmp_path, root) as server:
        assert view(server, images) == written
        check_with_skopeo(server, images, tmp_path / "copies")


# --- 3: deletes made by one registry, seen by the other ---------------------------------------


def delete(server: Server, kind: str, images: Images, step: int) -> None:
    """Deletes by one registry. Step 1: a manifest by digest through its tag (its tags go too),
    a blob link, and on moorage a tag alone (distribution 2.8 refuses DELETE by tag). Step 2,
    on the other registry's data: another manifest, and a push on top."""
    host = server.host
    if step == 1:
        skopeo_delete(f"{host}/plain:1.0")
        skopeo_delete(f"{host}/team/app:docker")
        response = requests.delete(
            f"{server.url}/v2/plain/blobs/{images.oci.layer_digests[0]}", timeout=HTTP_TIMEOUT
        )
        assert response.status_code == 202, response.text
        if kind == MOORAGE:
            response = requests.delete(
                f"{server.url}/v2/team/app/manifests/latest", timeout=HTTP_TIMEOUT
            )
            assert response.status_code == 202, response.text
    else:
        skopeo_delete(f"{host}/team/app:multi")
        push(images.docker.ref, f"{host}/plain:back", "--format", "v2s2")


@pytest.mark.parametrize("first", [DISTRIBUTION, MOORAGE])
def test_deletes_by_one_registry_are_seen_by_the_other(
    tmp_path: Path, images: Images, first: str
) -> None:
    root = tmp_path / "root"
    second = other(first)
    with serve(first, tmp_path, root) as server:
        push_all(server, images)
        delete(server, first, images, 1)
        after_first = view(server, images)
    assert after_first["manifest plain:1.0"] == {"head": 404, "get": 404}
    assert after_first[f"manifest team/app:{images.docker_digest}"] == {"head": 404, "get": 404}
    assert "docker" not in after_first["tags team/app"]
    assert after_first["tags plain"] == []
    assert after_first[f"blob plain@{images.oci.layer_digests[0]}"]["head"] == 404
    assert after_first[f"blob team/app@{images.oci.layer_digests[0]}"]["head"] == 200
    assert after_first["manifest team/app:v1"]["digest"] == images.oci.manifest_digest
    assert ("latest" in after_first["tags team/app"]) == (first == DISTRIBUTION)

    with serve(second, tmp_path, root) as server:
        assert view(server, images) == after_first
        delete(server, second, images, 2)
        after_second = view(server, images)
    assert after_second["manifest team/app:multi"] == {"head": 404, "get": 404}
    assert after_second[f"manifest team/app:{images.index_digest}"]["head"] == 404
    assert after_second[f"manifest team/app:{images.amd64.manifest_digest}"]["head"] == 200
    assert after_second["manifest plain:back"]["digest"] == images.docker_digest

    with serve(first, tmp_path, root) as server:
        assert view(server, images) == after_second


# --- 4: the same pushes write the same tree -------------------------------------------------


def storage_tree(root: Path) -> dict[str, str]:
    """Every file below docker/registry/v2 but upload sessions and moorage's own records
    (the referrers index, pull times): a link file by its content, any other file by its
    digest."""
    base = root / "docker" / "registry" / "v2"
    tree = {}
    for path in base.rglob("*"):
        relative = path.relative_to(base)
        if path.is_file() and not {"_uploads", "_referrers", "_pulls"} & set(relative.parts):
            content = path.read_bytes()
            tree[relative.as_posix()] = (
                content.decode() if path.name == "link" else digest_of(content)
            )
    return tree


def upload_blob(server: Server, name: str, data: bytes, algorithm: str = "sha256") -> str:
    """Pushes a blob in a POST and a PUT naming its digest in `algorithm`; returns the digest."""
    digest = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    started = requests.post(f"{server.url}/v2/{name}/blobs/uploads/", timeout=HTTP_TIMEOUT)
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    separator = "&" if "?" in location else "?"
    finished = requests.put(
        f"{location}{separator}digest={digest}",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=HTTP_TIMEOUT,
    )
    assert finished.status_code == 201, finished.text
    return digest


def garbage_collect(tmp_path: Path, root: Path) -> None:
    """distribution's offline garbage collector over `root`."""
    config = tmp_path / f"gc-{root.name}.yml"
    config.write_text(
        yaml.safe_dump({"version": "0.1", "storage": {"filesystem": {"rootdirectory": str(root)}}})
    )
    run(["docker-registry", "garbage-collect", str(config)])


def test_same_pushes_write_the_same_tree(tmp_path: Path, images: Images) -> None:
    loose = b"a blob in a repository without manifests\n"
    trees = {}
    for kind in (DISTRIBUTION, MOORAGE):
        root = tmp_path / f"root-{kind}"
        with serve(kind, tmp_path, root) as server:
            push_all(server, images)
            delete(server, DISTRIBUTION, images, 1)  # what both support
            upload_blob(server, "loose", loose)  # a repository without manifests
            upload_blob(server, "loose", loose * 2, "sha512")
        trees[kind] = storage_tree(root)

    reference = trees[DISTRIBUTION]
    repo = "repositories/team/app/_manifests"
    oci_hex = images.oci.manifest_digest.split(":")[1]
    assert reference[f"{repo}/tags/v1/current/link"] == images.oci.manifest_digest
    assert reference[f"{repo}/revisions/sha256/{oci_hex}/link"] == images.oci.manifest_digest
    layers = "repositories/loose/_layers"
    assert f"{layers}/sha256/{hashlib.sha256(loose).hexdigest()}/link" in reference
    # A sha512 blob is stored under its sha256, and its sha512 link names the sha256.
    sha512_link = f"{layers}/sha512/{hashlib.sha512(loose * 2).hexdigest()}/link"
    assert reference[sha512_link] == digest_of(loose * 2)
    for path, content in reference.items():
        if path.endswith("/link"):
            assert LINK.fullmatch(content), (path, content)
    assert trees[MOORAGE] == reference

    # distribution's garbage collector reads moorage's tree as its own, and sweeps the same.
    for kind in (DISTRIBUTION, MOORAGE):
        garbage_collect(tmp_path, tmp_path / f"root-{kind}")
    swept = storage_tree(tmp_path / f"root-{DISTRIBUTION}")
    docker_config = (
        f"blobs/sha256/{images.docker.config_digest[7:9]}/{images.docker.config_digest[7:]}/data"
    )
    assert docker_config in reference and docker_config not in swept
    assert storage_tree(tmp_path / f"root-{MOORAGE}") == swept


@pytest.mark.parametrize("writer", [DISTRIBUTION, MOORAGE])
def test_sha512_blob_written_by_one_registry_is_served_by_the_other(
    tmp_path: Path, writer: str
) -> None:
    root = tmp_path / "root"
    data = os.urandom(200_000)
    with serve(writer, tmp_path, root) as server:
        sha512 = upload_blob(server, "hashes", data, "sha512")
    for kind in (other(writer), writer):
        with serve(kind, tmp_path, root) as server:
            for digest in (sha512, digest_of(data)):  # linked under both
                url = f"{server.url}/v2/hashes/blobs/{digest}"
                head = requests.head(url, timeout=HTTP_TIMEOUT)
                assert head.status_code == 200, (kind, digest)
                assert int(head.headers["Content-Length"]) == len(data)
                blob = requests.get(url, timeout=HTTP_TIMEOUT)
                assert blob.status_code == 200, (kind, digest)
                assert blob.content == data


# --- 5: an upload begun on distribution, finished on moorage ---------------------------------


def test_upload_session_started_on_distribution_is_finished_on_moorage(tmp_path: Path) -> None:
    root = tmp_path / "root"
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = digest_of(data)
    first = 1024 * 1024
    with serve(DISTRIBUTION, tmp_path, root) as server:
        started = requests.post(f"{server.url}/v2/team/app/blobs/uploads/", timeout=HTTP_TIMEOUT)
        assert started.status_code == 202, started.text
        assert "_state=" in started.headers["Location"]
        upload_id = started.headers["Docker-Upload-UUID"]
        patched = requests.patch(
            started.headers["Location"],
            data=data[:first],
            headers={"Content-Type": "application/octet-stream", "Content-Range": f"0-{first - 1}"},
            timeout=HTTP_TIMEOUT,
        )
        assert patched.status_code == 202, patched.text
        assert patched.headers["Range"] == f"0-{first - 1}"
    session = root / "docker/registry/v2/repositories/team/app/_uploads" / upload_id
    assert (session / "data").stat().st_size == first

    with serve(MOORAGE, tmp_path, root) as server:
        location = f"{server.url}/v2/team/app/blobs/uploads/{upload_id}"
        status = requests.get(location, timeout=HTTP_TIMEOUT)
        assert status.status_code == 204, status.text
        assert status.headers["Range"] == patched.headers["Range"]
        assert (
            requests.head(
                f"{server.url}/v2/team/app/blobs/{digest}", timeout=HTTP_TIMEOUT
            ).status_code
            == 404
        )
        rest = requests.patch(
            location,
            data=data[first:],
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{first}-{len(data) - 1}",
            },
            timeout=HTTP_TIMEOUT,
        )
        assert rest.status_code == 202, rest.text
        assert rest.headers["Range"] == f"0-{len(data) - 1}"
        finished = requests.put(f"{location}?digest={digest}", timeout=HTTP_TIMEOUT)
        assert finished.status_code == 201, finished.text
        assert finished.headers["Docker-Content-Digest"] == digest
        blob = requests.get(f"{server.url}/v2/team/app/blobs/{digest}", timeout=HTTP_TIMEOUT)
        assert blob.status_code == 200
        assert blob.content == data
        assert read_back(server) == []  # distribution's saved state was continued
    assert not session.exists()

    with serve(DISTRIBUTION, tmp_path, root) as server:
        blob = requests.get(f"{server.url}/v2/team/app/blobs/{digest}", timeout=HTTP_TIMEOUT)
        assert blob.status_code == 200
        assert blob.headers["Docker-Content-Digest"] == digest
        assert blob.content == data


@pytest.mark.parametrize("first_kind", [DISTRIBUTION, MOORAGE])
def test_upload_urls_work_across_registries_sharing_http_secret(
    tmp_path: Path, first_kind: str
) -> None:
    """Each registry signs the session state in its upload URLs (`_state`) in the same format:
    with one `http.secret`, a URL one registry issued is honoured by the other, state and all,
    and a URL signed with another secret is refused."""
    secret = "one-secret-for-the-whole-fleet"
    root = tmp_path / "root"
    data = os.urandom(2 * 1024 * 1024 + 5)
    digest = digest_of(data)
    half = len(data) // 2

    def start(kind: str) -> contextlib.AbstractContextManager[Server]:
        if kind == DISTRIBUTION:
            return run_reference_registry(tmp_path / "servers", root, secret=secret)
        config = {
            "version": "0.1",
            "storage": {"filesystem": {"rootdirectory": str(root)}},
            "http": {"secret": secret},
        }
        return run_moorage(tmp_path / "servers", config)

    second_kind = MOORAGE if first_kind == DISTRIBUTION else DISTRIBUTION
    with start(first_kind) as first:
        started = requests.post(f"{first.url}/v2/team/app/blobs/uploads/", timeout=HTTP_TIMEOUT)
        patched = requests.patch(
            started.headers["Location"],
            data=data[:half],
            headers={"Content-Type": "application/octet-stream"},
            timeout=HTTP_TIMEOUT,
        )
        assert patched.status_code == 202, patched.text
        issued = patched.headers["Location"]
    with start(second_kind) as second:
        url = second.url + issued[issued.index("/v2/") :]
        assert "_state=" in url
        rest = requests.patch(
            url,
            data=data[half:],
            headers={"Content-Type": "application/octet-stream"},
            timeout=HTTP_TIMEOUT,
        )
        assert rest.status_code == 202, rest.text
        forged = requests.get(
            url.split("_state=")[0] + "_state=" + issued.split("_state=")[1][:-8] + "AAAAAAA=",
            timeout=HTTP_TIMEOUT,
        )
        assert forged.status_code in (400, 404)
        finished = requests.put(
            rest.headers["Location"], params={"digest": digest}, timeout=HTTP_TIMEOUT
        )
        assert finished.status_code == 201, finished.text
        got = requests.get(f"{second.url}/v2/team/app/blobs/{digest}", timeout=HTTP_TIMEOUT)
        assert got.content == data


SECRET = "one-secret-for-the-whole-fleet"


def patch_chunk(url: str, chunk: bytes, offset: int) -> requests.Response:
    answer = requests.patch(
        url,
        data=chunk,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
        },
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 202, answer.text
    assert answer.headers["Range"] == f"0-{offset + len(chunk) - 1}"
    return answer


def aimed_at(server: Server, location: str) -> str:
    """A Location one registry issued, sent to `server` instead."""
    return server.url + location[location.index("/v2/") :]


@pytest.mark.parametrize("first_kind", [DISTRIBUTION, MOORAGE])
def test_an_upload_alternating_between_the_registries_gets_its_digest(
    tmp_path: Path, first_kind: str
) -> None:
    """Both registries serve one root with one `http.secret`; every request of a chunked
    upload goes to the other one. Each continues the running digest from the state the other
    saved after the previous chunk; moorage never reads the stored bytes back."""
    root = tmp_path / "root"
    sizes = [1024 * 1024 + 13, 777, 2 * 1024 * 1024 + 1, 64, 5]
    data = os.urandom(sum(sizes))
    digest = digest_of(data)
    with (
        serve(DISTRIBUTION, tmp_path, root, SECRET) as distribution,
        serve(MOORAGE, tmp_path, root, SECRET) as moorage,
    ):
        servers = [distribution, moorage] if first_kind == DISTRIBUTION else [moorage, distribution]
        started = requests.post(
            f"{servers[0].url}/v2/team/app/blobs/uploads/", timeout=HTTP_TIMEOUT
        )
        assert started.status_code == 202, started.text
        location, offset = started.headers["Location"], 0
        for turn, size in enumerate(sizes, start=1):
            answer = patch_chunk(
                aimed_at(servers[turn % 2], location), data[offset : offset + size], offset
            )
            location, offset = answer.headers["Location"], offset + size
        finishing = servers[(len(sizes) + 1) % 2]
        finished = requests.put(
            aimed_at(finishing, location), params={"digest": digest}, timeout=HTTP_TIMEOUT
        )
        assert finished.status_code == 201, finished.text
        assert finished.headers["Docker-Content-Digest"] == digest
        for server in servers:
            blob = requests.get(f"{server.url}/v2/team/app/blobs/{digest}", timeout=HTTP_TIMEOUT)
            assert blob.status_code == 200
            assert blob.content == data
        assert read_back(moorage) == []


@pytest.mark.parametrize("first_kind", [DISTRIBUTION, MOORAGE])
def test_each_registry_continues_the_hash_state_the_other_saved(
    tmp_path: Path, first_kind: str
) -> None:
    """Proof that the second registry continues the first one's saved state rather than
    reading the stored bytes back: between the two, those bytes are replaced behind both
    registries' backs by others of the same length. A registry that read them back would
    derive their digest and refuse the digest of the bytes the client sent; one that continues
    the saved state accepts it."""
    root = tmp_path / "root"
    data = os.urandom(3 * 1024 * 1024 + 17)
    first = 1024 * 1024 + 5
    with serve(first_kind, tmp_path, root, SECRET) as server:
        started = requests.post(f"{server.url}/v2/team/app/blobs/uploads/", timeout=HTTP_TIMEOUT)
        assert started.status_code == 202, started.text
        location = patch_chunk(started.headers["Location"], data[:first], 0).headers["Location"]
    upload_id = started.headers["Docker-Upload-UUID"]
    session = root / "docker/registry/v2/repositories/team/app/_uploads" / upload_id
    assert (session / "hashstates/sha256" / str(first)).is_file()
    (session / "data").write_bytes(os.urandom(first))
    with serve(other(first_kind), tmp_path, root, SECRET) as server:
        rest = patch_chunk(aimed_at(server, location), data[first:], first)
        finished = requests.put(
            aimed_at(server, rest.headers["Location"]),
            params={"digest": digest_of(data)},
            timeout=HTTP_TIMEOUT,
        )
        assert finished.status_code == 201, finished.text
        if other(first_kind) == MOORAGE:
            assert read_back(server) == []
