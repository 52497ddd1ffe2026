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


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
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
) -> Iterator[Server]:
    """Runs `moorage serve` with the given config (default: filesystem under workdir/data)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    if config is None:
        root = root or workdir / "data"
        config = moorage_config(root, port)
    else:
        config = {**config, "http": {**config.get("http", {}), "addr": f"127.0.0.1:{port}"}}
        params = config["storage"].get("filesystem")
        root = Path(params["rootdirectory"]) if params else None
    config_path = workdir / f"moorage-{port}.yml"
    config_path.write_text(yaml.safe_dump(config))
    log = workdir / f"moorage-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moorage", "serve", str(config_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    server = Server(f"127.0.0.1:{port}", process, root, log)
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(process)


@contextlib.contextmanager
def run_reference_registry(workdir: Path, root: Path, secret: str = "") -> Iterator[Server]:
    """Runs CNCF distribution (`docker-registry`, Debian's package) on the filesystem at root,
    with `http.secret` when given."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("the reference registry is missing: apt-get install docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "version": "0.1",
        "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", **({"secret": secret} if secret else {})},
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
        _stop(process)
