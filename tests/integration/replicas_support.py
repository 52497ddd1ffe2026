"""Several moorage replicas over one S3-compatible store (SeaweedFS) and one Redis, behind a
round-robin nginx: the production shape the replica tests, and the lifecycle's, run in."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import yaml

from tests.images import Image
from tests.integration.http_support import nginx_preamble
from tests.servers import S3Server, Server, free_port, run_moorage, stop

TIMEOUT = 120  # seconds, for any one command

# The production config of the issue, verbatim (its credentials are fake).
SEED = """\
version: 0.1
log:
  level: info
  fields:
    service: registry
    environment: staging
storage:
  s3:
    accesskey: AKIA0Z6307DRPWJ5VH03F
    secretkey: OgP2Yhk1ZjFFf+aYokvnqI3qTlenCxSW2nbb9zpB
    region: us-west-1
    bucket: registry
    encrypt: false
    secure: true
    v4auth: true
    chunksize: 5242880
    rootdirectory: /registryv2
  cache:
    layerinfo: redis
http:
  addr: :443
  secret: ZpAedwVDFHK7mkNFFKSP8OQY
  debug:
    addr: localhost:5001
redis:
  addr: localhost:6379
  db: 0
"""


def seed_config(
    s3: S3Server, redis_addr: str, *, bucket: str = "registry", db: int = 0, **storage: Any
) -> dict[str, Any]:
    """The seed config with only what the issue allows changed: the store's endpoint, plain
    HTTP and path-style addressing, the addresses (the API's is set by run_moorage); plus, for
    tests other than the seed's own, a bucket, Redis database and storage settings of their
    own."""
    config: dict[str, Any] = yaml.safe_load(SEED)
    config["storage"]["s3"].update(
        regionendpoint=s3.endpoint, secure=False, forcepathstyle=True, bucket=bucket
    )
    config["storage"].update(storage)
    config["http"]["debug"]["addr"] = f"127.0.0.1:{free_port()}"
    config["redis"].update(addr=redis_addr, db=db)
    return config


def debug_url(config: dict[str, Any]) -> str:
    return f"http://{config['http']['debug']['addr']}"


def run(args: list[str]) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout


def push(image: Image, dest: str, *flags: str) -> None:
    run(["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", *flags,
         image.ref, f"docker://{dest}"])  # fmt: skip


def redis_client(addr: str, db: int) -> redis.Redis:
    host, _, port = addr.rpartition(":")
    return redis.Redis(host=host, port=int(port), db=db, socket_timeout=5)


def nginx_conf(directory: Path, port: int, upstreams: list[str]) -> str:
    servers = "\n".join(f"        server {host};" for host in upstreams)
    return (
        nginx_preamble(directory)
        + f"""
    upstream replicas {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        location / {{
            proxy_pass http://replicas;
            proxy_http_version 1.1;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_next_upstream off;
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
            proxy_set_header Host $http_host;
        }}
    }}
}}
"""
    )


@contextlib.contextmanager
def run_nginx(directory: Path, upstreams: list[str]) -> Iterator[str]:
    """nginx round-robin over `upstreams`, a fresh upstream connection per request; yields
    its host:port."""
    binary = "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "nginx"
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(nginx_conf(directory, port, upstreams))
    with open(directory / "stderr.log", "wb") as out:
        process = subprocess.Popen(
            [binary, "-c", str(conf), "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise RuntimeError((directory / "stderr.log").read_text())
            with contextlib.suppress(requests.RequestException):
                requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            if time.monotonic() > deadline:
                raise RuntimeError("nginx not ready after 15s")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)


@contextlib.contextmanager
def run_replicas(workdir: Path, config: dict[str, Any], count: int = 3) -> Iterator[list[Server]]:
    """`count` moorage processes with the same config (each with a debug port of its own)."""
    with contextlib.ExitStack() as stack:
        servers = []
        for index in range(count):
            own = {
                **config,
                "http": {**config["http"], "debug": {"addr": f"127.0.0.1:{free_port()}"}},
            }
            servers.append(stack.enter_context(run_moorage(workdir / f"replica-{index}", own)))
        yield servers
