"""Usage end to end: images pushed and copied with skopeo, then `moorage usage` (computed from
storage), the usage route and /metrics (from the servers' scheduled computation) checked
against the sizes of what was pushed: on the filesystem with two workers, on S3 (SeaweedFS)
with two replicas sharing Redis, and the route under the built-in token server's ACL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.images import Image, digest_of
from tests.integration.auth_support import SERVICE, builtin_section, htpasswd_file
from tests.integration.lifecycle_support import (
    HTTP_TIMEOUT,
    KiB,
    Registry,
    blob_sizes,
    cli_usage,
    filesystem_registry,
    image_with,
    lifecycle_sections,
    metric,
    moorage_cli,
    push,
    random_layer,
    s3_replicas,
    sample,
    skopeo,
    usage_figures,
    usage_route,
    wait_for,
)
from tests.servers import RedisServer, S3Server, moorage_config, run_moorage

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]


def expected(linked: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Usage as its definition has it, from what each repository links (digest -> size)."""
    holders: dict[str, set[str]] = {}
    sizes: dict[str, int] = {}
    for name, blobs in linked.items():
        for digest, size in blobs.items():
            holders.setdefault(digest, set()).add(name)
            sizes[digest] = size
    repositories = {}
    for name, blobs in sorted(linked.items()):
        shared = sum(size for digest, size in blobs.items() if len(holders[digest]) > 1)
        exclusive = sum(blobs.values()) - shared
        repositories[name] = (exclusive, shared, exclusive + shared)
    return {"repositories": repositories, "total": sum(sizes.values())}


def as_json(figures: dict[str, Any]) -> dict[str, Any]:
    """The same figures in `moorage usage --json`'s shape."""
    return {
        "repositories": [
            {"name": name, "exclusive": e, "shared": s, "total": t}
            for name, (e, s, t) in figures["repositories"].items()
        ],
        "total": figures["total"],
    }


def two_images(tmp_path: Path) -> tuple[Image, Image]:
    """Two images sharing their first layer."""
    base = random_layer(384 * KiB, "base.bin")
    return (
        image_with(tmp_path, "a", [base, random_layer(200 * KiB)]),
        image_with(tmp_path, "b", [base, random_layer(100 * KiB)]),
    )


def push_and_copy(registry: Registry, first: Image, second: Image) -> dict[str, Any]:
    """Pushes both images and copies the first to a third repository (skopeo mounts its blobs);
    returns the usage that must follow."""
    push(first, registry.host, "team/a:v1")
    push(second, registry.host, "team/b:v1")
    skopeo(
        "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
        f"docker://{registry.host}/team/a:v1", f"docker://{registry.host}/team/copy:v1",
    )  # fmt: skip
    return expected(
        {"team/a": blob_sizes(first), "team/b": blob_sizes(second), "team/copy": blob_sizes(first)}
    )


def check_served(registry: Registry, url: str, debug: str, figures: dict[str, Any]) -> None:
    """The usage route and /metrics of one server come to the figures (once computed)."""
    wait_for(f"{url}'s usage route", lambda: usage_figures(url) == figures)
    # each worker answering /metrics reads the computing worker's figures within a second
    wait_for(f"{debug}'s usage metrics", lambda: metered(debug, figures) == figures)
    assert metric(debug, "moorage_usage_computed_timestamp_seconds")


def metered(debug: str, figures: dict[str, Any]) -> dict[str, Any]:
    """The figures as one /metrics scrape gives them, for the repositories `figures` names."""
    text = requests.get(f"{debug}/metrics", timeout=HTTP_TIMEOUT).text
    return {
        "repositories": {
            name: tuple(
                sample(text, f"moorage_repository_{kind}_bytes", repository=name)
                for kind in ("exclusive", "shared", "total")
            )
            for name in figures["repositories"]
        },
        "total": sample(text, "moorage_registry_bytes"),
    }


def test_usage_on_the_filesystem_with_two_workers(tmp_path: Path) -> None:
    first, second = two_images(tmp_path)
    with filesystem_registry(tmp_path / "fs", maintenance=lifecycle_sections()) as registry:
        figures = push_and_copy(registry, first, second)
        # every blob of team/a is in team/copy too: it holds nothing alone
        assert figures["repositories"]["team/a"][0] == 0
        assert cli_usage(registry.config) == as_json(figures)
        assert cli_usage(registry.config, "team/b") == {
            "repositories": as_json(figures)["repositories"][1:2],
            "total": figures["total"],
        }
        check_served(registry, registry.url, registry.debug[0], figures)
        # whichever worker answers, the same figures
        for _ in range(8):
            assert usage_figures(registry.url) == figures
        registry.no_errors()

    table = moorage_cli("usage", str(registry.config))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "EXCLUSIVE", "SHARED", "TOTAL"]
    assert [line.split()[0] for line in lines[1:4]] == ["team/a", "team/b", "team/copy"]
    assert lines[-1].startswith("registry total: ")
    assert lines[-1].endswith(f"({figures['total']} bytes)")

    missing = moorage_cli("usage", str(registry.config), "team/a", "team/nothing", "--json")
    assert missing.returncode == 1
    assert missing.stderr == "moorage usage: no repository named team/nothing\n"
    bad = moorage_cli("usage", str(registry.config), "Team/A")
    assert bad.returncode == 2
    assert bad.stderr.startswith("moorage usage: 'Team/A' is no repository name")
    assert len(bad.stderr.splitlines()) == 1


def test_usage_on_s3_with_two_replicas(
    tmp_path: Path, s3_store: S3Server, redis_server: RedisServer
) -> None:
    first, second = two_images(tmp_path)
    maintenance = lifecycle_sections()
    with s3_replicas(
        tmp_path, s3_store, redis_server, "usage", 6, maintenance=maintenance
    ) as registry:
        figures = push_and_copy(registry, first, second)
        assert cli_usage(registry.config) == as_json(figures)
        for server, debug in zip(registry.servers, registry.debug, strict=True):
            check_served(registry, server.url, debug, figures)
        registry.no_errors()


PASSWORDS = {"alice": "alice-pw", "admin": "admin-pw"}
ACL = {
    "rules": [
        {"who": ["alice"], "repos": ["team/*"], "actions": ["pull", "push"]},
        {"who": ["admin"], "repos": ["*"], "actions": ["*"]},
    ]
}


def test_usage_route_shows_what_the_catalog_shows(tmp_path: Path) -> None:
    users = htpasswd_file(tmp_path / "users", PASSWORDS)
    acl = tmp_path / "acl.yml"
    acl.write_text(yaml.safe_dump(ACL))
    auth = builtin_section(users, acl, tmp_path / "keys" / "token.key")
    config = moorage_config(tmp_path / "data", 0, auth=auth)
    config["storage"]["maintenance"] = lifecycle_sections()
    with run_moorage(tmp_path / "moorage", config) as server:
        realm = f"{server.url}/auth/token"

        def token(user: str, *scopes: str) -> dict[str, str]:
            answer = requests.get(
                realm,
                params={"service": SERVICE, "scope": list(scopes)},
                auth=(user, PASSWORDS[user]),
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            return {"Authorization": f"Bearer {answer.json()['token']}"}

        pushing = token("admin", "repository:team/app:pull,push", "repository:other/app:pull,push")
        for name, data in (("team/app", b"x" * 1000), ("other/app", b"y" * 3000)):
            response = requests.post(
                f"{server.url}/v2/{name}/blobs/uploads/",
                params={"digest": digest_of(data)},
                data=data,
                headers=pushing,
                timeout=30,
            )
            assert response.status_code == 201, response.text

        anonymous = usage_route(server.url)
        assert anonymous.status_code == 401
        assert 'scope="registry:catalog:*"' in anonymous.headers["WWW-Authenticate"]

        admin = token("admin", "registry:catalog:*")
        everything = {
            "repositories": [
                {"name": "other/app", "exclusive": 3000, "shared": 0, "total": 3000, "quota": None},
                {"name": "team/app", "exclusive": 1000, "shared": 0, "total": 1000, "quota": None},
            ],
            "total": 4000,
        }

        def seen(headers: dict[str, str]) -> dict[str, Any]:
            answer = usage_route(server.url, headers=headers)
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            assert body.pop("computed").endswith("Z") and body.pop("duration") >= 0
            return body

        wait_for("the usage of both repositories", lambda: seen(admin) == everything)
        # alice may pull team/* only: she sees team/app, and no registry total
        assert seen(token("alice", "registry:catalog:*")) == {
            "repositories": everything["repositories"][1:],
            "total": None,
        }
        # a token without the catalog scope is not enough
        refused = usage_route(server.url, headers=token("alice", "repository:team/app:pull"))
        assert refused.status_code == 401

