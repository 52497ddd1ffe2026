"""Writing a storage tree through the registry's own services, for the lifecycle's tests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator

from moorage.registry.digest import Digest
from moorage.registry.repository import Registry

CONFIG = b'{"architecture":"amd64","os":"linux"}'
CONFIG_SIZE = len(CONFIG)


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def push_blob(registry: Registry, name: str, data: bytes, algorithm: str = "sha256") -> None:
    uploads = registry.repository(name).uploads
    upload_id = await uploads.start(algorithm)
    digest = Digest(algorithm, hashlib.new(algorithm, data).hexdigest())
    await uploads.commit(upload_id, digest, _body(data))


async def push_image(registry: Registry, name: str, tag: str, layers: list[bytes]) -> int:
    """Pushes the layers, a config and a manifest; returns the manifest's size."""
    for blob in [CONFIG, *layers]:
        await push_blob(registry, name, blob)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": str(Digest.of(CONFIG)),
                "size": CONFIG_SIZE,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": str(Digest.of(layer)),
                    "size": len(layer),
                }
                for layer in layers
            ],
        }
    ).encode()
    await registry.repository(name).manifests.put(tag, manifest, None, [])
    return len(manifest)
