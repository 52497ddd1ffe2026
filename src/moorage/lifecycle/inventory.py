"""What one repository holds in storage, read in a few listings rather than a request per link:
its layer links, manifest revisions, tags, tag histories and referrers index entries, each a link
file with its time. A link directory without its link file (what distribution's deletes leave)
holds nothing. Checking a root (fsck) and collecting its garbage (gc) both start from this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moorage.registry.blobs import child_names
from moorage.registry.digest import Digest
from moorage.storage import paths
from moorage.storage.driver import StorageDriver


@dataclass(frozen=True)
class LinkFile:
    path: str
    modified: float  # seconds since the epoch


@dataclass
class Inventory:
    name: str
    layers: dict[Digest, LinkFile] = field(default_factory=dict)  # _layers/<alg>/<hex>/link
    revisions: dict[Digest, LinkFile] = field(default_factory=dict)
    tags: dict[str, LinkFile] = field(default_factory=dict)  # tag -> its current/link
    # manifest -> its entries in tags' histories (_manifests/tags/<tag>/index/<alg>/<hex>/link)
    history: dict[Digest, list[LinkFile]] = field(default_factory=dict)
    # (subject, referrer) -> the referrers index entry
    referrers: dict[tuple[Digest, Digest], LinkFile] = field(default_factory=dict)
    uploads: list[str] = field(default_factory=list)  # upload session ids


def _digest(algorithm: str, hex_: str) -> Digest | None:
    return Digest.parse_or_none(f"{algorithm}:{hex_}")


async def inventory(driver: StorageDriver, name: str) -> Inventory:
    """Raises StorageError when storage fails."""
    found = Inventory(name)
    layers = paths.layers(name)
    async for info in driver.walk(layers):
        parts = info.path[len(layers) + 1 :].split("/")
        if len(parts) == 3 and parts[2] == "link" and (digest := _digest(*parts[:2])):
            found.layers[digest] = LinkFile(info.path, info.modified)
    manifests = paths.manifests(name)
    async for info in driver.walk(manifests):
        parts = info.path[len(manifests) + 1 :].split("/")
        link = LinkFile(info.path, info.modified)
        if parts[-1] != "link":
            continue
        if len(parts) == 4 and parts[0] == "revisions" and (digest := _digest(*parts[1:3])):
            found.revisions[digest] = link
        elif len(parts) == 4 and parts[0] == "tags" and parts[2] == "current":
            found.tags[parts[1]] = link
        elif (
            len(parts) == 6
            and parts[0] == "tags"
            and parts[2] == "index"
            and (digest := _digest(*parts[3:5]))
        ):
            found.history.setdefault(digest, []).append(link)
    referrers = paths.referrer_subjects(name)
    async for info in driver.walk(referrers):
        parts = info.path[len(referrers) + 1 :].split("/")
        if len(parts) == 5 and parts[4] == "link":
            subject, referrer = _digest(*parts[:2]), _digest(*parts[2:4])
            if subject and referrer:
                found.referrers[(subject, referrer)] = LinkFile(info.path, info.modified)
    found.uploads = await child_names(driver, paths.uploads(name))
    return found
