"""What the usage, quota and retention tests share: the registry shapes they run in (one root on
the filesystem served by two workers; two replicas over SeaweedFS sharing Redis, behind nginx),
the moorage CLI, /metrics and the usage route read back, and images whose blob sizes are known."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
import yaml

from tests.images import Image, make_image
from tests.integration.replicas_support import redis_client, run_nginx, run_replicas, seed_config
from tests.integration.s3_support import bucket
from tests.servers import RedisServer, S3Server, Server, free_port, moorage_config, run_moorage

TIMEOUT = 120  # seconds, for any one command
HTTP_TIMEOUT = 30
WAIT = 60  # seconds a condition the server reaches on its own (a refresh, a pass) may take
KiB = 1024
MiB = 1024 * KiB
ERRORS = re.compile(r"Traceback|^\S+ (?:error|critical) ", re.M)
T = TypeVar("T")


@dataclass
class Registry:
    """A running registry as a client sees it: where to push (`host`), the processes behind it,
    their debug listeners, and the config file the CLI takes."""

    host: str
    servers: list[Server]
    debug: list[str]  # http://host:port of each process's (or worker group's) debug listener
    config: Path
    storage: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def no_errors(self) -> None:
        for server in self.servers:
            logs = server.logs()
            assert not ERRORS.search(logs), logs

    def logs(self) -> str:
        return "".join(server.logs() for server in self.servers)


def lifecycle_sections(**maintenance: Any) -> dict[str, Any]:
    """`storage.maintenance` with usage refreshed every second, plus `maintenance`."""
    return {"usage": {"interval": "1s"}, **maintenance}


@contextlib.contextmanager
def filesystem_registry(
    workdir: Path, *, root: Path | None = None, **storage: Any
) -> Iterator[Registry]:
    """moorage with `http.workers: 2` on a filesystem root (kept across restarts when `root`
    is given), with `storage` settings added (e.g. quotas, maintenance)."""
    root = root or workdir / "data"
    config = moorage_config(root, 0)
    config["storage"].update(storage)
    debug = f"127.0.0.1:{free_port()}"
    config["http"] = {"workers": 2, "debug": {"addr": debug}}
    with run_moorage(workdir, config) as server:
        path = workdir / "cli.yml"
        path.write_text(yaml.safe_dump({**config, "http": {"addr": server.host}}))
        yield Registry(server.host, [server], [f"http://{debug}"], path, config["storage"])


@contextlib.contextmanager
def s3_replicas(
    workdir: Path, s3: S3Server, redis_server: RedisServer, name: str, db: int, **storage: Any
) -> Iterator[Registry]:
    """Two moorage replicas on one bucket sharing one Redis database, behind a round-robin
    nginx, with `storage` settings added; the bucket is emptied and removed afterwards."""
    with bucket(s3, name):
        redis_client(redis_server.addr, db).flushdb()
        with replicas_on(workdir, s3, redis_server, name, db, **storage) as registry:
            yield registry


@contextlib.contextmanager
def replicas_on(
    workdir: Path, s3: S3Server, redis_server: RedisServer, name: str, db: int, **storage: Any
) -> Iterator[Registry]:
    """As s3_replicas, on a bucket that exists already (to restart replicas on it)."""
    config = seed_config(s3, redis_server.addr, bucket=name, db=db, **storage)
    config["storage"]["delete"] = {"enabled": True}
    with (
        run_replicas(workdir, config, count=2) as servers,
        run_nginx(workdir / "nginx", [s.host for s in servers]) as front,
    ):
        debug = [_debug_of(server) for server in servers]
        path = workdir / "cli.yml"
        path.write_text(yaml.safe_dump(config))
        yield Registry(front, servers, debug, path, config["storage"])


def _debug_of(server: Server) -> str:
    """A replica's debug address, from the config file run_moorage wrote for it."""
    port = server.host.rpartition(":")[2]
    config = yaml.safe_load((server.log.parent / f"moorage-{port}.yml").read_text())
    return f"http://{config['http']['debug']['addr']}"


def moorage_cli(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """`moorage ARGS...`, whose errors are one line, never a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "moorage", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["skopeo", "--insecure-policy", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(f"skopeo {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def push(image: Image, host: str, reference: str, *, check: bool = True) -> str:
    """skopeo copies the image to host/reference; returns skopeo's stderr."""
    dest = f"docker://{host}/{reference}"
    return skopeo("copy", "--quiet", "--dest-tls-verify=false", image.ref, dest, check=check).stderr


def image_with(tmp_path: Path, seed: str, layers: list[dict[str, bytes]]) -> Image:
    return make_image(tmp_path / f"layout-{seed}", "v1", layers, seed=seed)


def blob_sizes(image: Image) -> dict[str, int]:
    """Every blob of the image (manifest, config, layers) by digest, with its size."""
    found = {}
    for digest in (image.manifest_digest, image.config_digest, *image.layer_digests):
        path = image.layout / "blobs" / "sha256" / digest.split(":")[1]
        found[digest] = path.stat().st_size
    return found


def random_layer(size: int, name: str = "data.bin") -> dict[str, bytes]:
    """A layer of incompressible bytes: its gzip is a little larger than `size`."""
    return {name: os.urandom(size)}


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT) -> T:
    """Polls `probe` until it answers something other than None or False."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


def usage_route(url: str, **kwargs: Any) -> requests.Response:
    return requests.get(f"{url}/v2/_moorage/usage", timeout=HTTP_TIMEOUT, **kwargs)


def usage_figures(url: str) -> dict[str, Any]:
    """The usage route's repositories (name -> exclusive, shared, total) and total."""
    answer = usage_route(url)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return {
        "repositories": {
            entry["name"]: (entry["exclusive"], entry["shared"], entry["total"])
            for entry in body["repositories"]
        },
        "total": body["total"],
    }


def cli_usage(config: Path, *names: str) -> dict[str, Any]:
    result = moorage_cli("usage", str(config), *names, "--json")
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def metric(debug: str, name: str, **labels: str) -> float | None:
    """A sample of /metrics on a debug listener; None when it is not there."""
    return sample(requests.get(f"{debug}/metrics", timeout=HTTP_TIMEOUT).text, name, **labels)


def sample(text: str, name: str, **labels: str) -> float | None:
    """A sample of a Prometheus exposition; None when it is not there."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    pattern = "^" + re.escape(name + (f"{{{wanted}}}" if labels else "")) + r" (\S+)$"
    match = re.search(pattern, text, re.M)
    return float(match.group(1)) if match else None


def storage_writes(debug: str) -> float:
    """Storage writes of small files (put_content) the processes behind a debug listener made."""
    text = requests.get(f"{debug}/metrics", timeout=HTTP_TIMEOUT).text
    found = re.findall(
        r'^moorage_storage_operation_duration_seconds_count\{[^}]*operation="put_content"[^}]*\}'
        r" (\S+)$",
        text,
        re.M,
    )
    return sum(float(value) for value in found)


def tags(url: str, name: str) -> list[str]:
    answer = requests.get(f"{url}/v2/{name}/tags/list", timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, answer.text
    return sorted(answer.json()["tags"] or [])
