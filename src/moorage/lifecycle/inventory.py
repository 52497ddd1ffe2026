"""What one repository holds in storage, read in a few listings rather than a request per link:
its layer links, manifest revisions and, when asked, its tags, tag histories, referrers index
entries, manifests' pull records and upload sessions. Checking a root (fsck) and collecting its
garbage (gc) both start from this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moorage.registry.blobs import child_names, digests_below
from moorage.registry.digest import Digest
from moorage.storage import paths
from moorage.storage.driver import StorageDriver


@dataclass
class Inventory:
    name: str
    # the `_layers/<alg>/<hex>` directories: a directory may have lost its link file (what a
    # blob delete by distribution leaves), which holds nothing
    layers: list[Digest] = field(default_factory=list)
    # revision -> its link file; a revision directory without one (a manifest deleted by
    # distribution) is no revision
    revisions: dict[Digest, str] = field(default_factory=dict)
    # the rest only with `everything`
    tags: dict[str, str] = field(default_factory=dict)  # tag -> its current/link
    # manifest -> its entries in tags' histories (_manifests/tags/<tag>/index/<alg>/<hex>/link)
    history: dict[Digest, list[str]] = field(default_factory=dict)
    # (subject, referrer) -> the referrers index entry's link
    referrers: dict[tuple[Digest, Digest], str] = field(default_factory=dict)
    # manifest -> its pull record (_pulls/manifests/<alg>/<hex>) and the record's time
    pulls: dict[Digest, tuple[str, float]] = field(default_factory=dict)
    uploads: list[str] = field(default_factory=list)  # upload session ids


def _digest(algorithm: str, hex_: str) -> Digest | None:
    return Digest.parse_or_none(f"{algorithm}:{hex_}")


async def inventory(driver: StorageDriver, name: str, *, everything: bool = True) -> Inventory:
    """Raises StorageError when storage fails."""
    found = Inventory(name, layers=await digests_below(driver, paths.layers(name)))
    revisions = paths.manifest_revisions(name)
    for algorithm in await child_names(driver, revisions):
        async for info in driver.files_named(f"{revisions}/{algorithm}", "link"):
            digest = _digest(algorithm, info.path.rsplit("/", 2)[1])
            if digest is not None:
                found.revisions[digest] = info.path
    if not everything:
        return found
    tags = paths.tags(name)
    async for info in driver.walk(tags):
        parts = info.path[len(tags) + 1 :].split("/")
        if len(parts) == 3 and parts[1:] == ["current", "link"]:
            found.tags[parts[0]] = info.path
        elif len(parts) == 5 and parts[1:2] + parts[4:] == ["index", "link"]:
            digest = _digest(*parts[2:4])
            if digest is not None:
                found.history.setdefault(digest, []).append(info.path)
    referrers = paths.referrer_subjects(name)
    async for info in driver.walk(referrers):
        parts = info.path[len(referrers) + 1 :].split("/")
        if len(parts) == 5 and parts[4] == "link":
            subject, referrer = _digest(*parts[:2]), _digest(*parts[2:4])
            if subject and referrer:
                found.referrers[(subject, referrer)] = info.path
    pulls = paths.manifest_pulls(name)
    async for info in driver.walk(pulls):
        parts = info.path[len(pulls) + 1 :].split("/")
        if len(parts) == 2 and (digest := _digest(*parts)) is not None:
            found.pulls[digest] = (info.path, info.modified)
    found.uploads = await child_names(driver, paths.uploads(name))
    return found
