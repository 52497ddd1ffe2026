"""Quotas end to end with skopeo: a push that fits goes through, one that would take its
repository over its quota fails with the DENIED message naming the quota, and a copy that
mounts blobs already in the registry is charged for them; on the filesystem with two workers,
and on S3 (SeaweedFS) with two replicas sharing Redis, where the usage each checks against is
the one its last computation saw."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.images import digest_of
from tests.integration.lifecycle_support import (
    KiB,
    Registry,
    blob_sizes,
    cli_usage,
    filesystem_registry,
    image_with,
    lifecycle_sections,
    moorage_cli,
    push,
    random_layer,
    s3_replicas,
    skopeo,
    usage_figures,
    wait_for,
)
from tests.servers import RedisServer, S3Server

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]

QUOTAS = {"default": "2MiB", "repositories": {"team/*": "1MiB", "team/big/*": "8MiB"}}


def computed(registry: Registry, url: str, name: str, total: int) -> None:
    """Waits until the server behind `url` counts `total` bytes in the repository."""
    wait_for(
        f"{name} at {total} bytes",
        lambda: usage_figures(url)["repositories"].get(name, (0, 0, 0))[2] == total,
    )


def scenario(tmp_path: Path, registry: Registry, urls: list[str]) -> None:
    """Pushes and refusals that read the same on any registry shape; `urls` reach each process
    group whose computed usage the pushes are checked against."""
    small = image_with(tmp_path, "small", [random_layer(400 * KiB)])
    small_total = sum(blob_sizes(small).values())
    push(small, registry.host, "team/app:v1")
    for url in urls:  # every worker or replica has seen the push before the next
        computed(registry, url, "team/app", small_total)

    # A second image of 700 KiB would take team/app over its 1 MiB: refused, by name.
    large = image_with(tmp_path, "large", [random_layer(700 * KiB)])
    refusal = push(large, registry.host, "team/app:v2", check=False)
    assert "denied" in refusal.lower(), refusal
    assert "over its quota of 1.0 MiB" in refusal, refusal
    assert "(storage.quotas.repositories[team/*])" in refusal, refusal
    assert "would take it to" in refusal, refusal
    # The same image fits where the longest matching glob allows more, and under the default.
    push(large, registry.host, "team/big/app:v1")
    push(large, registry.host, "elsewhere:v1")

    # A copy mounts blobs the registry holds: the target pays for them all the same.
    copied = skopeo(
        "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
        f"docker://{registry.host}/team/big/app:v1", f"docker://{registry.host}/team/app:v3",
        check=False,
    )  # fmt: skip
    assert copied.returncode != 0
    assert "denied" in copied.stderr.lower(), copied.stderr
    assert "to team/app would take it to" in copied.stderr, copied.stderr
    # refused at the mount (a POST: skopeo pushes its uploads with POST, PATCH, PUT), and again
    # at the upload skopeo falls back to
    assert "POST /v2/team/app/blobs/uploads/ 403 " in registry.logs()

    # The refusal on the wire: 403 with the DENIED code; nothing of the refused blob is kept.
    data = b"z" * (900 * KiB)
    answer = requests.post(
        f"http://{registry.host}/v2/team/app/blobs/uploads/",
        params={"digest": digest_of(data)},
        data=data,
        timeout=30,
    )
    assert answer.status_code == 403, answer.text
    (error,) = answer.json()["errors"]
    assert error["code"] == "DENIED"
    assert error["detail"]["quota"] == 1024 * KiB
    assert error["detail"]["adding"] == len(data)
    head = requests.head(
        f"http://{registry.host}/v2/team/app/blobs/{digest_of(data)}", timeout=30
    )
    assert head.status_code == 404

    usage = {entry["name"]: entry["total"] for entry in cli_usage(registry.config)["repositories"]}
    assert usage["team/app"] <= 1024 * KiB  # the refused layer never landed
    assert usage["team/big/app"] == usage["elsewhere"] == sum(blob_sizes(large).values())


def test_quotas_on_the_filesystem_with_two_workers(tmp_path: Path) -> None:
    with filesystem_registry(
        tmp_path / "fs", quotas=QUOTAS, maintenance=lifecycle_sections()
    ) as registry:
        scenario(tmp_path, registry, [registry.url])
        registry.no_errors()


def test_quotas_on_s3_with_two_replicas(
    tmp_path: Path, s3_store: S3Server, redis_server: RedisServer
) -> None:
    with s3_replicas(
        tmp_path, s3_store, redis_server, "quotas", 7, quotas=QUOTAS,
        maintenance=lifecycle_sections(),
    ) as registry:  # fmt: skip
        scenario(tmp_path, registry, [server.url for server in registry.servers])
        registry.no_errors()


def test_a_bad_quota_fails_at_start_naming_its_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        json.dumps(
            {
                "version": "0.1",
                "storage": {
                    "filesystem": {"rootdirectory": str(tmp_path / "data")},
                    "quotas": {"repositories": {"team/*": "lots"}},
                },
            }
        )
    )
    result = moorage_cli("config", "check", str(config))
    assert result.returncode == 1
    assert result.stderr.startswith(
        "moorage: config: storage.quotas.repositories.team/*: invalid size 'lots'"
    ), result.stderr
