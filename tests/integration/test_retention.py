"""Retention end to end: tags pushed with skopeo and some pulled (by skopeo and by plain GETs, the
pulls recorded in storage with a handful of writes however many there are), then `moorage
retention plan` saying what would be untagged and by which rule, a dry run only logging it,
and the server untagging what no rule keeps right before each scheduled garbage collection,
which then removes what the untagging released: on the filesystem with two workers and on S3
(SeaweedFS) with two replicas sharing Redis."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.images import OCI_MANIFEST, Image, make_image
from tests.integration.lifecycle_support import (
    Registry,
    filesystem_registry,
    lifecycle_sections,
    moorage_cli,
    push,
    replicas_on,
    skopeo,
    storage_writes,
    tags,
    wait_for,
)
from tests.integration.s3_support import bucket, list_objects
from tests.servers import RedisServer, S3Server

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]

PULLS = 40  # manifest GETs of one tag
# Each process writes a pull record at most once per pull interval: a burst of pulls shorter
# than the interval costs each process two writes at most (one if it misses the interval's
# edge), whatever its length.
MOST_WRITES = 2 * 2  # two processes


def retention(*, dryrun: bool = False, **policy: Any) -> dict[str, Any]:
    return {
        "pullinterval": "5s",
        "dryrun": dryrun,
        "policies": [{"repositories": ["team/*"], **policy}],
    }


def scheduled(policies: dict[str, Any], interval: str, **gc: Any) -> dict[str, Any]:
    """`storage.maintenance` with the policies applied before a garbage collection every
    `interval` (with the default delay of an hour, the collection removes nothing the tests
    pushed)."""
    return lifecycle_sections(retention=policies, gc={"enabled": True, "interval": interval, **gc})


def images(tmp_path: Path, names: list[str]) -> dict[str, Image]:
    """A small image of its own per tag."""
    return {
        name: make_image(tmp_path / f"layout-{name}", "v1", seed=name) for name in names
    }


def push_tags(registry: Registry, built: dict[str, Image], *, apart: float = 0.0) -> None:
    """Pushes each image as team/app:<its name>, in order, `apart` seconds apart (S3 keeps
    modification times to the second)."""
    for name, image in built.items():
        push(image, registry.host, f"team/app:{name}")
        time.sleep(apart)


def pull(registry: Registry, tag: str, out: Path) -> None:
    """Pulls team/app:tag with skopeo twice, and its manifest PULLS times more by GET."""
    for attempt in range(2):
        skopeo(
            "copy", "--quiet", "--src-tls-verify=false",
            f"docker://{registry.host}/team/app:{tag}", f"oci:{out}-{attempt}:pulled",
        )  # fmt: skip
    for _ in range(PULLS):
        answer = requests.get(
            f"{registry.url}/v2/team/app/manifests/{tag}",
            headers={"Accept": OCI_MANIFEST},
            timeout=30,
        )
        assert answer.status_code == 200


def writes(registry: Registry) -> float:
    return sum(storage_writes(debug) for debug in registry.debug)


def plan(registry: Registry, *flags: str) -> list[str]:
    result = moorage_cli("retention", "plan", str(registry.config), *flags)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


KEEP = {
    "keeptags": [
        {"patterns": ["^v"], "mostrecentlypushedcount": 2},
        {"patterns": ["^stable$"]},
        {"patterns": ["^dev-"], "mostrecentlypulledcount": 1},
    ]
}


def test_retention_on_the_filesystem_with_two_workers(tmp_path: Path) -> None:
    root = tmp_path / "data"
    built = images(tmp_path, ["v1", "v2", "v3", "stable", "dev-a", "dev-b"])
    waiting = scheduled(retention(**KEEP), "1h")
    with filesystem_registry(tmp_path / "first", root=root, maintenance=waiting) as registry:
        push_tags(registry, built)
        push(built["v1"], registry.host, "other/app:v1")  # no policy covers other/*
        before = writes(registry)
        pull(registry, "dev-a", tmp_path / "pulled")
        record = root / "docker/registry/v2/repositories/team/app/_pulls/tags/dev-a"
        wait_for("the pull record of dev-a", record.exists)
        assert writes(registry) - before <= MOST_WRITES
        registry.no_errors()

    lines = plan(registry)
    untag = [line for line in lines if line.startswith("untag ")]
    assert [line.split()[1] for line in untag] == ["team/app:dev-b", "team/app:v1"]
    digest = built["v1"].manifest_digest
    assert untag[1].startswith(f"untag team/app:v1 {digest} (pushed 20")
    assert untag[1].endswith(
        ", pulled never): policy 0 (repositories team/*): "
        "matches keeptags[0] but meets none of their conditions"
    )
    assert lines[-1] == "would untag 2 of 6 tags in 1 repository"
    verbose = plan(registry, "--verbose")
    kept = {line.split()[1]: line for line in verbose if line.startswith("keep ")}
    assert sorted(kept) == ["team/app:dev-a", "team/app:stable", "team/app:v2", "team/app:v3"]
    assert kept["team/app:dev-a"].endswith("kept by keeptags[2]: mostrecentlypulledcount 1")
    assert "pulled 20" in kept["team/app:dev-a"]
    assert kept["team/app:v3"].endswith("kept by keeptags[0]: mostrecentlypushedcount 2")
    assert kept["team/app:stable"].endswith("kept by keeptags[1]: its patterns")

    everything = ["dev-a", "dev-b", "stable", "v1", "v2", "v3"]
    dry = scheduled(retention(dryrun=True, **KEEP), "1s")
    with filesystem_registry(tmp_path / "dry", root=root, maintenance=dry) as registry:
        wait_for("the dry run", lambda: "retention would untag team/app:v1 " in registry.logs())
        assert tags(registry.url, "team/app") == everything

    enforcing = scheduled(retention(**KEEP), "1s")
    with filesystem_registry(tmp_path / "enforced", root=root, maintenance=enforcing) as registry:
        remaining = ["dev-a", "stable", "v2", "v3"]
        wait_for("the untagging", lambda: tags(registry.url, "team/app") == remaining)
        assert "retention: untag team/app:dev-b " in registry.logs()
        assert tags(registry.url, "other/app") == ["v1"]
        # untagged, not deleted: the collector removes what no tag keeps
        by_digest = requests.get(
            f"{registry.url}/v2/team/app/manifests/{digest}",
            headers={"Accept": OCI_MANIFEST},
            timeout=30,
        )
        assert by_digest.status_code == 200
        registry.no_errors()


def test_retention_on_s3_with_two_replicas(
    tmp_path: Path, s3_store: S3Server, redis_server: RedisServer
) -> None:
    built = images(tmp_path, ["v1", "v2", "v3"])
    keep = {"keeptags": [{"mostrecentlypushedcount": 1, "mostrecentlypulledcount": 1}]}

    def replicas(workdir: str, interval: str) -> Any:
        maintenance = scheduled(retention(**keep), interval)
        return replicas_on(
            tmp_path / workdir, s3_store, redis_server, "retention", 8, maintenance=maintenance
        )

    with bucket(s3_store, "retention"):
        with replicas("first", "1h") as registry:
            push_tags(registry, built, apart=1.1)
            before = writes(registry)
            pull(registry, "v1", tmp_path / "pulled")  # through both replicas
            key = "registryv2/docker/registry/v2/repositories/team/app/_pulls/tags/v1"
            wait_for(
                "the pull record of v1",
                lambda: asyncio.run(list_objects(s3_store, "retention", key)),
            )
            assert writes(registry) - before <= MOST_WRITES
            registry.no_errors()

        lines = plan(registry)
        assert [line.split()[1] for line in lines if line.startswith("untag ")] == [
            "team/app:v2"
        ]

        with replicas("second", "1s") as registry:
            wait_for("the untagging", lambda: tags(registry.url, "team/app") == ["v1", "v3"])
            for server in registry.servers:
                assert tags(server.url, "team/app") == ["v1", "v3"]
            registry.no_errors()


def test_the_collection_removes_what_retention_untagged_before_it(tmp_path: Path) -> None:
    """A policy with `deleteuntagged` (the collection's own setting off): the image retention
    untags goes in the same scheduled run, manifest, blobs and pull record; the kept one is
    pulled whole afterwards."""
    root = tmp_path / "data"
    built = images(tmp_path, ["v1", "v2"])
    policy = retention(deleteuntagged=True, keeptags=[{"mostrecentlypushedcount": 1}])
    old = built["v1"]
    repository = root / "docker/registry/v2/repositories/team/app"
    record = repository / f"_pulls/manifests/sha256/{old.manifest_digest.split(':')[1]}"
    with filesystem_registry(
        tmp_path / "first", root=root, maintenance=scheduled(policy, "1h")
    ) as registry:
        push_tags(registry, built)
        by_digest = f"{registry.url}/v2/team/app/manifests/{old.manifest_digest}"
        answer = requests.get(by_digest, headers={"Accept": OCI_MANIFEST}, timeout=30)
        assert answer.status_code == 200
        wait_for("the pull record of v1's manifest", record.exists)
        registry.no_errors()

    collecting = scheduled(policy, "1s", delay="1s")
    with filesystem_registry(tmp_path / "second", root=root, maintenance=collecting) as registry:
        # watched in storage: a GET by digest would mark the manifest as in use
        revision = repository / f"_manifests/revisions/sha256/{old.manifest_digest[7:]}"
        wait_for("v1's manifest to be collected", lambda: not revision.exists())
        assert tags(registry.url, "team/app") == ["v2"]
        by_digest = f"{registry.url}/v2/team/app/manifests/{old.manifest_digest}"
        answer = requests.get(by_digest, headers={"Accept": OCI_MANIFEST}, timeout=30)
        assert answer.status_code == 404
        assert not record.exists()
        blobs = root / "docker/registry/v2/blobs/sha256"
        swept = [blobs / d[7:9] / d[7:] for d in [old.config_digest, *old.layer_digests]]
        wait_for("v1's blobs to be swept", lambda: not any(path.exists() for path in swept))
        skopeo(
            "copy", "--quiet", "--src-tls-verify=false",
            f"docker://{registry.host}/team/app:v2", f"oci:{tmp_path / 'pulled'}:v2",
        )  # fmt: skip
        assert "retention: untag team/app:v1 " in registry.logs()
        registry.no_errors()
