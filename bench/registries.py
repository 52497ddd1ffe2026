"""The two registries under test, started the same way: the filesystem driver at a given root,
deletes enabled, the in-memory blob descriptor cache, log level info, on a free loopback port.

moorage starts through tests/servers.py; the reference registry through a launcher of its own
here, because the tests' one writes no cache section and the benchmark wants both registries
with their cache.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from tests.servers import Server, _stop, _wait_ready, free_port, moorage_config, run_moorage

MOORAGE = "moorage"
REFERENCE = "reference"
KINDS = (MOORAGE, REFERENCE)

CACHE = {"blobdescriptor": "inmemory"}


def reference_config(root: Path, port: int) -> dict[str, Any]:
    return {
        "version": "0.1",
        "log": {"level": "info"},
        "storage": {
            "filesystem": {"rootdirectory": str(root)},
            "delete": {"enabled": True},
            "cache": dict(CACHE),
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }


@contextlib.contextmanager
def run_reference(workdir: Path, root: Path) -> Iterator[Server]:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("the reference registry is missing: apt-get install docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config_path = workdir / f"distribution-{port}.yml"
    config_path.write_text(yaml.safe_dump(reference_config(root, port)))
    log = workdir / f"distribution-{port}.log"
    # Its AWS SDK panics on AWS_CA_BUNDLE (shared/TESTING.md), harmless to drop here too.
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


@contextlib.contextmanager
def run_registry(
    kind: str, workdir: Path, root: Path, profile: Path | None = None
) -> Iterator[Server]:
    """Either registry on the filesystem at `root`; with `profile` (moorage only), py-spy
    samples the server for its whole life and writes collapsed stacks there."""
    if kind == REFERENCE:
        with run_reference(workdir / REFERENCE, root) as server:
            yield server
        return
    config = moorage_config(root, 0)
    config["storage"]["cache"] = dict(CACHE)
    with run_moorage(workdir / MOORAGE, config) as server:
        if profile is None:
            yield server
        else:
            with py_spy(server.process.pid, profile):
                yield server


@contextlib.contextmanager
def py_spy(pid: int, output: Path) -> Iterator[None]:
    """`py-spy record` attached to `pid` (without pausing it) until the block ends."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.path.exists(binary):
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    output.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [binary, "record", "--pid", str(pid), "--rate", "250", "--nonblocking",
         "--format", "raw", "--output", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def memory(pid: int) -> dict[str, float]:
    """The process's resident set now (VmRSS) and its high-water mark (VmHWM), in MB."""
    values: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024 / 1e6
    return values
