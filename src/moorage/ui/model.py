"""What the pages show, gathered from the registry's services (never over HTTP): manifest
summaries, tag rows, a manifest's details and its referrers.

A manifest's summary (kind, size, platforms) depends on its content only, which never changes
under a digest, so summaries are kept by digest in a bounded map: a tag list costs a stat per
tag shown once its manifests were seen.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from moorage.lifecycle.pulls import PullTimes
from moorage.registry import manifests as schema
from moorage.registry.digest import Digest
from moorage.registry.errors import BlobUnknown, ManifestInvalid, ManifestUnknown, RegistryError
from moorage.registry.repository import Repository
from moorage.storage import paths
from moorage.storage.driver import PathNotFound, StorageDriver

IMAGE_CONFIGS = (
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
)
MAX_CONFIG = 1 << 20  # bytes of an image config read to show it
SUMMARIES_KEPT = 50_000
REFERRER_DEPTH = 3  # referrers of referrers (a signature of an SBOM) this deep
REFERRERS_SHOWN = 200  # at most, over the whole tree
CONCURRENCY = 16  # storage reads at once for one page


def platform_text(platform: dict[str, Any] | None) -> str:
    if not platform:
        return ""
    parts = [str(platform.get("os", "")), str(platform.get("architecture", ""))]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(part for part in parts if part)


@dataclass(frozen=True)
class Summary:
    kind: str  # "image", "index" or "artifact"
    media_type: str
    size: int  # the manifest, its config and layers; an index: with its manifests'
    platforms: tuple[str, ...]
    artifact_type: str | None


class Summaries:
    """Manifest summaries by digest, made on first need and kept (content never changes)."""

    def __init__(self, driver: StorageDriver, kept: int = SUMMARIES_KEPT) -> None:
        self.driver = driver
        self.kept = kept
        self._known: OrderedDict[Digest, Summary] = OrderedDict()

    async def of(self, repo: Repository, digest: Digest) -> Summary | None:
        """None when the repository has no readable manifest under `digest`."""
        known = self._known.get(digest)
        if known is not None:
            self._known.move_to_end(digest)
            return known
        try:
            stored = await repo.manifests.get(str(digest))
            manifest = schema.parse(stored.payload, None)
        except (ManifestUnknown, ManifestInvalid):
            return None
        size = len(stored.payload) + sum(blob.size for blob in manifest.blobs)
        platforms: tuple[str, ...] = ()
        if manifest.children:
            children = await gather(self.of(repo, child.digest) for child in manifest.children)
            size += sum(child.size for child in children if child is not None)
            document = schema.load_json(stored.payload)
            platforms = tuple(
                text
                for entry in document.get("manifests", [])
                if (text := platform_text(entry.get("platform")))
                and text != "unknown/unknown"  # attestations buildx puts in an index
            )
            kind = "index"
        elif manifest.blobs and manifest.blobs[0].media_type in IMAGE_CONFIGS:
            kind = "image"
            config = await image_config(repo, self.driver, manifest.blobs[0])
            text = platform_text(config) if config else ""
            platforms = (text,) if text else ()
        else:
            kind = "artifact"
        summary = Summary(kind, stored.media_type, size, platforms, manifest.artifact_type)
        self._known[digest] = summary
        if len(self._known) > self.kept:
            self._known.popitem(last=False)
        return summary


async def gather(awaitables: Iterable[Any]) -> list[Any]:
    """Runs the awaitables with at most CONCURRENCY at once; their results in order."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(awaitable: Any) -> Any:
        async with limit:
            return await awaitable

    return list(await asyncio.gather(*(one(each) for each in awaitables)))


async def image_config(
    repo: Repository, driver: StorageDriver, descriptor: schema.Descriptor
) -> dict[str, Any] | None:
    """An image's config document, when the repository links it and it is small enough to
    show; None otherwise."""
    if descriptor.size > MAX_CONFIG:
        return None
    try:
        info = await repo.blobs.stat(descriptor.digest)
        content = await driver.get_content(paths.blob_data(info.stored))
    except (BlobUnknown, PathNotFound):
        return None
    try:
        document = json.loads(content)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


@dataclass(frozen=True)
class TagRow:
    tag: str
    digest: Digest | None  # None: untagged meanwhile, or a broken link
    pushed: float | None
    pulled: float | None
    summary: Summary | None


async def tag_rows(
    repo: Repository,
    summaries: Summaries,
    tags: list[str],
    pulls: PullTimes | None,
) -> list[TagRow]:
    async def row(tag: str) -> TagRow:
        try:
            digest, pushed = await repo.tags.pushed(tag)
        except ManifestUnknown:
            return TagRow(tag, None, None, None, None)
        pulled = pulls.of(tag, digest) if pulls is not None else None
        return TagRow(tag, digest, pushed, pulled, await summaries.of(repo, digest))

    return await gather(row(tag) for tag in tags)


@dataclass(frozen=True)
class ImageConfig:
    """What an image's config says, as the manifest page shows it."""

    platform: str
    created: str
    entrypoint: list[str]
    cmd: list[str]
    working_dir: str
    user: str
    env: list[str]
    labels: dict[str, str]
    ports: list[str]
    volumes: list[str]
    history: list[dict[str, Any]]

    @classmethod
    def read(cls, document: dict[str, Any]) -> ImageConfig:
        config = document.get("config") or {}
        if not isinstance(config, dict):
            config = {}

        def strings(value: Any) -> list[str]:
            return [str(v) for v in value] if isinstance(value, list) else []

        def keys(value: Any) -> list[str]:
            return sorted(str(k) for k in value) if isinstance(value, dict) else []

        labels = config.get("Labels")
        history = document.get("history")
        return cls(
            platform=platform_text(document),
            created=str(document.get("created") or ""),
            entrypoint=strings(config.get("Entrypoint")),
            cmd=strings(config.get("Cmd")),
            working_dir=str(config.get("WorkingDir") or ""),
            user=str(config.get("User") or ""),
            env=strings(config.get("Env")),
            labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
            ports=keys(config.get("ExposedPorts")),
            volumes=keys(config.get("Volumes")),
            history=[entry for entry in history if isinstance(entry, dict)]
            if isinstance(history, list)
            else [],
        )


@dataclass(frozen=True)
class Child:
    """A manifest of an index."""

    descriptor: schema.Descriptor
    platform: str
    summary: Summary | None


@dataclass
class Referrer:
    descriptor: schema.Descriptor
    referrers: list[Referrer] = field(default_factory=list)


@dataclass
class ManifestDetails:
    digest: Digest
    media_type: str
    payload: bytes
    manifest: schema.Manifest
    summary: Summary | None
    config: ImageConfig | None
    children: list[Child]
    referrers: dict[str, list[Referrer]]  # by artifact type

    @property
    def layers(self) -> tuple[schema.Descriptor, ...]:
        return self.manifest.blobs[1:]

    @property
    def config_descriptor(self) -> schema.Descriptor | None:
        return self.manifest.blobs[0] if self.manifest.blobs else None

    @property
    def pretty(self) -> str:
        try:
            return json.dumps(json.loads(self.payload), indent=2)
        except (ValueError, RecursionError):
            return self.payload.decode("utf-8", "replace")


async def manifest_details(
    repo: Repository, driver: StorageDriver, summaries: Summaries, reference: str
) -> ManifestDetails:
    """Raises ManifestUnknown (a tag or digest the repository does not have) and the
    reference's own errors (TagInvalid, DigestInvalid)."""
    stored = await repo.manifests.get(reference)
    manifest = schema.parse(stored.payload, None)
    config = None
    if manifest.blobs and manifest.blobs[0].media_type in IMAGE_CONFIGS:
        document = await image_config(repo, driver, manifest.blobs[0])
        config = ImageConfig.read(document) if document is not None else None
    children: list[Child] = []
    if manifest.children:
        document = schema.load_json(stored.payload)
        entries = document.get("manifests", [])
        found = await gather(summaries.of(repo, child.digest) for child in manifest.children)
        children = [
            Child(child, platform_text(entry.get("platform")), summary)
            for child, entry, summary in zip(manifest.children, entries, found, strict=True)
        ]
    return ManifestDetails(
        digest=stored.digest,
        media_type=stored.media_type,
        payload=stored.payload,
        manifest=manifest,
        summary=await summaries.of(repo, stored.digest),
        config=config,
        children=children,
        referrers=await referrer_tree(repo, stored.digest),
    )


async def referrer_tree(repo: Repository, subject: Digest) -> dict[str, list[Referrer]]:
    """The manifests that refer to `subject`, by artifact type, each with its own referrers
    (REFERRER_DEPTH deep, REFERRERS_SHOWN in all)."""
    budget = [REFERRERS_SHOWN]

    async def below(digest: Digest, depth: int) -> list[Referrer]:
        if depth > REFERRER_DEPTH or budget[0] <= 0:
            return []
        try:
            descriptors = await repo.manifests.referrer_descriptors(digest, None)
        except RegistryError:
            return []
        descriptors = descriptors[: budget[0]]
        budget[0] -= len(descriptors)
        return [Referrer(d, await below(d.digest, depth + 1)) for d in descriptors]

    grouped: dict[str, list[Referrer]] = {}
    for node in await below(subject, 1):
        kind = node.descriptor.artifact_type or node.descriptor.media_type
        grouped.setdefault(kind, []).append(node)
    return dict(sorted(grouped.items()))
