"""The configs moorage ships (deploy/) and the config examples of the README pass
`moorage config check` without a problem or a warning; only the files they name are put in a
temporary directory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from moorage.cli.main import main
from moorage.config.schema import Config

REPOSITORY = Path(__file__).resolve().parents[3]
DEPLOYED = ["deploy/moorage.yml", "deploy/moorage/config.yml", "deploy/container/config.yml"]
# Absolute places the configs name, moved under the test's directory.
PLACES = ("/run/secrets/", "/etc/docker/registry/", "/var/lib/registry/", "/var/lib/moorage/")


def relocated(text: str, tmp_path: Path) -> str:
    for place in PLACES:
        text = text.replace(place, f"{tmp_path}{place}")
    return text


def provide_files(tree: Any, tmp_path: Path) -> None:
    """Makes the files the config reads (secrets, the ACL) and the directories of the others
    (data, keys, users) under tmp_path."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if isinstance(value, str) and value.startswith(str(tmp_path)):
                path = Path(value)
                path.parent.mkdir(parents=True, exist_ok=True)
                if key == "acl":
                    path.write_text("rules: []\n")
                elif key not in ("users", "signingkey", "rootdirectory", "directory"):
                    path.write_text("a-secret\n")
                path.parent.chmod(0o700)
                if path.exists():
                    path.chmod(0o600)
            else:
                provide_files(value, tmp_path)
    elif isinstance(tree, list):
        for value in tree:
            provide_files(value, tmp_path)


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path.chmod(0o600)
    try:
        code = main(["config", "check", str(path)])
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name", DEPLOYED)
def test_deployed_config_checks_clean(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "http-secret").write_text("a-secret\n")
    (credentials / "http-secret").chmod(0o600)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    text = relocated((REPOSITORY / name).read_text(), tmp_path)
    provide_files(yaml.safe_load(text), tmp_path)
    users = tmp_path / "etc/docker/registry/auth/users"
    if users.parent.exists():
        users.write_text("")
    path = tmp_path / "config.yml"
    path.write_text(text)
    code, err = check(path, capsys)
    warnings = [line.partition(" moorage.config.loader: ")[2] for line in err.splitlines()]
    if name == "deploy/container/config.yml":  # the image's default: one process, no replicas
        assert warnings == [warnings[0]] and warnings[0].startswith("http.secret is not set")
    else:
        assert err == ""
    assert code == 0


def readme_fragments() -> list[str]:
    text = (REPOSITORY / "README.md").read_text()
    fragments = re.findall(r"^```yaml\n(.*?)^```", text, re.S | re.M)
    sections = set(Config.model_fields)
    found = [f for f in fragments if set(yaml.safe_load(f) or {}) <= sections]
    assert len(found) >= 4, "the README's config examples were not found"
    return found


def merged(base: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    tree = dict(base)
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(tree.get(key), dict):
            tree[key] = merged(tree[key], value)
        else:
            tree[key] = value
    return tree


@pytest.mark.parametrize("fragment", readme_fragments())
def test_readme_config_example_checks_clean(
    fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each example in a whole config: the keys it shows, in-memory storage unless it names
    a driver (an s3 one gets the bucket and region it does not show), a secret."""
    tree = yaml.safe_load(relocated(fragment, tmp_path))
    base: dict[str, Any] = {"version": "0.1", "http": {"secret": "a-shared-secret"}}
    config = merged(base, tree)
    storage = config.setdefault("storage", {})
    if "s3" in storage:
        storage["s3"] = {"bucket": "b", "region": "r", **storage["s3"]}
    elif not set(storage) - {"quotas", "maintenance", "cache", "delete", "redirect"}:
        storage["inmemory"] = {}
    if "secretfile" in config["http"]:
        del config["http"]["secret"]
    provide_files(config, tmp_path)
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    assert check(path, capsys) == (0, "")
