"""Helpers for the HTTP settings and reverse proxy tests: certificates made with openssl, moorage
started on any listener (TLS, unix socket, a prefix), nginx in front of it, skopeo, and reading
a process's memory high-water mark."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import spawn_moorage, stop

TIMEOUT = 120  # seconds, for any one client command


def require(binary: str, package: str | None = None) -> str:
    path = shutil.which(binary) or (
        f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None
    )
    if path is None:
        pytest.fail(f"{binary} is missing: apt-get install -y {package or binary}")
    return path


def run(args: list[str], *, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Runs a command bounded by TIMEOUT; with `check`, a failure fails the test with its
    output."""
    args = [require(args[0]), *args[1:]]
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=TIMEOUT, check=False, **kwargs
    )
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["skopeo", "--insecure-policy", *args], check=check)


# --- certificates ----------------------------------------------------------------------------

# `openssl req` making a fresh P-256 key, unencrypted.
NEW_EC_KEY = [
    "openssl",
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
]


@dataclass
class CA:
    cert: Path
    key: Path

    def issue(
        self, directory: Path, name: str, *, server: bool, dns: tuple[str, ...] = ()
    ) -> tuple[Path, Path]:
        """A certificate signed by this CA: for a server on 127.0.0.1 (serverAuth, SAN IP) and
        the `dns` names, or for a client (clientAuth). Returns (cert, key)."""
        key = directory / f"{name}.key"
        csr = directory / f"{name}.csr"
        cert = directory / f"{name}.crt"
        ext = directory / f"{name}.ext"
        ext.write_text(
            "basicConstraints=CA:FALSE\n"
            + (
                "subjectAltName=IP:127.0.0.1,"
                + ",".join(f"DNS:{n}" for n in ("localhost", *dns))
                + "\nextendedKeyUsage=serverAuth\n"
                if server
                else "extendedKeyUsage=clientAuth\n"
            )
        )
        run(
            [
                *(*NEW_EC_KEY[:2], "-new", *NEW_EC_KEY[2:]),
                *("-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}"),
            ]
        )
        run(
            [
                *("openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.cert)),
                *("-CAkey", str(self.key), "-CAcreateserial", "-days", "2"),
                *("-out", str(cert), "-extfile", str(ext)),
            ]
        )
        key.chmod(0o600)
        return cert, key


def make_ca(directory: Path, name: str = "ca") -> CA:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    run(
        [
            *NEW_EC_KEY[:2],
            "-x509",
            *NEW_EC_KEY[2:],
            *("-keyout", str(key), "-out", str(cert), "-days", "2"),
            *("-subj", f"/CN=moorage test {name}"),
            *("-addext", "basicConstraints=critical,CA:TRUE"),
            *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        ]
    )
    key.chmod(0o600)
    return CA(cert, key)


def cert_dir(directory: Path, ca: CA, client: tuple[Path, Path] | None = None) -> Path:
    """A containers-style cert dir: `ca.crt` to trust the server, `client.cert`/`client.key`
    to present."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(ca.cert, directory / "ca.crt")
    if client is not None:
        shutil.copy(client[0], directory / "client.cert")
        shutil.copy(client[1], directory / "client.key")
    return directory


# --- processes -------------------------------------------------------------------------------


@dataclass
class Process:
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def config(root: Path, http: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text"},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "http": http,
        **sections,
    }


@contextlib.contextmanager
def moorage(
    workdir: Path, settings: dict[str, Any], env: dict[str, str] | None = None
) -> Iterator[Process]:
    """Runs `moorage serve` with the config as given (any listener; one process unless it sets
    http.workers, as tests.servers.run_moorage) and waits for its "listening" log line, which
    it writes once the listener is open."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "moorage.yml"
    settings = {**settings, "http": {"workers": 1, **settings.get("http", {})}}
    path.write_text(yaml.safe_dump(settings))
    log = workdir / "moorage.log"
    process = spawn_moorage([str(path)], log, env)
    server = Process(process, log)
    try:
        deadline = time.monotonic() + 15
        while "moorage listening on" not in server.logs():
            if process.poll() is not None:
                raise RuntimeError(f"moorage exited {process.returncode}:\n{server.logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"moorage not listening after 15s:\n{server.logs()}")
            time.sleep(0.05)
        yield server
    finally:
        stop(process, timeout=15)


def skopeo_round_trip(
    workdir: Path, ref: str, push_flags: list[str], pull_flags: list[str], seed: str
) -> None:
    """Pushes a two-layer image to `ref` (docker://HOST/REPO:TAG) with skopeo, pulls it back
    into a fresh OCI layout, and checks the manifest and every blob came back byte for byte."""
    from tests.images import make_image

    image = make_image(
        workdir / f"layout-{seed}",
        "v1",
        [{"etc/motd": f"welcome {seed}\n".encode()}, {"data/blob.bin": os.urandom(300 * 1024)}],
        seed=seed,
    )
    skopeo("copy", *push_flags, image.ref, ref)
    raw = skopeo("inspect", "--raw", *[f.replace("--dest-", "--") for f in push_flags], ref)
    assert raw.stdout.encode().rstrip(b"\n") == image.manifest
    out = workdir / f"pulled-{seed}"
    skopeo("copy", *pull_flags, ref, f"oci:{out}:v1")
    for digest in [image.manifest_digest, image.config_digest, *image.layer_digests]:
        hex_ = digest.split(":")[1]
        pulled = (out / "blobs" / "sha256" / hex_).read_bytes()
        assert pulled == (image.layout / "blobs" / "sha256" / hex_).read_bytes(), digest


def nginx_preamble(directory: Path) -> str:
    """The top of a test's own nginx.conf, up to and including the opening of its `http`
    block: one worker, and its pid, logs and temp files all in `directory`."""
    return f"""
user root;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
"""
