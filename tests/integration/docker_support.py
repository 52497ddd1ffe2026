"""The docker engine and CLI for the container tests: Debian's dockerd (package docker.io),
started once per session; the images the tests need, built once per session from a Debian base
made here (no image registry is reachable); and containers, stopped by the test that started
them.

The engine runs in a mount namespace of its own, where
- its data and run directories are a tmpfs (the vfs storage driver copies a whole image for
  every layer and container: on tmpfs that takes a second, on this disk tens), freed with the
  namespace when the engine and everything it started have exited;
- /etc/docker is a directory of the test's, so that `certs.d/HOST:PORT/ca.crt` (the CA the
  engine trusts for a registry) is the test's to write and nothing of the host's is read;
- /run/containerd is empty, so that it starts a containerd of its own rather than use the
  host's;
- /etc/hosts adds `registry.test` for ::1. The engine reaches a registry on 127.0.0.0/8 without
  verifying its certificate (it treats those addresses as insecure), so a test of TLS with the
  CA the engine trusts needs another name for loopback.
It uses the host's network: its containers join a bridge network made for the session (with an
address pool drawn at random, so that two sessions on one host do not collide) and publish ports
on loopback; builds run with `--network host`. The client is Debian's `/usr/bin/docker` (the
engine's own version, 20.10): another `docker` earlier on PATH may not speak to this engine.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.servers import stop

DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
TIMEOUT = 600  # seconds, for any one docker command (a build, a push of the base)
REGISTRY_NAME = "registry.test"  # ::1 for the engine and its containers
REPOSITORY = Path(__file__).resolve().parents[2]
# The local base image: what `mmdebstrap` gives (kept between runs in pytest's cache, since it
# takes a minute or more) plus the host's CA bundle, which the package index is reached through.
BASE_SUITE = "bookworm"
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
BASE_MAX_AGE = 7 * 24 * 3600  # seconds
BASE_IMAGE = "moorage-test/base:bookworm"
MOORAGE_IMAGE = "moorage"  # as the README builds it
UID = 65532  # the image's user (Dockerfile)
TMPFS_SIZE = "8g"  # a ceiling (a run peaks near 4 GB): a tmpfs takes only what it holds


def require(path: str, package: str) -> str:
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: apt-get install -y {package}")
    return path


@dataclass
class Engine:
    process: subprocess.Popen[bytes]
    workdir: Path
    namespace: str  # the engine's mount namespace, as /proc/PID/ns/mnt reads

    @property
    def socket(self) -> Path:
        return self.workdir / "docker.sock"

    @property
    def certs(self) -> Path:
        """The engine's /etc/docker/certs.d."""
        return self.workdir / "etc-docker" / "certs.d"

    def log(self) -> str:
        return (self.workdir / "dockerd.log").read_text(errors="replace")

    def trust(self, host: str, ca_cert: Path) -> None:
        """Makes the engine verify the registry at `host` (HOST:PORT) with this CA."""
        directory = self.certs / host
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copy(ca_cert, directory / "ca.crt")

    def environment(self, config: Path) -> dict[str, str]:
        """What a docker client (the CLI, docker-compose) needs to use this engine, with its
        own configuration directory (where `docker login` keeps credentials)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
        env.update(
            DOCKER_HOST=f"unix://{self.socket}", DOCKER_CONFIG=str(config), DOCKER_BUILDKIT="1"
        )
        return env


@dataclass
class Docker:
    """The docker CLI against the session's engine, with a configuration of its own."""

    engine: Engine
    config: Path

    def __call__(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = TIMEOUT,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return _run(
            [DOCKER, *args], self.engine.environment(self.config), check, input, timeout, cwd
        )

    def compose(
        self, project: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`docker-compose ARGS` in the project directory, with `env` added."""
        binary = require(
            shutil.which("docker-compose") or "/usr/bin/docker-compose", "docker-compose"
        )
        environment = {**self.engine.environment(self.config), **(env or {})}
        return _run([binary, *args], environment, check, None, TIMEOUT, project)

    def inspect(self, *names: str, kind: str = "container") -> list[dict[str, Any]]:
        return list(json.loads(self(kind, "inspect", *names).stdout))


def _run(
    args: list[str],
    env: dict[str, str],
    check: bool,
    input: str | None,
    timeout: float,
    cwd: Path | None,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args,
        capture_output=True,
        text=True,
        env=env,
        input=input,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


# --- the engine ------------------------------------------------------------------------------


# Runs in the new mount namespace: $1 the tmpfs mount point, $2 the hosts file, $3 the
# directory for /etc/docker; then the dockerd command line. An empty /run/containerd hides any
# containerd the host runs, which dockerd would otherwise use (and which cannot see this
# namespace's mounts), so that dockerd starts its own.
_IN_NAMESPACE = """
set -e
mount -t tmpfs -o "size=$TMPFS_SIZE,mode=0700" moorage-docker "$1"
mkdir -p "$1/data" "$1/exec" /etc/docker /run/containerd
mount --bind "$2" /etc/hosts
mount --bind "$3" /etc/docker
mount -t tmpfs -o mode=0711 moorage-containerd /run/containerd
shift 3
exec "$@"
"""


@contextlib.contextmanager
def run_engine() -> Iterator[Engine]:
    """dockerd on a private socket, ready; at the end every container is removed and every
    process the engine started is stopped, by PID."""
    require(DOCKERD, "docker.io")
    require(DOCKER, "docker.io")
    unshare = require(shutil.which("unshare") or "/usr/bin/unshare", "util-linux")
    # Short: containerd's sockets live under the run directory and must fit in 108 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="mdk-"))
    root, etc = workdir / "root", workdir / "etc-docker"
    root.mkdir()
    (etc / "certs.d").mkdir(parents=True)
    hosts = workdir / "hosts"
    hosts.write_text(Path("/etc/hosts").read_text() + f"\n::1 {REGISTRY_NAME}\n")
    pool = f"base=10.{random.randint(128, 254)}.0.0/16,size=24"
    dockerd = [
        DOCKERD, "--storage-driver=vfs", "--iptables=false", "--ip6tables=false",
        "--bridge=none", f"--default-address-pool={pool}",
        f"--data-root={root}/data", f"--exec-root={root}/exec",
        "-H", f"unix://{workdir}/docker.sock", f"--pidfile={workdir}/docker.pid",
    ]  # fmt: skip
    with open(workdir / "dockerd.log", "wb") as log:
        process = subprocess.Popen(
            [unshare, "--mount", "--propagation", "private", "sh", "-c", _IN_NAMESPACE, "sh",
             str(root), str(hosts), str(etc), *dockerd],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TMPFS_SIZE": TMPFS_SIZE},
        )  # fmt: skip
    engine = Engine(process, workdir, "")
    try:
        deadline = time.monotonic() + 60
        client = Docker(engine, workdir / "client")
        while client("version", check=False, timeout=30).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start:\n{engine.log()}")
            time.sleep(0.2)
        engine.namespace = os.readlink(f"/proc/{process.pid}/ns/mnt")
        yield engine
    finally:
        _stop_engine(engine)
        shutil.rmtree(workdir, ignore_errors=True)


def _stop_engine(engine: Engine) -> None:
    if engine.process.poll() is None:
        client = Docker(engine, engine.workdir / "client")
        ids = client("ps", "-aq", check=False).stdout.split()
        if ids:
            client("rm", "-f", "-v", *ids, check=False)
        client("network", "prune", "-f", check=False)
    stop(engine.process, timeout=30)
    # What the engine started and left (containerd, its shims): the processes of its mount
    # namespace.
    if engine.namespace:
        for pid in _in_namespace(engine.namespace):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _in_namespace(namespace: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "mnt") == namespace:
                    found.append(int(entry.name))
    return found


# --- images ----------------------------------------------------------------------------------


def base_tar(cache: Path) -> Path:
    """`mmdebstrap --variant=minbase` of Debian with python3, as a tar, from the cache when a
    fresh one is there."""
    tar = cache / f"{BASE_SUITE}-minbase.tar"
    if tar.exists() and time.time() - tar.stat().st_mtime < BASE_MAX_AGE:
        return tar
    mmdebstrap = require(shutil.which("mmdebstrap") or "/usr/bin/mmdebstrap", "mmdebstrap")
    partial = cache / f"{tar.name}.{os.getpid()}"  # not named .tar: the format is explicit
    result = subprocess.run(
        [
            mmdebstrap, "--variant=minbase", "--format=tar", f"--include={BASE_PACKAGES}",
            BASE_SUITE, str(partial),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        pytest.fail(f"mmdebstrap failed:\n{result.stderr[-4000:]}")
    partial.replace(tar)
    return tar


def build_base(docker: Docker, cache: Path) -> str:
    """The local base image: the Debian tar imported, plus the host's CA bundle."""
    imported = f"moorage-test/debian:{BASE_SUITE}"
    docker("import", str(base_tar(cache)), imported)
    with tempfile.TemporaryDirectory() as context:
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", Path(context) / "ca-certificates.crt")
        (Path(context) / "Dockerfile").write_text(
            f"FROM {imported}\nCOPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n"
        )
        docker("build", "-t", BASE_IMAGE, context)
    return BASE_IMAGE


def build_stdin(docker: Docker, tag: str, dockerfile: str) -> str:
    """An image built from a Dockerfile alone (no context), with the host's network."""
    docker("build", "--network", "host", "-t", tag, "-", input=dockerfile)
    return tag


@dataclass
class Built:
    tag: str
    seconds: float  # how long `docker build` took
    size: int  # bytes, as `docker image inspect` counts them


def build_moorage(docker: Docker, base: str) -> Built:
    """`docker build -t moorage .` in the repository (on the local base), as the README says."""
    started = time.monotonic()
    docker(
        "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
        "-t", MOORAGE_IMAGE, ".", cwd=REPOSITORY,
    )  # fmt: skip
    seconds = time.monotonic() - started
    # The build stage's layers stay in the build cache: memory, on the engine's tmpfs.
    docker("builder", "prune", "--all", "--force")
    (image,) = docker.inspect(MOORAGE_IMAGE, kind="image")
    return Built(MOORAGE_IMAGE, seconds, int(image["Size"]))


# --- containers ------------------------------------------------------------------------------


@dataclass
class Container:
    docker: Docker
    name: str
    port: int = 0  # the host port the registry is published on, if any

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def logs(self) -> str:
        result = self.docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def state(self) -> dict[str, Any]:
        return dict(self.docker.inspect(self.name)[0]["State"])

    def wait_answering(self, timeout: float = 60) -> None:
        """Until the registry answers on its published port (200 or 401 on /v2/)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/v2/", timeout=2).status_code in (200, 401):
                    return
            if not self.state()["Running"] or time.monotonic() > deadline:
                pytest.fail(f"container {self.name} not answering:\n{self.logs()}")
            time.sleep(0.2)

    def wait_health(self, status: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while (health := self.state().get("Health", {})).get("Status") != status:
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} not {status}: {health}\n{self.logs()}")
            time.sleep(0.5)


@contextlib.contextmanager
def run_container(
    docker: Docker, image: str, *args: str, command: tuple[str, ...] = (), port: int = 0
) -> Iterator[Container]:
    """`docker run -d ARGS IMAGE COMMAND`; removed (with its anonymous volumes) at the end."""
    name = f"moorage-test-{uuid.uuid4().hex[:12]}"
    docker("run", "-d", "--name", name, *args, image, *command)
    try:
        yield Container(docker, name, port)
    finally:
        docker("rm", "-f", "-v", name, check=False)
