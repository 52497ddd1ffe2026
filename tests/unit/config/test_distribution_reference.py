"""distribution's own configuration reference, as the `docker-registry` package installs it
(distribution 2.8's `configuration.md`): every example in it, read at test time, either passes
`moorage config check` with each of its keys kept in the effective config, or is refused one
line per key, naming the key path. Nothing is dropped without a word."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from moorage.cli.main import main
from moorage.config.schema import STORAGE_SETTINGS

REFERENCE = Path("/usr/share/doc/docker-registry/configuration.md.gz")
# Fragments the reference shows on their own, and the section each belongs in.
PARENTS = {"accesslog": "log", "hooks": "log", "delete": "storage", "redirect": "storage"}
PARENTS |= {"pool": "redis"}

# What moorage refuses in the reference's examples, by key path. Besides what it does not do
# (swift, oss, registry and repository middleware, cloudfront on another driver than s3,
# schema 1, mail hooks, several access controllers at once), the examples hold placeholders no
# registry takes (`<http.Header>`, `[username]`) and files that do not exist on this machine.
REFUSED = {
    "storage.driver",  # swift, oss
    "storage.gcs.keyfile",  # /path/to/keyfile
    "middleware.registry",
    "middleware.repository",
    "middleware.storage.0",  # cloudfront on a driver that is not s3
    "compatibility.schema1",
    "log.hooks.0",  # a mail hook not disabled
    "auth",  # silly, token and htpasswd at once
    "notifications.endpoints.0.headers",  # <http.Header>
    "proxy.username",  # [username]
    "proxy.password",  # [password]
    "http.tls.certificate",  # /path/to/x509/public
}


def examples() -> list[dict[str, Any]]:
    if not REFERENCE.exists():
        pytest.fail("distribution's reference is missing: apt-get install -y docker-registry")
    with gzip.open(REFERENCE, "rt", encoding="utf-8") as file:
        text = file.read()
    blocks = [yaml.safe_load(b) for b in re.findall(r"^```none\n(.*?)^```", text, re.S | re.M)]
    found = []
    for block in blocks:
        if not isinstance(block, dict):
            continue  # shell lines and prose
        for key in list(block):
            if key in PARENTS:
                block = {PARENTS[key]: {key: block.pop(key)}, **block}
        found.append(block)
    assert len(found) > 15, "the reference's examples were not found"
    return found


def configs(block: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The example as a whole config: a version, a secret, in-memory storage when it names
    none, and one config per storage driver where it lists several as alternatives."""
    config = {"version": "0.1", "storage": {"inmemory": {}}, **block}
    http = config.setdefault("http", {})
    if isinstance(http, dict):
        http.setdefault("secret", "a-shared-secret")
    storage = config["storage"]
    settings = {key: value for key, value in storage.items() if key in STORAGE_SETTINGS}
    drivers = [key for key in storage if key not in STORAGE_SETTINGS] or ["inmemory"]
    for driver in drivers:
        yield {**config, "storage": {driver: storage.get(driver) or {}, **settings}}


def key_paths(tree: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = f"{prefix}{key}"
            yield path
            yield from key_paths(value, path + ".")
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from key_paths(value, f"{prefix}{index}.")


def test_every_reference_example_is_kept_or_refused_key_by_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused: set[str] = set()
    started = 0
    for block in examples():
        for config in configs(block):
            path = tmp_path / "config.yml"
            path.write_text(yaml.safe_dump(config))
            path.chmod(0o600)
            try:
                code = main(["config", "check", str(path)])
            except SystemExit as exc:
                code = int(exc.code or 0)
            out, err = capsys.readouterr()
            problems = [line for line in err.splitlines() if line.startswith("moorage: config:")]
            if code == 0:
                started += 1
                shown = set(key_paths(yaml.safe_load(out)))
                dropped = set(key_paths(config)) - shown
                assert not dropped, f"silently dropped: {sorted(dropped)}"
                continue
            assert problems, err
            for problem in problems:
                key = problem.removeprefix("moorage: config: ").split(":")[0]
                # the redactor masks a key path that spells a placeholder secret's value
                refused.add(key.replace("********", "password"))
                assert key.split(".")[0] in config, problem
    assert refused == REFUSED
    assert started >= 10
