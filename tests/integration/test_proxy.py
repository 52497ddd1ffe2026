"""The pull-through cache against real upstreams on loopback: the reference registry
(distribution 2.8) with htpasswd, and moorage with its built-in token server standing in for
Docker Hub's token flow. skopeo, podman (directly and through a `registries.conf` mirror) and
docker (`registry-mirrors`) pull through it; the tests count what reaches each upstream in its
access log, stop it (between pulls, and mid-blob through a relay that can hold and cut the
connection), and check what the cache keeps and what its expiry unlinks, on the filesystem and
on S3 with two workers."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from moorage.config.secrets import MASK
from tests.api import OCI_MANIFEST, Client, error_codes, sha256
from tests.images import Image, make_image
from tests.integration.auth_support import SERVICE, builtin_section, htpasswd_file
from tests.integration.docker_support import Docker
from tests.integration.http_support import config as http_config
from tests.integration.http_support import make_ca
from tests.integration.http_support import moorage as moorage_process
from tests.integration.proxy_support import (
    Relay,
    port_of,
    relay,
    requests_in_log,
    wait_until,
)
from tests.integration.s3_support import bucket
from tests.integration.test_clients import ContainersCli, read_layout, skopeo
from tests.servers import (
    S3Server,
    Server,
    free_port,
    moorage_config,
    run_moorage,
    run_reference_registry,
    stop,
)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(600)]

MiB = 1024 * 1024
BIG = 48 * MiB  # the large blob
HOLD = 4 * MiB  # bytes the relay lets through before holding
PASSWORDS = {"cache": "cache-pw", "admin": "admin-pw"}
ACL = {
    "rules": [
        {"who": ["cache"], "repos": ["team/*"], "actions": ["pull"]},
        {"who": ["anonymous"], "repos": ["public/*"], "actions": ["pull"]},
        {"who": ["admin"], "repos": ["*"], "actions": ["*"]},
    ]
}
ACCEPT = OCI_MANIFEST


@pytest.fixture
def short_dirs() -> Iterator[Callable[[], Path]]:
    """Short directories for podman's run root (it must be under 50 characters)."""
    made: list[Path] = []

    def make() -> Path:
        made.append(Path(tempfile.mkdtemp(prefix="mp-")))
        return made[-1]

    yield make
    for directory in made:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Upstreams:
    distribution: Server  # htpasswd: cache and admin
    token: Server  # moorage with auth.builtin
    users: Path  # the htpasswd file both use
    root: Path  # distribution's storage root
    password_file: Path  # the cache's password, mode 0600
    app: Image  # library/app:v1 on distribution, team/app:v1 and public/tool:v1 on moorage
    big: bytes
    workdir: Path

    @property
    def big_digest(self) -> str:
        return sha256(self.big)


def token_for(server: Server, user: str, scope: str) -> str:
    answer = requests.get(
        f"{server.url}/auth/token",
        params={"service": SERVICE, "scope": scope},
        auth=(user, PASSWORDS[user]),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["token"])


def seed(upstream: Server, image: Image, repo: str, creds: str) -> None:
    skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", creds, image.ref,
        f"docker://{upstream.host}/{repo}",
    )  # fmt: skip


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    workdir = tmp_path_factory.mktemp("upstreams")
    users = htpasswd_file(workdir / "users", PASSWORDS)
    password_file = workdir / "cache-password"
    password_file.write_text(PASSWORDS["cache"] + "\n")
    password_file.chmod(0o600)
    acl = workdir / "acl.yml"
    acl.write_text(yaml.safe_dump(ACL))
    app = make_image(
        workdir / "app",
        "v1",
        [{"etc/motd": b"shared layer\n"}, {"data/blob.bin": os.urandom(512 * 1024)}],
        seed="app",
    )
    big = os.urandom(BIG)
    root = workdir / "distribution"
    htpasswd = {"htpasswd": {"realm": "upstream", "path": str(users)}}
    token_config = moorage_config(
        workdir / "token-data", 0, auth=builtin_section(users, acl, workdir / "keys" / "token.key")
    )
    with (
        run_reference_registry(workdir / "d", root, auth=htpasswd) as distribution,
        run_moorage(workdir / "t", token_config) as token,
    ):
        seed(distribution, app, "library/app:v1", "admin:admin-pw")
        seed(token, app, "team/app:v1", "admin:admin-pw")
        seed(token, app, "public/tool:v1", "admin:admin-pw")
        admin = Client(distribution.url, monolithic=False)
        admin.http.auth = ("admin", PASSWORDS["admin"])
        admin.push_blob("library/big", big)
        yield Upstreams(distribution, token, users, root, password_file, app, big, workdir)


def upstream_entry(
    prefix: str, server: Server | Relay, upstreams: Upstreams, **extra: Any
) -> dict[str, Any]:
    return {
        "prefix": prefix,
        "remoteurl": server.url,
        "username": "cache",
        "passwordfile": str(upstreams.password_file),
        **extra,
    }


def proxy_config(root: Path | None, *entries: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return moorage_config(root, 0, proxy={"upstreams": list(entries)}, **sections)


@dataclass
class Cache(Server):
    debug: str  # the debug listener's address, for /metrics


@pytest.fixture(scope="module")
def proxy(upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cache]:
    """One cache for several tests, each on names of its own: `hub/` is distribution, `ghcr/`
    moorage's token flow with the cache's credentials, `pub/` the same anonymously; any other
    name is an ordinary repository."""
    workdir = tmp_path_factory.mktemp("proxy")
    config = proxy_config(
        workdir / "data",
        upstream_entry("hub", upstreams.distribution, upstreams),
        upstream_entry("ghcr", upstreams.token, upstreams),
        {"prefix": "pub", "remoteurl": upstreams.token.url},
        http={"debug": {"addr": f"127.0.0.1:{free_port()}"}},
    )
    with run_moorage(workdir, config) as server:
        yield Cache(**vars(server), debug=config["http"]["debug"]["addr"])
        assert "Traceback" not in server.logs()


def data_file(root: Path, digest: str) -> Path:
    hex_ = digest.partition(":")[2]
    return root / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


def repository_dir(root: Path, name: str) -> Path:
    return root / "docker/registry/v2/repositories" / name


def links(root: Path, name: str, kind: str) -> list[str]:
    """The digests a repository links under `_layers` or `_manifests/revisions`."""
    directory = repository_dir(root, name) / kind
    return sorted(
        f"{algorithm.name}:{hex_.name}"
        for algorithm in directory.glob("*")
        for hex_ in algorithm.glob("*")
        if (hex_ / "link").exists()
    )


def layout_blobs(image: Image) -> list[str]:
    return [image.config_digest, *image.layer_digests]


# pulls


def test_skopeo_pulls_through_distribution_and_rechecks_the_tag(
    proxy: Cache, upstreams: Upstreams, tmp_path: Path
) -> None:
    image, distribution = upstreams.app, upstreams.distribution
    source = f"docker://{proxy.host}/hub/library/app:v1"
    skopeo("copy", "--src-tls-verify=false", source, f"oci:{tmp_path / 'out'}:v1")
    raw, _ = read_layout(tmp_path / "out", "v1")
    assert raw == image.manifest
    for digest in layout_blobs(image):
        path = f"/v2/library/app/blobs/{digest}"
        assert requests_in_log(distribution, "GET", path) == 1, path

    # Pulled again: the tag is checked upstream (a HEAD), nothing else is fetched.
    skopeo("copy", "--src-tls-verify=false", source, f"oci:{tmp_path / 'again'}:v1")
    assert read_layout(tmp_path / "again", "v1")[0] == image.manifest
    assert requests_in_log(distribution, "HEAD", "/v2/library/app/manifests/v1") == 2
    by_digest = f"/v2/library/app/manifests/{image.manifest_digest}"
    assert requests_in_log(distribution, "GET", by_digest) == 1
    for digest in layout_blobs(image):
        assert requests_in_log(distribution, "GET", f"/v2/library/app/blobs/{digest}") == 1

    # What was fetched is stored as a push stores it.
    root = proxy.root
    assert root is not None
    assert links(root, "hub/library/app", "_layers") == sorted(layout_blobs(image))
    assert links(root, "hub/library/app", "_manifests/revisions") == [image.manifest_digest]
    for digest in layout_blobs(image):
        assert hashlib.sha256(data_file(root, digest).read_bytes()).hexdigest() in digest
    tags = requests.get(f"{proxy.url}/v2/hub/library/app/tags/list", timeout=30).json()
    assert tags == {"name": "hub/library/app", "tags": ["v1"]}
    catalog = requests.get(f"{proxy.url}/v2/_catalog", timeout=30).json()["repositories"]
    assert "hub/library/app" in catalog

    metrics = requests.get(f"http://{proxy.debug}/metrics", timeout=30).text
    upstream = distribution.url
    for kind, result, count in (
        ("manifest", "fetched", 1),
        ("manifest", "cached", 1),
        ("blob", "fetched", 3),
        ("blob", "cached", 3),
    ):
        sample = (
            f'moorage_proxy_requests_total{{kind="{kind}",result="{result}",'
            f'upstream="{upstream}"}} {count}.0'
        )
        assert sample in metrics, (sample, metrics)
    size = sum(len((image.layout / "blobs/sha256" / d.partition(":")[2]).read_bytes())
               for d in layout_blobs(image))  # fmt: skip
    assert f'moorage_proxy_fetched_bytes_total{{upstream="{upstream}"}} {size}.0' in metrics


def test_podman_pulls_through_the_token_flow(
    proxy: Server, upstreams: Upstreams, tmp_path: Path, short_dirs: Callable[[], Path]
) -> None:
    image, token = upstreams.app, upstreams.token
    tokens_before = requests_in_log(token, "GET", "/auth/token")

    def reached(path: str) -> int:
        return requests_in_log(token, "GET", path) + requests_in_log(token, "HEAD", path)

    blobs_before = {d: reached(f"/v2/team/app/blobs/{d}") for d in layout_blobs(image)}
    for round_ in range(2):
        podman = ContainersCli("podman", tmp_path / f"podman-{round_}", short_dirs())
        for name in ("ghcr/team/app:v1", "pub/public/tool:v1"):
            podman("pull", "--tls-verify=false", f"{proxy.host}/{name}")
            [pulled] = json.loads(podman("image", "inspect", f"{proxy.host}/{name}").stdout)
            assert pulled["Digest"] == image.manifest_digest
    # One token per repository scope (the cache's credentials for team/app, anonymous for
    # public/tool), reused by every request and pull after.
    assert requests_in_log(token, "GET", "/auth/token") - tokens_before == 2
    log = token.logs()
    assert "user=cache" in log
    # Each blob reached the upstream once: fetched, or only confirmed (HEAD) when the store
    # held it already for another repository (hub/library/app is the same image).
    for digest in layout_blobs(image):
        assert reached(f"/v2/team/app/blobs/{digest}") - blobs_before[digest] == 1


def test_writes_are_refused_beside_an_ordinary_namespace(
    proxy: Server, upstreams: Upstreams
) -> None:
    client = Client(proxy.url)
    _, pushed = client.push_image("team/local", "v1", seed="local")
    assert client.request("GET", f"/v2/team/local/manifests/{pushed}").status_code == 200

    name = "hub/library/app"
    blob = b"refused"
    payload = client.manifest("team/local", b"{}", [blob])
    refused = [
        client.request("POST", f"/v2/{name}/blobs/uploads/"),
        client.request(
            "POST", f"/v2/{name}/blobs/uploads/", params={"digest": sha256(blob)}, data=blob
        ),
        client.request(
            "POST",
            f"/v2/{name}/blobs/uploads/",
            params={"mount": sha256(blob), "from": "team/local"},
        ),
        client.request("PATCH", f"/v2/{name}/blobs/uploads/some-session", data=blob),
        client.request(
            "PUT", f"/v2/{name}/blobs/uploads/some-session", params={"digest": sha256(blob)}
        ),
        client.request("DELETE", f"/v2/{name}/blobs/uploads/some-session"),
        client.put_manifest(name, "v2", payload),
        client.request("DELETE", f"/v2/{name}/manifests/v1"),
        client.request("DELETE", f"/v2/{name}/manifests/{upstreams.app.manifest_digest}"),
        client.request("DELETE", f"/v2/{name}/blobs/{upstreams.app.config_digest}"),
    ]
    for response in refused:
        assert response.status_code == 405, (response.request.method, response.request.url)
        assert error_codes(response) == ["UNSUPPORTED"]
        assert "pull-through cache" in response.json()["errors"][0]["message"]


def test_a_name_unknown_upstream_is_unknown_here(proxy: Server) -> None:
    for path, code in (
        ("/v2/hub/library/none/manifests/v1", "MANIFEST_UNKNOWN"),
        (f"/v2/hub/library/none/blobs/{sha256(b'none')}", "BLOB_UNKNOWN"),
        ("/v2/hub/library/none/tags/list", "NAME_UNKNOWN"),
        ("/v2/ghcr/secret/app/manifests/v1", "MANIFEST_UNKNOWN"),  # refused by the ACL
    ):
        response = requests.get(f"{proxy.url}{path}", timeout=30)
        assert response.status_code == 404, (path, response.text)
        assert error_codes(response) == [code]


def test_podman_pulls_through_a_registries_conf_mirror(
    proxy: Server, upstreams: Upstreams, tmp_path: Path, short_dirs: Callable[[], Path]
) -> None:
    """podman pulls `UPSTREAM/library/app` through the mirror `PROXY/hub`: the upstream needs
    credentials podman does not have, so only the mirror can answer."""
    upstream = upstreams.distribution.host
    conf = tmp_path / "registries.conf"
    conf.write_text(
        f'[[registry]]\nprefix = "{upstream}"\nlocation = "{upstream}"\ninsecure = true\n'
        f'[[registry.mirror]]\nlocation = "{proxy.host}/hub"\ninsecure = true\n'
    )
    podman = ContainersCli("podman", tmp_path / "podman", short_dirs())
    os.environ["CONTAINERS_REGISTRIES_CONF"] = str(conf)
    try:
        podman("pull", f"{upstream}/library/app:v1")
    finally:
        del os.environ["CONTAINERS_REGISTRIES_CONF"]
    [pulled] = json.loads(podman("image", "inspect", f"{upstream}/library/app:v1").stdout)
    assert pulled["Digest"] == upstreams.app.manifest_digest
    assert requests_in_log(proxy, "GET", "/v2/hub/library/app/manifests/v1") >= 1


def test_docker_pulls_through_registry_mirrors(
    docker: Docker, upstreams: Upstreams, tmp_path: Path
) -> None:
    """docker's `registry-mirrors` sends Docker Hub's names unprefixed (`library/app`): the
    cache serves them with distribution's `proxy.remoteurl`. Without internet, only the mirror
    can answer."""
    config = moorage_config(
        tmp_path / "data",
        0,
        proxy={
            "remoteurl": upstreams.distribution.url,
            "username": "cache",
            "passwordfile": str(upstreams.password_file),
        },
    )
    daemon = docker.engine.workdir / "etc-docker" / "daemon.json"
    with run_moorage(tmp_path / "mirror", config) as mirror:
        daemon.write_text(json.dumps({"registry-mirrors": [mirror.url]}))
        try:
            os.kill(docker.engine.process.pid, signal.SIGHUP)
            wait_until(
                lambda: mirror.url in docker("info", "--format", "{{json .RegistryConfig}}").stdout,
                "the engine to take the mirror",
            )
            docker("pull", "app:v1")
            [pulled] = docker.inspect("app:v1", kind="image")
            assert f"app@{upstreams.app.manifest_digest}" in pulled["RepoDigests"]
            docker("rmi", "app:v1")
        finally:
            daemon.write_text("{}")
            os.kill(docker.engine.process.pid, signal.SIGHUP)
        assert requests_in_log(mirror, "HEAD", "/v2/library/app/manifests/v1") >= 1


def test_ranges_of_a_blob_while_it_arrives(proxy: Server, upstreams: Upstreams) -> None:
    url = f"{proxy.url}/v2/hub/library/big/blobs/{upstreams.big_digest}"
    part = requests.get(url, headers={"Range": "bytes=1000-2000999"}, timeout=60)
    assert part.status_code == 206, part.text
    assert part.headers["Content-Range"] == f"bytes 1000-2000999/{BIG}"
    assert part.content == upstreams.big[1000:2001000]
    tail = requests.get(url, headers={"Range": "bytes=-10"}, timeout=60)
    assert tail.content == upstreams.big[-10:]


def test_a_blob_arriving_over_tls(upstreams: Upstreams, tmp_path: Path) -> None:
    """Under TLS in the process, where sendfile cannot work, the bytes go in chunks."""
    ca = make_ca(tmp_path / "ca")
    cert, key = ca.issue(tmp_path / "ca", "server", server=True)
    port = free_port()
    settings = http_config(
        tmp_path / "data",
        {"addr": f"127.0.0.1:{port}", "tls": {"certificate": str(cert), "key": str(key)}},
        proxy={"upstreams": [upstream_entry("hub", upstreams.distribution, upstreams)]},
    )
    with moorage_process(tmp_path / "proxy", settings):
        base = f"https://127.0.0.1:{port}/v2/hub/library"
        whole = requests.get(f"{base}/big/blobs/{upstreams.big_digest}", verify=ca.cert, timeout=60)
        assert sha256(whole.content) == upstreams.big_digest
        layer = upstreams.app.layer_digests[1]
        part = requests.get(
            f"{base}/app/blobs/{layer}", headers={"Range": "bytes=10-"}, verify=ca.cert, timeout=60
        )
        assert part.status_code == 206
        assert part.content == layer_bytes(upstreams.app, layer)[10:]


def layer_bytes(image: Image, digest: str) -> bytes:
    return (image.layout / "blobs/sha256" / digest.partition(":")[2]).read_bytes()


# the upstream going away


def test_cached_content_is_served_while_the_upstream_is_stopped(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    htpasswd = {"htpasswd": {"realm": "upstream", "path": str(upstreams.users)}}
    image = upstreams.app
    with run_reference_registry(tmp_path / "upstream", upstreams.root, auth=htpasswd) as upstream:
        config = proxy_config(tmp_path / "data", upstream_entry("hub", upstream, upstreams))
        with run_moorage(tmp_path / "proxy", config) as proxy:
            source = f"docker://{proxy.host}/hub/library/app:v1"
            skopeo("copy", "--src-tls-verify=false", source, f"oci:{tmp_path / 'first'}:v1")
            stop(upstream.process)

            skopeo("copy", "--src-tls-verify=false", source, f"oci:{tmp_path / 'offline'}:v1")
            assert read_layout(tmp_path / "offline", "v1")[0] == image.manifest
            by_digest = requests.get(
                f"{proxy.url}/v2/hub/library/app/manifests/{image.manifest_digest}",
                headers={"Accept": ACCEPT},
                timeout=30,
            )
            assert by_digest.content == image.manifest
            tags = requests.get(f"{proxy.url}/v2/hub/library/app/tags/list", timeout=30)
            assert tags.json()["tags"] == ["v1"]
            # What was never fetched cannot be had: the cache says why.
            for path in (
                "/v2/hub/library/app/manifests/v2",
                f"/v2/hub/library/big/blobs/{upstreams.big_digest}",
            ):
                missing = requests.get(f"{proxy.url}{path}", timeout=30)
                assert missing.status_code == 503, missing.text
                assert error_codes(missing) == ["UNAVAILABLE"]
                assert "cannot be reached" in missing.text
            assert proxy.logs().count("cannot be reached") == 1  # logged once, not per request


def stream(url: str) -> requests.Response:
    response = requests.get(url, stream=True, timeout=60)
    assert response.status_code == 200, response.text
    return response


def test_an_upstream_stopping_mid_blob_leaves_nothing_stored(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    htpasswd = {"htpasswd": {"realm": "upstream", "path": str(upstreams.users)}}
    digest = upstreams.big_digest
    path = f"/v2/hub/library/big/blobs/{digest}"
    upstream = run_reference_registry(tmp_path / "u1", upstreams.root, auth=htpasswd)
    first = upstream.__enter__()
    try:
        with relay(port_of(first)) as network:
            config = proxy_config(tmp_path / "data", upstream_entry("hub", network, upstreams))
            with run_moorage(tmp_path / "proxy", config) as proxy:
                root = proxy.root
                assert root is not None
                network.hold(after=HOLD)
                response = stream(f"{proxy.url}{path}")
                assert response.headers["Content-Length"] == str(BIG)
                assert len(response.raw.read(1024)) == 1024  # before the blob is whole
                network.wait_held()
                first.process.send_signal(signal.SIGKILL)  # the upstream dies mid-blob
                first.process.wait()
                network.cut()
                network.release()
                with pytest.raises(requests.exceptions.ChunkedEncodingError):
                    for _ in response.iter_content(MiB):
                        pass
                response.close()

                wait_until(lambda: "nothing of it is stored" in proxy.logs(), "the cache to log")
                blob_dir = data_file(root, digest).parent
                assert not blob_dir.exists() or not list(blob_dir.iterdir())
                assert links(root, "hub/library/big", "_layers") == []
                assert not (repository_dir(root, "hub/library/big") / "_proxy").exists()

                # The upstream back, the blob is fetched again, whole.
                with run_reference_registry(
                    tmp_path / "u2", upstreams.root, auth=htpasswd
                ) as again:
                    network.target = port_of(again)
                    whole = requests.get(f"{proxy.url}{path}", timeout=60)
                    assert whole.status_code == 200
                    assert sha256(whole.content) == digest
                assert hashlib.sha256(data_file(root, digest).read_bytes()).hexdigest() in digest
                assert "Traceback" not in proxy.logs()
    finally:
        upstream.__exit__(None, None, None)


def test_two_clients_pulling_one_large_blob_share_one_upstream_fetch(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    digest = upstreams.big_digest
    path = f"/v2/hub/library/big/blobs/{digest}"
    distribution = upstreams.distribution
    before = requests_in_log(distribution, "GET", f"/v2/library/big/blobs/{digest}")
    with relay(port_of(distribution)) as network:
        config = proxy_config(tmp_path / "data", upstream_entry("hub", network, upstreams))
        with run_moorage(tmp_path / "proxy", config) as proxy:
            network.hold(after=HOLD)
            received: dict[int, str] = {}
            first_bytes = threading.Barrier(3)

            def pull(client: int) -> None:
                response = stream(f"{proxy.url}{path}")
                hasher = hashlib.sha256(response.raw.read(1024))
                first_bytes.wait(timeout=60)  # every client has bytes: the relay still holds
                for chunk in response.iter_content(MiB):
                    hasher.update(chunk)
                received[client] = f"sha256:{hasher.hexdigest()}"

            pulls = [threading.Thread(target=pull, args=(client,)) for client in range(2)]
            for each in pulls:
                each.start()
            first_bytes.wait(timeout=60)
            network.wait_held()
            network.release()
            for each in pulls:
                each.join(timeout=120)
            assert received == {0: digest, 1: digest}
            upstream_gets = requests_in_log(distribution, "GET", f"/v2/library/big/blobs/{digest}")
            assert upstream_gets - before == 1
            # Kept: the next pull does not reach the upstream.
            assert sha256(requests.get(f"{proxy.url}{path}", timeout=60).content) == digest
            assert (
                requests_in_log(distribution, "GET", f"/v2/library/big/blobs/{digest}")
                == upstream_gets
            )


# expiry


def test_expiry_unlinks_what_was_fetched_and_keeps_shared_content(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    image, distribution = upstreams.app, upstreams.distribution
    config = proxy_config(
        tmp_path / "data", upstream_entry("hub", distribution, upstreams, ttl="3s")
    )
    with run_moorage(tmp_path / "proxy", config) as proxy:
        root = proxy.root
        assert root is not None
        source = f"docker://{proxy.host}/hub/library/app:v1"
        skopeo("copy", "--src-tls-verify=false", source, f"oci:{tmp_path / 'first'}:v1")
        # An ordinary repository pushes an image sharing the first layer.
        shared = (
            image.layout / "blobs/sha256" / image.layer_digests[0].partition(":")[2]
        ).read_bytes()
        client = Client(proxy.url)
        payload = client.manifest("team/own", b'{"own":1}', [shared])
        assert client.put_manifest("team/own", "v1", payload).status_code == 201

        records = repository_dir(root, "hub/library/app") / "_proxy"
        wait_until(lambda: not any(records.rglob("fetched")), "expiry")
        assert links(root, "hub/library/app", "_layers") == []
        assert links(root, "hub/library/app", "_manifests/revisions") == []
        assert not (repository_dir(root, "hub/library/app") / "_manifests/tags/v1").exists()
        for digest in layout_blobs(image):  # content stays: the garbage collection's to take
            assert data_file(root, digest).exists(), digest
        own = requests.get(f"{proxy.url}/v2/team/own/blobs/{image.layer_digests[0]}", timeout=30)
        assert own.content == shared
        assert "expired blobs and manifests unlinked" in proxy.logs()

        # Pulled again: blobs the store still holds are linked once the upstream confirms them.
        gets = {
            d: requests_in_log(distribution, "GET", f"/v2/library/app/blobs/{d}")
            for d in layout_blobs(image)
        }
        skopeo("copy", "--src-tls-verify=false", source, f"oci:{tmp_path / 'again'}:v1")
        assert read_layout(tmp_path / "again", "v1")[0] == image.manifest
        for digest, count in gets.items():
            assert requests_in_log(distribution, "GET", f"/v2/library/app/blobs/{digest}") == count


def test_what_distributions_cache_fetched_expires_in_moorage(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    """A root distribution 2.8 filled as a pull-through cache moves over: moorage adopts its
    expiry schedule, and expires what it lists."""
    image, root = upstreams.app, tmp_path / "cache"
    schedule = root / "scheduler-state.json"
    # An upstream without authentication: distribution 2.8's cache, given the htpasswd
    # upstream's credentials, answered "manifest unknown" here (its Basic challenge unmet).
    with (
        run_reference_registry(tmp_path / "upstream", upstreams.root) as upstream,
        run_reference_registry(
            tmp_path / "distribution", root, proxy={"remoteurl": upstream.url}
        ) as cache,
    ):
        source = f"docker://{cache.host}/library/app:v1"
        skopeo("copy", "--src-tls-verify=false", source, f"oci:{tmp_path / 'first'}:v1")
        wait_until(
            lambda: schedule.exists() and len(json.loads(schedule.read_text())) == 4,
            "distribution to save its schedule",
        )
        assert links(root, "library/app", "_layers") == sorted(layout_blobs(image))
        config = moorage_config(root, 0, proxy={"remoteurl": upstream.url, "ttl": "2s"})
        stop(cache.process)
        with run_moorage(tmp_path / "moorage", config) as proxy:
            wait_until(lambda: links(root, "library/app", "_layers") == [], "expiry")
            assert links(root, "library/app", "_manifests/revisions") == []
            assert "4 blobs and manifests distribution fetched will expire too" in proxy.logs()
            for digest in layout_blobs(image):
                assert data_file(root, digest).exists()


# distribution's own section


def test_distribution_remoteurl_proxies_every_name(upstreams: Upstreams, tmp_path: Path) -> None:
    section = {
        "remoteurl": upstreams.distribution.url,
        "username": "cache",
        "passwordfile": str(upstreams.password_file),
        "ttl": 0,
    }
    config = moorage_config(tmp_path / "data", 0, proxy=section)
    with run_moorage(tmp_path / "proxy", config) as proxy:
        source = f"docker://{proxy.host}/library/app:v1"
        skopeo("copy", "--src-tls-verify=false", source, f"oci:{tmp_path / 'out'}:v1")
        assert read_layout(tmp_path / "out", "v1")[0] == upstreams.app.manifest
        pushed = Client(proxy.url).request("POST", "/v2/team/app/blobs/uploads/")
        assert pushed.status_code == 405
        # Not Docker Hub: a one-component name is not put under library/.
        assert requests.get(f"{proxy.url}/v2/app/manifests/v1", timeout=30).status_code == 404
        assert "(every name) -> " + upstreams.distribution.url in proxy.logs()


def test_config_check_shows_the_upstreams_with_secrets_masked(
    upstreams: Upstreams, tmp_path: Path
) -> None:
    config = tmp_path / "config.yml"
    inline = "inline-upstream-password"
    config.write_text(
        yaml.safe_dump(
            proxy_config(
                tmp_path / "data",
                upstream_entry("hub", upstreams.distribution, upstreams, ttl="24h"),
                {
                    "prefix": "ghcr/",
                    "remoteurl": "https://ghcr.io",
                    "username": "u",
                    "password": inline,
                },
            )
        )
    )
    config.chmod(0o600)
    checked = subprocess.run(
        [sys.executable, "-m", "moorage", "config", "check", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    shown = yaml.safe_load(checked.stdout)["proxy"]["upstreams"]
    assert [(each["prefix"], each["remoteurl"]) for each in shown] == [
        ("hub", upstreams.distribution.url),
        ("ghcr", "https://ghcr.io"),
    ]
    assert [each["password"] for each in shown] == [MASK, MASK]
    assert shown[0]["ttl"] == "24h"
    assert inline not in checked.stdout + checked.stderr
    assert PASSWORDS["cache"] not in checked.stdout + checked.stderr

    bad = tmp_path / "bad.yml"
    bad.write_text(
        yaml.safe_dump(
            proxy_config(
                None,
                {"prefix": "hub", "remoteurl": "https://a.example"},
                {"prefix": "hub/library", "remoteurl": "https://b.example"},
            )
        )
    )
    refused = subprocess.run(
        [sys.executable, "-m", "moorage", "config", "check", str(bad)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.startswith("moorage: config: proxy.upstreams: ")
    assert "overlap" in refused.stderr


# S3 and workers


def test_on_s3_with_two_workers(s3_store: S3Server, upstreams: Upstreams, tmp_path: Path) -> None:
    """The upstream is moorage on S3 with its token server: it answers blob GETs with a 307 to
    the store, which the cache follows without its token. The cache is on S3 with two workers:
    each fetches a blob at most once."""
    users = upstreams.users
    acl = upstreams.workdir / "acl.yml"
    with (
        bucket(s3_store, "proxy-upstream") as up_bucket,
        bucket(s3_store, "proxy-cache") as cache_bucket,
    ):
        upstream_config = moorage_config(
            None, 0, auth=builtin_section(users, acl, tmp_path / "keys" / "token.key")
        )
        upstream_config["storage"] = {"s3": s3_store.params(up_bucket)}
        with run_moorage(tmp_path / "upstream", upstream_config) as upstream:
            seed(upstream, upstreams.app, "team/app:v1", "admin:admin-pw")
            admin = Client(upstream.url)
            admin.http.headers["Authorization"] = "Bearer " + token_for(
                upstream, "admin", "repository:team/big:pull,push"
            )
            digest = admin.push_blob("team/big", upstreams.big)

            config = proxy_config(None, upstream_entry("ghcr", upstream, upstreams))
            config["storage"] = {"s3": s3_store.params(cache_bucket), "delete": {"enabled": True}}
            config["http"] = {"workers": 2, "secret": "shared-secret"}
            with run_moorage(tmp_path / "proxy", config) as proxy:
                source = f"docker://{proxy.host}/ghcr/team/app:v1"
                skopeo("copy", "--src-tls-verify=false", source, f"oci:{tmp_path / 'out'}:v1")
                assert read_layout(tmp_path / "out", "v1")[0] == upstreams.app.manifest

                received: dict[int, str] = {}

                def pull(client: int) -> None:
                    response = requests.get(
                        f"{proxy.url}/v2/ghcr/team/big/blobs/{digest}", stream=True, timeout=120
                    )
                    hasher = hashlib.sha256()
                    for chunk in response.iter_content(MiB):
                        hasher.update(chunk)
                    received[client] = f"sha256:{hasher.hexdigest()}"

                pulls = [threading.Thread(target=pull, args=(n,)) for n in range(2)]
                for each in pulls:
                    each.start()
                for each in pulls:
                    each.join(timeout=180)
                assert received == {0: digest, 1: digest}
                fetched = requests_in_log(upstream, "GET", f"/v2/team/big/blobs/{digest}")
                assert 1 <= fetched <= 2  # at most one fetch per worker
                cached = requests.get(f"{proxy.url}/v2/ghcr/team/big/blobs/{digest}", timeout=120)
                assert sha256(cached.content) == digest
                assert requests_in_log(upstream, "GET", f"/v2/team/big/blobs/{digest}") == fetched
                assert "Traceback" not in proxy.logs()
