"""The storage layout, in one place: every key the registry reads or writes comes from here.

The tree is distribution's (CNCF registry 2.x), so a root written by either registry is served by
the other. Below the driver's root:

    /docker/registry/v2/
        blobs/<alg>/<hex[:2]>/<hex>/data                 blob content, shared by all repositories
        repositories/<name>/                             <name> may hold slashes: library/alpine
            _layers/<alg>/<hex>/link                     the blob is part of this repository
            _manifests/revisions/<alg>/<hex>/link        the manifest exists in this repository
            _manifests/tags/<tag>/current/link           what the tag points at now
            _manifests/tags/<tag>/index/<alg>/<hex>/link every manifest the tag has pointed at
            _uploads/<id>/data                           bytes received so far
            _uploads/<id>/startedat                      RFC 3339 start time
            _uploads/<id>/hashstates/<alg>/<offset>      the running digest after <offset> bytes, in
                                                         Go's encoding (registry/hashstate.py)
            _referrers/<alg>/<hex>/<alg>/<hex>/link      moorage's: a manifest whose subject is the
                                                         first digest (distribution 2.x has none)
            _pulls/tags/<tag>                            moorage's: the tag was pulled by then (the
                                                         file's modification time)
            _pulls/manifests/<alg>/<hex>                 moorage's: the manifest was pulled by
                                                         digest by then (its modification time)
            _proxy/<alg>/<hex>/fetched                   moorage's: when a pull-through cache
                                                         fetched this blob or manifest from its
                                                         upstream (the file's time; an RFC 3339
                                                         text in it), for expiry (moorage.proxy)
        _gc/lock                                         moorage's: locked by the garbage collection
                                                         running on this root (a filesystem root)
        _gc/sweeps/<id>                                  moorage's: the digests a collection is
                                                         deleting now, one a line (lifecycle/gc)

A link file holds, with no trailing newline, the digest the content is stored under: the one its
path names, except for a blob pushed under another algorithm than CONTENT_ALGORITHM (sha512).
As distribution does, that blob's content is stored under its sha256, and its `_layers` links
under both digests hold the sha256. Directories whose name starts with `_` are never repository
path components, which is what keeps `<name>` and the registry's own keys apart; distribution
passes over the ones it does not know (`_referrers`, `_pulls`).

A tag's push time is its `current/link`'s modification time: every push of the tag rewrites
that file. A pull record holds the time as RFC 3339 text too, for people; readers take the
modification time, which a walk lists without reading the file.
"""

from __future__ import annotations

from moorage.registry.digest import Digest

ROOT = "/docker/registry/v2"
# distribution's pull-through cache keeps its expiry schedule here, beside ROOT: a JSON object of
# {"Key": "<name>@<digest>", "ExpiryData": <time>, "EntryType": 0 (blob) or 1 (manifest)}
DISTRIBUTION_PROXY_SCHEDULE = "/scheduler-state.json"
REPOSITORIES = f"{ROOT}/repositories"
BLOBS = f"{ROOT}/blobs"
# The child directory that makes a directory below REPOSITORIES a repository.
REPOSITORY_MARKER = "_layers"
MANIFESTS_MARKER = "_manifests"  # a repository's manifests and tags
UPLOADS_MARKER = "_uploads"  # a repository's upload sessions
PROXY_MARKER = "_proxy"  # what a pull-through cache fetched into a repository, and when
CONTENT_ALGORITHM = "sha256"  # blob content is stored under its digest in this algorithm
GC = f"{ROOT}/_gc"
GC_LOCK = f"{GC}/lock"
SWEEPS = f"{GC}/sweeps"


def blob_algorithm(algorithm: str) -> str:
    """The blobs stored under digests of one algorithm: `<hex[:2]>` shards below."""
    return f"{BLOBS}/{algorithm}"


def blob_shard(algorithm: str, prefix: str) -> str:
    """The blobs whose hex digest starts with `prefix` (two characters)."""
    return f"{BLOBS}/{algorithm}/{prefix}"


def blob_dir(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"


def blob_data(digest: Digest) -> str:
    return f"{blob_dir(digest)}/data"


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layers(name: str) -> str:
    return f"{REPOSITORIES}/{name}/{REPOSITORY_MARKER}"


def layer_link(name: str, digest: Digest) -> str:
    return f"{layers(name)}/{digest.algorithm}/{digest.hex}/link"


def manifests(name: str) -> str:
    return f"{REPOSITORIES}/{name}/{MANIFESTS_MARKER}"


def manifest_revisions(name: str) -> str:
    return f"{manifests(name)}/revisions"


def manifest_revision_link(name: str, digest: Digest) -> str:
    return f"{manifest_revisions(name)}/{digest.algorithm}/{digest.hex}/link"


def tags(name: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/tags"


def tag_dir(name: str, tag: str) -> str:
    return f"{REPOSITORIES}/{name}/_manifests/tags/{tag}"


def tag_current_link(name: str, tag: str) -> str:
    return f"{tag_dir(name, tag)}/current/link"


def tag_index_link(name: str, tag: str, digest: Digest) -> str:
    return f"{tag_dir(name, tag)}/index/{digest.algorithm}/{digest.hex}/link"


def uploads(name: str) -> str:
    return f"{REPOSITORIES}/{name}/{UPLOADS_MARKER}"


def upload_dir(name: str, upload_id: str) -> str:
    return f"{uploads(name)}/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/data"


def upload_started_at(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/startedat"


def upload_hash_state(name: str, upload_id: str, algorithm: str, offset: int) -> str:
    return f"{upload_dir(name, upload_id)}/hashstates/{algorithm}/{offset}"


def referrer_subjects(name: str) -> str:
    """moorage's referrers index of a repository: one `<alg>/<hex>` directory per subject."""
    return f"{REPOSITORIES}/{name}/_referrers"


def referrers(name: str, subject: Digest) -> str:
    return f"{referrer_subjects(name)}/{subject.algorithm}/{subject.hex}"


def referrer_link(name: str, subject: Digest, referrer: Digest) -> str:
    return f"{referrers(name, subject)}/{referrer.algorithm}/{referrer.hex}/link"


def sweep(sweep_id: str) -> str:
    """One announcement of digests being deleted (see moorage.registry.sweeps)."""
    return f"{SWEEPS}/{sweep_id}"


def digest_of_blob_data(path: str) -> Digest | None:
    """The digest `blob_data` made `path` from; None for any other path."""
    head, _, name = path.rpartition("/")
    if name != "data" or not head.startswith(BLOBS + "/"):
        return None
    parts = head[len(BLOBS) + 1 :].split("/")
    if len(parts) != 3 or not parts[2].startswith(parts[1]):
        return None
    return Digest.parse_or_none(f"{parts[0]}:{parts[2]}")


def pulls(name: str) -> str:
    """moorage's pull records of a repository (`tags/`, `manifests/`)."""
    return f"{REPOSITORIES}/{name}/_pulls"


def tag_pull(name: str, tag: str) -> str:
    return f"{pulls(name)}/tags/{tag}"


def manifest_pulls(name: str) -> str:
    return f"{pulls(name)}/manifests"


def manifest_pull(name: str, digest: Digest) -> str:
    return f"{manifest_pulls(name)}/{digest.algorithm}/{digest.hex}"


def proxy_records(name: str) -> str:
    """What a pull-through cache fetched into a repository: one `<alg>/<hex>` directory per
    blob or manifest."""
    return f"{REPOSITORIES}/{name}/{PROXY_MARKER}"


def proxy_record(name: str, digest: Digest) -> str:
    return f"{proxy_records(name)}/{digest.algorithm}/{digest.hex}/fetched"
