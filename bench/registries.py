"""The two registries under test, started the same way: the same storage (the filesystem driver
at a given root, or the s3 driver on the bench's SeaweedFS, each registry in a bucket of its
own), deletes enabled, the in-memory blob descriptor cache, log level info, on a free loopback
port.

moorage starts through tests/servers.py; the reference registry through a launcher of its own
here, because the tests' one writes no cache section and knows no S3, and the benchmark wants
both registries with their cache.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers import (
    S3Server,
    Server,
    children,
    moorage_config,
    run_moorage,
    run_reference_registry,
    stop,
)

MOORAGE = "moorage"
REFERENCE = "reference"
KINDS = (MOORAGE, REFERENCE)

CACHE = {"blobdescriptor": "inmemory"}
FILESYSTEM = "filesystem"
S3 = "s3"
STORAGES = (FILESYSTEM, S3)


@dataclass(frozen=True)
class Root:
    """Where one registry keeps its data: a directory (filesystem), or a bucket and a
    rootdirectory in it on the bench's SeaweedFS (s3)."""

    path: Path | None = None
    s3: S3Server | None = None
    bucket: str = ""
    prefix: str = ""  # storage.s3.rootdirectory, "/name"

    def key(self, relative: str) -> str:
        """The object key of a path of the storage layout ("docker/registry/v2/...")."""
        return f"{self.prefix.strip('/')}/{relative}" if self.prefix.strip("/") else relative


def storage_section(kind: str, root: Root, redirect: bool = True) -> dict[str, Any]:
    """The `storage` section both registries get: the driver, deletes, the cache and, on S3,
    whether blob GETs redirect to a presigned URL (both registries' default) or are proxied."""
    section: dict[str, Any]
    if root.s3 is None:
        assert root.path is not None
        section = {FILESYSTEM: {"rootdirectory": str(root.path)}}
    else:
        params = root.s3.params(root.bucket, rootdirectory=root.prefix)
        if kind == REFERENCE:
            # distribution 2.8's driver: no forcepathstyle (a regionendpoint implies path
            # style), v4 signatures only when asked (tests/integration/test_s3_compat.py).
            del params["forcepathstyle"]
            params["v4auth"] = True
        section = {S3: params}
        if not redirect:
            section["redirect"] = {"disable": True}
    section["delete"] = {"enabled": True}
    section["cache"] = dict(CACHE)
    return section


@contextlib.contextmanager
def run_registry(
    kind: str,
    workdir: Path,
    root: Root,
    profile: Path | None = None,
    redirect: bool = True,
    workers: int | str = "auto",
    secret: str = "",
    proxy: str | None = None,
    sections: dict[str, Any] | None = None,
) -> Iterator[Server]:
    """Either registry on `root`; `redirect=False` disables blob redirects (S3); `workers` is
    moorage's http.workers (default auto, one process per core, as the reference's Go runtime);
    `secret` the http.secret (replicas share one); `proxy` makes it a pull-through cache of the
    registry at that URL (distribution's `proxy.remoteurl`, every name); `sections` are added to
    moorage's config (its variants: notifications, the web UI off); with `profile` (moorage
    only), py-spy samples the server for its whole life and writes collapsed stacks there."""
    proxied = {"proxy": {"remoteurl": proxy}} if proxy else {}
    if kind == REFERENCE:
        storage = storage_section(REFERENCE, root, redirect)
        with run_reference_registry(
            workdir / REFERENCE, root.path, secret, storage=storage, **proxied
        ) as server:
            yield server
        return
    config = moorage_config(root.path, 0, **proxied)
    config["storage"] = storage_section(MOORAGE, root, redirect)
    config["http"]["workers"] = workers
    if secret:
        config["http"]["secret"] = secret
    config.update(sections or {})  # moorage's own variants (notifications, the web UI off)
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
        [binary, "record", "--pid", str(pid), "--subprocesses", "--rate", "250", "--nonblocking",
         "--format", "raw", "--output", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        stop(process, timeout=30, sig=signal.SIGINT)  # py-spy writes its file on SIGINT


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) the process and its children (moorage's workers) have used
    so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for each in [pid, *children(pid)]:
        try:
            with open(f"/proc/{each}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def memory(pid: int) -> float:
    """The proportional set size (Pss) of the process and its children (moorage's workers)
    summed, in MB: each page shared by several processes (the workers are forked from the
    supervisor) counts as its share in each, so the sum is the memory the server takes. RSS
    summed over the processes would count every shared page once per process."""
    total = 0
    for each in [pid, *children(pid)]:
        try:
            with open(f"/proc/{each}/smaps_rollup") as rollup:
                for line in rollup:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
    return total * 1024 / 1e6


class PeakMemory:
    """The highest `memory(pid)` seen while the block runs, sampled every `interval` seconds
    on a thread of the harness (the kernel keeps a peak of RSS, VmHWM, but none of Pss)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, memory(self.pid))
            if self._done.wait(self.interval):
                return

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, memory(self.pid))
