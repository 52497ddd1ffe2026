"""A thin HTTP client for the API tests: the registry's protocol steps, each asserting that the
step itself succeeded, so a test reads as the scenario it checks."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def error_codes(response: requests.Response) -> list[str]:
    """The codes of an OCI error envelope; fails the test if the body is not one."""
    body = response.json()
    assert isinstance(body.get("errors"), list) and body["errors"], body
    return [entry["code"] for entry in body["errors"]]


class Client:
    def __init__(self, base: str, *, monolithic: bool = True) -> None:
        """`monolithic`: blobs go up in one POST ?digest=; False for a registry without it
        (distribution 2.8): a POST then a PUT with the body."""
        self.base = base
        self.http = requests.Session()
        self.monolithic = monolithic

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base}{path}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        kwargs.setdefault("allow_redirects", False)
        return self.http.request(method, self.url(path), **kwargs)

    def push_blob(self, name: str, data: bytes) -> str:
        """Uploads a blob (monolithic unless the client says otherwise); returns the digest."""
        digest = sha256(data)
        if self.monolithic:
            response = self.request(
                "POST", f"/v2/{name}/blobs/uploads/", params={"digest": digest}, data=data
            )
        else:
            location = self.start_upload(name)
            response = self.request("PUT", location, params={"digest": digest}, data=data)
        assert response.status_code == 201, response.text
        return digest

    def start_upload(self, name: str, **params: str) -> str:
        """POST to start a session; returns the Location of the session."""
        response = self.request("POST", f"/v2/{name}/blobs/uploads/", params=params)
        assert response.status_code == 202, response.text
        return response.headers["Location"]

    def manifest(
        self,
        name: str,
        config: bytes,
        layers: list[bytes],
        *,
        media_type: str = OCI_MANIFEST,
        config_type: str = "application/vnd.oci.image.config.v1+json",
        extra: dict[str, Any] | None = None,
    ) -> bytes:
        """Pushes the config and layers as blobs and returns a manifest payload naming them."""
        layer_type = (
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
            if media_type == DOCKER_MANIFEST
            else "application/vnd.oci.image.layer.v1.tar+gzip"
        )
        document: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": config_type,
                "digest": self.push_blob(name, config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": layer_type, "digest": self.push_blob(name, layer), "size": len(layer)}
                for layer in layers
            ],
        }
        document.update(extra or {})
        return json.dumps(document).encode()

    def put_manifest(
        self,
        name: str,
        reference: str,
        payload: bytes,
        media_type: str = OCI_MANIFEST,
        **params: Any,
    ) -> requests.Response:
        return self.request(
            "PUT",
            f"/v2/{name}/manifests/{reference}",
            data=payload,
            headers={"Content-Type": media_type},
            params=params,
        )

    def push_image(self, name: str, tag: str, seed: str = "") -> tuple[bytes, str]:
        """Pushes a small image under `tag`; returns its manifest payload and digest."""
        payload = self.manifest(name, f'{{"seed":"{seed}"}}'.encode(), [f"layer {seed}".encode()])
        response = self.put_manifest(name, tag, payload)
        assert response.status_code == 201, response.text
        return payload, sha256(payload)

    def push_index(self, name: str, reference: str, children: list[bytes]) -> tuple[bytes, str]:
        """Pushes an OCI index of the (pushed) image manifests `children`; returns its payload
        and digest."""
        payload = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {"mediaType": OCI_MANIFEST, "digest": sha256(child), "size": len(child)}
                    for child in children
                ],
            }
        ).encode()
        response = self.put_manifest(name, reference, payload, OCI_INDEX)
        assert response.status_code == 201, response.text
        return payload, sha256(payload)

    def push_artifact(
        self, name: str, subject: bytes, seed: str, reference: str = ""
    ) -> tuple[bytes, str]:
        """Pushes an artifact (a signature) whose subject is the manifest `subject`, by digest
        unless a `reference` is given; returns its payload and digest."""
        payload = self.manifest(
            name,
            b"{}",
            [f"signature {seed}".encode()],
            config_type=EMPTY_CONFIG,
            extra={
                "artifactType": "application/vnd.example.signature",
                "subject": {
                    "mediaType": OCI_MANIFEST,
                    "digest": sha256(subject),
                    "size": len(subject),
                },
            },
        )
        response = self.put_manifest(name, reference or sha256(payload), payload)
        assert response.status_code == 201, response.text
        return payload, sha256(payload)


class RepeatedBody:
    """A request body of `block` repeated `count` times, produced as it is sent: a file-like
    object of known length, so requests sends Content-Length and never holds it whole.
    `on_block(i)` runs before block i is produced."""

    def __init__(self, block: bytes, count: int, on_block: Any = None) -> None:
        self.block = block
        self.count = count
        self.on_block = on_block
        self._produced = 0
        self._pending = b""

    def __len__(self) -> int:
        return len(self.block) * self.count

    def read(self, size: int = -1) -> bytes:
        while not self._pending and self._produced < self.count:
            if self.on_block is not None:
                self.on_block(self._produced)
            self._pending = self.block
            self._produced += 1
        if size < 0 or size >= len(self._pending):
            out, self._pending = self._pending, b""
        else:
            out, self._pending = self._pending[:size], self._pending[size:]
        return out


def round_trip_big_blob(server_url: str, pid: int, name: str, mib: int, seed: bytes) -> None:
    """Pushes a `mib` MiB blob in one streamed PUT and pulls it back streaming, checking every
    byte by digest and that the server's peak memory stayed under 150 MiB: bodies never held
    whole, on any storage."""
    from tests.servers import peak_rss_mib

    block = hashlib.sha256(seed).digest() * (1024 * 1024 // 32)
    expected = hashlib.sha256()
    for _ in range(mib):
        expected.update(block)
    digest = f"sha256:{expected.hexdigest()}"
    location = Client(server_url).start_upload(name)
    pushed = requests.put(
        location, params={"digest": digest}, data=RepeatedBody(block, mib), timeout=600
    )
    assert pushed.status_code == 201, pushed.text
    received = hashlib.sha256()
    count = 0
    with requests.get(f"{server_url}/v2/{name}/blobs/{digest}", stream=True, timeout=600) as got:
        assert got.status_code == 200
        for chunk in got.iter_content(1024 * 1024):
            received.update(chunk)
            count += len(chunk)
    assert count == mib * 1024 * 1024
    assert received.hexdigest() == expected.hexdigest()
    peak = peak_rss_mib(pid)
    assert peak < 150, f"server peak RSS {peak:.0f} MiB"
