"""The container image (Dockerfile) with the docker CLI and engine, as a self-hoster uses them:
`docker build`, `docker run` with a config volume and a data volume in place of the reference
image, `docker tag`/`push`/`pull` against it, `docker login` with htpasswd and with the built-in
token server, a multi-arch index pulled by docker, the HEALTHCHECK, `docker stop` draining, and
workers within the container's CPU quota. The engine and images are the session's
(docker_support.py); each test runs its own containers and removes them."""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.api import DOCKER_LIST, OCI_INDEX, Client
from tests.images import layer_tar, make_image
from tests.integration.docker_support import (
    BASE_IMAGE,
    MOORAGE_IMAGE,
    UID,
    Built,
    Container,
    Docker,
    run_container,
)
from tests.integration.http_support import skopeo
from tests.integration.test_auth import PASSWORDS, SERVICE, htpasswd_file, write_builtin_files
from tests.integration.test_http_settings import blob_data, slow_upload
from tests.servers import free_port, run_reference_registry

pytestmark = [pytest.mark.interop, pytest.mark.timeout(900)]

MiB = 1024 * 1024

# The reference image's own /etc/docker/registry/config.yml (distribution 2.8), as a user
# moving from `registry:2` has it, with deletes enabled.
DISTRIBUTION_CONFIG = {
    "version": 0.1,
    "log": {"fields": {"service": "registry"}},
    "storage": {
        "cache": {"blobdescriptor": "inmemory"},
        "filesystem": {"rootdirectory": "/var/lib/registry"},
        "delete": {"enabled": True},
    },
    "http": {"addr": ":5000", "headers": {"X-Content-Type-Options": ["nosniff"]}},
    "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
}


# --- helpers -------------------------------------------------------------------------------------


def config_dir(directory: Path, changes: dict[str, Any] | None = None) -> Path:
    """A host directory to mount at /etc/docker/registry holding config.yml: distribution's,
    with `changes` merged into its sections."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {key: dict(value) if isinstance(value, dict) else value
              for key, value in DISTRIBUTION_CONFIG.items()}  # fmt: skip
    for section, value in (changes or {}).items():
        config[section] = {**config.get(section, {}), **value}
    (directory / "config.yml").write_text(yaml.safe_dump(config))
    return directory


def data_dir(directory: Path) -> Path:
    """A host directory for /var/lib/registry, owned by the image's user as the README says."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chown(directory, UID, UID)
    return directory


def registry(
    docker: Docker,
    network: str,
    config: Path | None,
    data: Path | None,
    *args: str,
    command: tuple[str, ...] = (),
    container_port: int = 5000,
) -> contextlib.AbstractContextManager[Container]:
    """The README's `docker run -d --restart=always -v CONFIG:/etc/docker/registry
    -v DATA:/var/lib/registry -p 5000:5000 moorage` (each volume when given), on the session's
    network, the container's port published on a free loopback port."""
    port = free_port()
    volumes = []
    if config is not None:
        volumes += ["-v", f"{config}:/etc/docker/registry"]
    if data is not None:
        volumes += ["-v", f"{data}:/var/lib/registry"]
    return run_container(
        docker, MOORAGE_IMAGE, "--restart=always", *volumes, "--network", network,
        "-p", f"127.0.0.1:{port}:{container_port}", *args, command=command, port=port,
    )  # fmt: skip


def small_image(docker: Docker, tmp_path: Path, tag: str, seed: str) -> str:
    """A one-layer image in the engine (`docker import` of a small tar); returns its ID."""
    tar = tmp_path / f"{seed}.tar.gz"
    tar.write_bytes(
        layer_tar({"hello.txt": f"hello {seed}\n".encode(), "data.bin": os.urandom(4096)})
    )
    docker("import", str(tar), tag)
    return str(docker.inspect(tag, kind="image")[0]["Id"])


def push_and_pull(docker: Docker, source: str, ref: str) -> str:
    """Tags, pushes, forgets and pulls back; checks the image came back the same (its ID is its
    config's digest). Returns the manifest digest the push reported."""
    image_id = docker.inspect(source, kind="image")[0]["Id"]
    docker("tag", source, ref)
    pushed = docker("push", ref).stdout
    match = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed)
    assert match, pushed
    docker("rmi", ref, source)
    docker("pull", ref)
    (pulled,) = docker.inspect(ref, kind="image")
    assert pulled["Id"] == image_id
    assert f"{ref.rsplit(':', 1)[0]}@{match.group(1)}" in pulled["RepoDigests"]
    return match.group(1)


def skopeo_copy(source: str, destination: str, *flags: str) -> None:
    skopeo("copy", "--dest-tls-verify=false", *flags, source, destination)


def listening_line(container: Container) -> str:
    lines = [line for line in container.logs().splitlines() if "moorage listening on" in line]
    assert len(lines) == 1, container.logs()
    return lines[0]


# --- the image -----------------------------------------------------------------------------------


def test_the_image_is_slim_and_runs_as_its_own_user(docker: Docker, moorage_image: Built) -> None:
    (image,) = docker.inspect(MOORAGE_IMAGE, kind="image")
    config = image["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert list(config["ExposedPorts"]) == ["5000/tcp"]
    assert list(config["Volumes"]) == ["/var/lib/registry"]
    assert config["Entrypoint"] == ["moorage-entrypoint"]
    assert config["Cmd"] == ["/etc/docker/registry/config.yml"]
    assert config["Healthcheck"]["Test"] == ["CMD", "moorage-entrypoint", "health"]
    assert config["StopSignal"] == "SIGTERM"
    # What moorage adds to its base: the virtual environment and two small files.
    (base,) = docker.inspect(BASE_IMAGE, kind="image")
    added = image["Size"] - base["Size"]
    print(f"image {image['Size'] / 1e6:.0f} MB, {added / 1e6:.0f} MB over the base; "
          f"built in {moorage_image.seconds:.0f} s")  # fmt: skip
    assert added < 120e6, added
    # No installer, compiler, wheel or cache left in the runtime image.
    script = """
        id -u; id -g; stat -c %u:%g /var/lib/registry
        for tool in pip pip3 gcc cc make; do command -v $tool || true; done
        ls /opt; ls /opt/moorage/bin | grep -i pip || true
        ls -d /wheels /src /root/.cache /opt/build 2>/dev/null || true
        find /opt/moorage -name '*.whl' | head -5
        moorage --version
    """
    result = docker("run", "--rm", "--entrypoint", "sh", MOORAGE_IMAGE, "-c", script)
    checked = yaml.safe_load(docker("run", "--rm", MOORAGE_IMAGE, "config", "check").stdout)
    assert checked["storage"]["filesystem"]["rootdirectory"] == "/var/lib/registry"
    assert (checked["http"]["addr"], checked["http"]["workers"]) == (":5000", "auto")
    assert result.stdout.split("\n") == [
        str(UID), str(UID), f"{UID}:{UID}", "moorage", "moorage 0.1.0", "",
    ], result.stdout  # fmt: skip


# --- docker run, push and pull -------------------------------------------------------------------


@pytest.fixture(scope="module")
def open_registry(
    docker_session: Docker, docker_network: str, moorage_image: Built, tmp_path_factory: Any
) -> Iterator[tuple[Container, Path]]:
    """The README's `docker run` with distribution's config in the config volume and an empty
    data directory owned by the image's user; yields the container and the data directory."""
    work = tmp_path_factory.mktemp("open-registry")
    data = data_dir(work / "data")
    with registry(docker_session, docker_network, config_dir(work / "config"), data) as container:
        container.wait_answering()
        yield container, data


def test_docker_push_and_pull(
    docker: Docker, open_registry: tuple[Container, Path], tmp_path: Path
) -> None:
    container, data = open_registry
    small_image(docker, tmp_path, "app:local", "push")
    ref = f"{container.host}/team/app:v1"
    digest = push_and_pull(docker, "app:local", ref)
    # The registry serves what docker reported, from distribution's layout on the volume,
    # written by the image's user.
    answer = requests.head(
        f"{container.url}/v2/team/app/manifests/v1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )
    assert answer.headers["Docker-Content-Digest"] == digest
    link = data / "docker/registry/v2/repositories/team/app/_manifests/tags/v1/current/link"
    assert link.read_text() == digest
    assert {path.stat().st_uid for path in data.rglob("*")} == {UID}
    assert "Traceback" not in container.logs()


def test_docker_pulls_a_multi_arch_index_made_by_docker_manifest(
    docker: Docker, open_registry: tuple[Container, Path], tmp_path: Path
) -> None:
    container, _ = open_registry
    repo = f"{container.host}/team/multi"
    for arch in ("amd64", "arm64"):
        image = make_image(tmp_path / arch, arch, architecture=arch, seed=f"multi-{arch}")
        skopeo_copy(image.ref, f"docker://{repo}:{arch}", "--format", "v2s2")
    docker("manifest", "create", "--insecure", f"{repo}:v1", f"{repo}:amd64", f"{repo}:arm64")
    docker("manifest", "push", "--insecure", f"{repo}:v1")
    index = requests.get(
        f"{container.url}/v2/team/multi/manifests/v1",
        headers={"Accept": f"{OCI_INDEX}, {DOCKER_LIST}"},
        timeout=10,
    ).json()
    platforms = sorted(child["platform"]["architecture"] for child in index["manifests"])
    assert platforms == ["amd64", "arm64"]
    for arch in ("amd64", "arm64"):
        docker("pull", "--platform", f"linux/{arch}", f"{repo}:v1")
        (pulled,) = docker.inspect(f"{repo}:v1", kind="image")
        assert (pulled["Os"], pulled["Architecture"]) == ("linux", arch)
        docker("rmi", f"{repo}:v1")


def test_a_volume_distribution_wrote_moves_over(
    docker: Docker, docker_network: str, moorage_image: Built, tmp_path: Path
) -> None:
    """A registry:2 volume (written as root) is chowned as the README says, and moorage in its
    place serves it with the same config."""
    data = tmp_path / "data"
    image = make_image(tmp_path / "layout", "v1", seed="moved")
    with run_reference_registry(tmp_path / "distribution", data) as reference:
        skopeo_copy(image.ref, f"docker://{reference.host}/team/moved:v1")
    assert data.stat().st_uid == 0
    docker(
        "run", "--rm", "--user", "0", "--entrypoint", "chown", "-v", f"{data}:/var/lib/registry",
        MOORAGE_IMAGE, "-R", f"{UID}:{UID}", "/var/lib/registry",
    )  # fmt: skip
    with registry(docker, docker_network, config_dir(tmp_path / "config"), data) as container:
        container.wait_answering()
        ref = f"{container.host}/team/moved:v1"
        docker("pull", ref)
        (pulled,) = docker.inspect(ref, kind="image")
        assert pulled["Id"] == image.config_digest
        # Writable as well: docker pushes it again under another name.
        push_and_pull(docker, ref, f"{container.host}/team/moved:v2")


# --- configuration: the environment, secret files, the healthcheck -------------------------------


def test_default_config_with_environment_and_a_secret_file(
    docker: Docker, docker_network: str, moorage_image: Built, tmp_path: Path
) -> None:
    """`docker run IMAGE` with no config volume and no argument serves the image's config;
    REGISTRY_* variables change it and REGISTRY_HTTP_SECRET_FILE names a mounted secret; the
    HEALTHCHECK follows the address the environment moved."""
    secret = tmp_path / "http-secret"
    secret.write_text("a-secret-only-in-a-file-0123456789\n")
    os.chown(secret, UID, UID)
    secret.chmod(0o600)
    with registry(
        docker, docker_network, None, None,
        "-v", f"{secret}:/run/secrets/http-secret:ro",
        "-e", "REGISTRY_HTTP_SECRET_FILE=/run/secrets/http-secret",
        "-e", "REGISTRY_STORAGE_DELETE_ENABLED=true",
        "-e", "REGISTRY_HTTP_ADDR=:5001",
        "--health-interval=1s",
        container_port=5001,
    ) as container:  # fmt: skip
        container.wait_answering()
        container.wait_health("healthy")
        line = listening_line(container)
        assert "http://*:5001, storage filesystem at /var/lib/registry" in line
        logs = container.logs()
        assert "http.secret is not set" not in logs and "exposed" not in logs
        client = Client(container.url)
        _, digest = client.push_image("team/app", "v1", seed="env")
        assert client.request("DELETE", f"/v2/team/app/manifests/{digest}").status_code == 202
        inspected = docker("inspect", container.name).stdout
        assert "a-secret-only-in-a-file" not in inspected + container.logs()
        health = container.state()["Health"]["Log"][-1]
        assert health["Output"].strip() == "http://127.0.0.1:5001/v2/: answered 200"


def test_healthcheck_follows_the_config_the_container_serves(
    docker: Docker, docker_network: str, moorage_image: Built, tmp_path: Path
) -> None:
    """A config file given as the command, moving the port: the HEALTHCHECK probes that."""
    config = config_dir(tmp_path / "config")
    moved = yaml.safe_load((config / "config.yml").read_text())
    moved["http"]["addr"] = ":6000"
    (config / "moved.yml").write_text(yaml.safe_dump(moved))
    with registry(
        docker, docker_network, config, data_dir(tmp_path / "data"), "--health-interval=1s",
        command=("/etc/docker/registry/moved.yml",), container_port=6000,
    ) as container:  # fmt: skip
        container.wait_answering()
        container.wait_health("healthy")
        probe = docker("exec", container.name, "moorage-entrypoint", "health").stdout
        assert probe.strip() == "http://127.0.0.1:6000/v2/: answered 200"
        # The image's default config names :5000, where nothing answers.
        refused = docker(
            "exec", container.name, "moorage", "health", "/etc/docker/registry/config.yml",
            check=False,
        )  # fmt: skip
        assert refused.returncode == 1
        assert refused.stderr.strip().endswith("127.0.0.1:5000/v2/: Connection refused")


# --- processes: draining on docker stop, workers within the CPU quota ----------------------------


def test_docker_stop_drains_an_upload_in_flight(
    docker: Docker, docker_network: str, moorage_image: Built, tmp_path: Path
) -> None:
    config = config_dir(tmp_path / "config", {"http": {"draintimeout": "60s", "workers": 2}})
    data = data_dir(tmp_path / "data")
    with registry(docker, docker_network, config, data) as container:
        container.wait_answering()
        started = threading.Event()
        block = os.urandom(256 * 1024)
        digest, result, thread = slow_upload(
            Client(container.url), "drain/app", block, 40, 0.1, started
        )
        assert started.wait(30)
        docker("stop", "--time", "90", container.name)
        thread.join(120)
        assert result.get("response") is not None, result
        assert result["response"].status_code == 201, result["response"].text
        state = container.state()
        assert (state["Running"], state["ExitCode"]) == (False, 0)
        assert container.logs().count("moorage stopping: draining") == 2  # both workers
        assert blob_data(data, digest).read_bytes() == block * 40


def test_workers_auto_follows_the_containers_cpu_quota(
    docker: Docker, docker_network: str, moorage_image: Built
) -> None:
    cpus = len(os.sched_getaffinity(0))
    with (
        registry(docker, docker_network, None, None, "--cpus", "1") as limited,
        registry(docker, docker_network, None, None) as unlimited,
    ):
        limited.wait_answering()
        unlimited.wait_answering()
        # One CPU: one process serves, without a supervisor.
        assert "workers" not in listening_line(limited)
        assert len(docker("top", limited.name).stdout.splitlines()) == 2  # a header and one
        if cpus > 1:
            assert f", {cpus} workers" in listening_line(unlimited)
            assert len(docker("top", unlimited.name).stdout.splitlines()) == 2 + cpus


# --- docker login --------------------------------------------------------------------------------


def test_docker_login_with_htpasswd(
    docker: Docker, docker_network: str, moorage_image: Built, tmp_path: Path
) -> None:
    config = config_dir(
        tmp_path / "config",
        {"auth": {"htpasswd": {"realm": "moorage", "path": "/etc/docker/registry/htpasswd"}}},
    )
    htpasswd_file(config / "htpasswd", {"alice": PASSWORDS["alice"]})
    with registry(docker, docker_network, config, data_dir(tmp_path / "data")) as container:
        container.wait_answering()
        small_image(docker, tmp_path, "app:local", "htpasswd")
        ref = f"{container.host}/team/app:v1"
        wrong = docker("login", "-u", "alice", "--password-stdin", container.host,
                       input="wrong\n", check=False)  # fmt: skip
        assert wrong.returncode != 0 and "unauthorized" in wrong.stderr.lower()
        login = docker("login", "-u", "alice", "--password-stdin", container.host,
                       input=f"{PASSWORDS['alice']}\n")  # fmt: skip
        assert "Login Succeeded" in login.stdout
        push_and_pull(docker, "app:local", ref)
        docker("logout", container.host)
        docker("rmi", ref)
        refused = docker("pull", ref, check=False)
        assert refused.returncode != 0
        assert "no basic auth credentials" in refused.stderr or "unauthorized" in refused.stderr


def test_docker_login_with_the_builtin_token_server(
    docker: Docker, docker_network: str, moorage_image: Built, tmp_path: Path
) -> None:
    """alice may push team/*; carol may only pull (and delete) there: her push is refused."""
    builtin = {
        "service": SERVICE,
        "users": "/etc/docker/registry/users",
        "acl": "/etc/docker/registry/acl.yml",
        "signingkey": "/var/lib/registry/token/token.key",
    }
    config = config_dir(tmp_path / "config", {"auth": {"builtin": builtin}})
    write_builtin_files(config)
    data = data_dir(tmp_path / "data")
    with registry(docker, docker_network, config, data) as container:
        container.wait_answering()
        small_image(docker, tmp_path, "app:local", "builtin")
        ref = f"{container.host}/team/app:v1"

        def login(user: str) -> None:
            docker("login", "-u", user, "--password-stdin", container.host,
                   input=f"{PASSWORDS[user]}\n")  # fmt: skip

        login("alice")
        push_and_pull(docker, "app:local", ref)
        login("carol")
        docker("tag", ref, f"{container.host}/team/other:v1")
        refused = docker("push", f"{container.host}/team/other:v1", check=False)
        assert refused.returncode != 0
        assert "denied: requested access to the resource is denied" in refused.stderr
        docker("rmi", ref, f"{container.host}/team/other:v1")
        docker("pull", ref)  # carol may pull
        docker("logout", container.host)
        docker("rmi", ref)
        anonymous = docker("pull", ref, check=False)
        assert anonymous.returncode != 0 and "denied" in anonymous.stderr
        # The token key was made on the data volume, private to the registry's user.
        key = data / "token" / "token.key"
        assert (key.stat().st_uid, key.stat().st_mode & 0o777) == (UID, 0o600)
