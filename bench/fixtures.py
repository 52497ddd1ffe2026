"""What the workloads need on disk, made once per run: blob files of random bytes (pushed from and
pulled as), an OCI image layout for skopeo, and registry roots written directly in distribution's
storage layout (src/moorage/storage/paths.py), which both registries serve as their own. Writing
5,000 tags or 10,000 repositories as files takes seconds; pushing them through the API would
take far longer on the reference registry. On S3 the same layout is written as objects
(S3Tree), many requests at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.images import Image, make_image

if TYPE_CHECKING:
    from bench.registries import Root

V2 = "docker/registry/v2"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
GENERATE_CHUNK = 16 << 20


@dataclass(frozen=True)
class BlobFile:
    label: str  # "256MiB"
    path: Path
    size: int
    digest: str  # sha256:<hex>


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_file(directory: Path, label: str, size: int, seed: int) -> BlobFile:
    """A file of `size` random bytes (the same for the same seed); reused when a previous run
    left it in `directory` with its digest."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"blob-{label}"
    recorded = path.with_name(path.name + ".sha256")
    if path.exists() and recorded.exists() and path.stat().st_size == size:
        return BlobFile(label, path, size, recorded.read_text().strip())
    generator = random.Random(seed)
    hasher = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = generator.randbytes(min(GENERATE_CHUNK, left))
            hasher.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    digest = "sha256:" + hasher.hexdigest()
    recorded.write_text(digest)
    return BlobFile(label, path, size, digest)


def warm_memory(directory: Path, size: int) -> None:
    """Writes and deletes `size` bytes: on this VM the first write into never-touched memory is
    several times slower (ballooned pages, measured about 4x), so touch the page cache the
    timed pushes will write into before timing them."""
    if size <= 0:
        return
    path = directory / "warm-memory"
    block = b"\xa5" * GENERATE_CHUNK
    with open(path, "wb") as out:
        for _ in range(size // len(block)):
            out.write(block)
    path.unlink()


class Tree:
    """Writes a registry root in distribution's layout."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.v2 = root / V2

    def blob(self, digest: str, content: bytes | None = None, source: Path | None = None) -> None:
        """Stores content under its digest: the bytes given, or a hard link to `source`."""
        hex_ = digest.split(":", 1)[1]
        path = self.v2 / "blobs" / "sha256" / hex_[:2] / hex_ / "data"
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if source is not None:
            try:
                os.link(source, path)
            except OSError:
                shutil.copyfile(source, path)
        else:
            assert content is not None
            path.write_bytes(content)

    def _link(self, repo: str, relative: str, digest: str) -> None:
        path = self.v2 / "repositories" / repo / relative / "link"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(digest)

    def layer_link(self, repo: str, digest: str) -> None:
        self._link(repo, f"_layers/sha256/{digest.split(':', 1)[1]}", digest)

    def revision_link(self, repo: str, digest: str) -> None:
        self._link(repo, f"_manifests/revisions/sha256/{digest.split(':', 1)[1]}", digest)

    def tag(self, repo: str, tag: str, digest: str) -> None:
        self._link(repo, f"_manifests/tags/{tag}/current", digest)
        self._link(repo, f"_manifests/tags/{tag}/index/sha256/{digest.split(':', 1)[1]}", digest)


class S3Tree(Tree):
    """Writes the same layout as objects under a Root on the bench's SeaweedFS: the paths are
    gathered, then `upload` puts them, `concurrency` requests at a time."""

    def __init__(self, root: Root, concurrency: int = 32) -> None:
        super().__init__(Path("/nonexistent"))
        self.target = root
        self.concurrency = concurrency
        self.objects: dict[str, bytes | Path] = {}

    def blob(self, digest: str, content: bytes | None = None, source: Path | None = None) -> None:
        hex_ = digest.split(":", 1)[1]
        data = source if source is not None else content
        assert data is not None
        self.objects.setdefault(f"{V2}/blobs/sha256/{hex_[:2]}/{hex_}/data", data)

    def _link(self, repo: str, relative: str, digest: str) -> None:
        self.objects[f"{V2}/repositories/{repo}/{relative}/link"] = digest.encode()

    def upload(self) -> None:
        from tests.integration.s3_support import s3_client

        root, store = self.target, self.target.s3
        assert store is not None
        store.create_bucket(root.bucket)

        async def put_all() -> None:
            gate = asyncio.Semaphore(self.concurrency)
            async with s3_client(store) as client:

                async def put(relative: str, data: bytes | Path) -> None:
                    async with gate:  # (made before any timing: a blocking read is fine)
                        await client.put_object(
                            Bucket=root.bucket, Key=root.key(relative), Body=_bytes(data)
                        )

                await asyncio.gather(*(put(k, v) for k, v in self.objects.items()))

        asyncio.run(put_all())
        self.objects.clear()


def _bytes(data: bytes | Path) -> bytes:
    return data.read_bytes() if isinstance(data, Path) else data


@dataclass(frozen=True)
class SmallImage:
    """A Docker schema 2 image with one small layer, as stored by Tree.image."""

    manifest: bytes
    digest: str
    config: bytes
    config_digest: str
    layer: bytes
    layer_digest: str


def small_image(seed: str = "bench") -> SmallImage:
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {"Labels": {"seed": seed}},
         "rootfs": {"type": "layers", "diff_ids": [sha256(seed.encode())]}},
        sort_keys=True,
    ).encode()
    layer = f"layer {seed}\n".encode() * 64
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": sha256(config)},
            "layers": [{"mediaType": DOCKER_LAYER, "size": len(layer), "digest": sha256(layer)}],
        },
        indent=3,
    ).encode()
    return SmallImage(manifest, sha256(manifest), config, sha256(config), layer, sha256(layer))


def write_image(tree: Tree, repos: Iterable[str], tags: Iterable[str], seed: str = "bench") -> str:
    """Stores one small Docker image in every repository of `repos`, under each of `tags`;
    returns the manifest digest."""
    image = small_image(seed)
    tree.blob(image.config_digest, image.config)
    tree.blob(image.layer_digest, image.layer)
    tree.blob(image.digest, image.manifest)
    tag_list = list(tags)
    for repo in repos:
        tree.layer_link(repo, image.config_digest)
        tree.layer_link(repo, image.layer_digest)
        tree.revision_link(repo, image.digest)
        for tag in tag_list:
            tree.tag(repo, tag, image.digest)
    return image.digest


def catalog_names(count: int) -> list[str]:
    """`count` repository names, two levels deep as organisations use them: 100 per namespace."""
    return [f"ns{i // 100:04d}/repo{i:05d}" for i in range(count)]


def oci_layout(directory: Path, layers: int, layer_size: int) -> tuple[Image, int]:
    """An OCI image layout with `layers` gzip layers of random content of `layer_size` bytes
    each; returns the image and the total size of its blobs."""
    generator = random.Random(7)
    image = make_image(
        directory,
        "bench",
        [{f"layer-{i}.bin": generator.randbytes(layer_size)} for i in range(layers)],
        seed="bench",
    )
    total = sum(p.stat().st_size for p in (directory / "blobs" / "sha256").iterdir())
    return image, total
