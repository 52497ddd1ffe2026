"""distribution's example configs (its repository's `cmd/registry/config-dev.yml`, in its 2.x and 3
shapes, `config-example.yml` and `config-cache.yml`, and the `docker-registry` package's own
`/etc/docker/registry/config.yml`): `moorage config check` keeps every key they use in the
effective config, or refuses it one line per key, naming the key path. The configuration
reference's examples are test_distribution_reference's.

The configs are built here key by key from what those files set, with their values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from moorage.cli.main import main
from tests.unit.config.test_distribution_reference import key_paths

PACKAGE_CONFIG = Path("/etc/docker/registry/config.yml")


def fields(**extra: str) -> dict[str, Any]:
    return {"fields": {"service": "registry", **extra}}


HEADERS = {"X-Content-Type-Options": ["nosniff"]}
HEALTH = {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}}
DEBUG = {"addr": ":5001", "prometheus": {"enabled": True, "path": "/metrics"}}
REDIS = {
    "addr": "localhost:6379",
    "pool": {"maxidle": 16, "maxactive": 64, "idletimeout": "300s"},
    "dialtimeout": "10ms",
    "readtimeout": "10ms",
    "writetimeout": "10ms",
}


def endpoint(name: str, port: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "url": f"http://localhost:{port}/callback",
        **extra,
        "timeout": "1s",
        "threshold": 10,
        "backoff": "1s",
        "disabled": True,
    }


NOTIFICATIONS = {
    "events": {"includereferences": True},
    "endpoints": [
        endpoint("local-5003", 5003, headers={"Authorization": ["Bearer <an example token>"]}),
        endpoint("local-8083", 8083),
    ],
}
MAIL_HOOK = {
    "type": "mail",
    "disabled": True,
    "levels": ["panic"],
    "options": {
        "smtp": {
            "addr": "mail.example.com:25",
            "username": "mailuser",
            "password": "password",
            "insecure": True,
        },
        "from": "sender@example.com",
        "to": ["errors@example.com"],
    },
}

# Each example, and the key paths moorage refuses in it (with the start of the line's reason).
EXAMPLES: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "config-dev 3": (
        {
            "version": 0.1,
            "log": {"level": "debug", **fields(environment="development")},
            "storage": {
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "inmemory"},
                "filesystem": {"rootdirectory": "/var/lib/registry"},
                "maintenance": {"uploadpurging": {"enabled": False}},
                "tag": {"concurrencylimit": 8},
            },
            "http": {"addr": ":5000", "debug": DEBUG, "headers": HEADERS},
            "health": HEALTH,
        },
        {},
    ),
    "config-dev 2": (
        {
            "version": 0.1,
            "log": {"level": "debug", **fields(environment="development"), "hooks": [MAIL_HOOK]},
            "storage": {
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "redis"},
                "filesystem": {"rootdirectory": "/var/lib/registry"},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": ":5000", "debug": DEBUG, "headers": HEADERS},
            "redis": REDIS,
            "notifications": NOTIFICATIONS,
            "health": HEALTH,
        },
        {},
    ),
    "config-example": (
        {
            "version": 0.1,
            "log": fields(),
            "storage": {
                "cache": {"blobdescriptor": "inmemory"},
                "filesystem": {"rootdirectory": "/var/lib/registry"},
                "tag": {"concurrencylimit": 8},
            },
            "http": {"addr": ":5000", "headers": HEADERS},
            "auth": {"htpasswd": {"realm": "basic-realm", "path": "/etc/registry"}},
            "health": HEALTH,
        },
        # moorage's check creates no file; `moorage serve` makes a missing htpasswd file
        {"auth.htpasswd.path": "/etc/registry: No such file or directory"},
    ),
    "config-cache": (
        {
            "version": 0.1,
            "log": {"level": "debug", **fields(environment="development")},
            "storage": {
                "cache": {"blobdescriptor": "redis"},
                "filesystem": {"rootdirectory": "/var/lib/registry-cache"},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": ":5000",
                "secret": "asecretforlocaldevelopment",
                "debug": {"addr": "localhost:5001"},
                "headers": HEADERS,
            },
            "redis": REDIS,
            "notifications": NOTIFICATIONS,
            "proxy": {
                "remoteurl": "https://registry-1.docker.io",
                "username": "username",
                "password": "password",
                "cacheTTL": "48h",  # not a key of distribution's either (it reads `ttl`)
            },
            "health": HEALTH,
        },
        {"proxy.cacheTTL": "unknown key"},
    ),
}


def check(tmp_path: Path, config: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> int:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    try:
        return main(["config", "check", str(path)])
    except SystemExit as exc:  # the config does not load: `main` exits with its lines
        return int(exc.code or 0)


def refusals(err: str) -> dict[str, str]:
    """The refused keys of `moorage config check`'s lines, with the reasons."""
    prefix = "moorage: config: "
    lines = [line.removeprefix(prefix) for line in err.splitlines() if line.startswith(prefix)]
    return dict(line.split(": ", 1) for line in lines)


def dropped(config: dict[str, Any], out: str) -> list[str]:
    """The key paths of the config missing from the effective config `config check` printed."""
    # The redactor masks the placeholder secret `password` wherever it is, key names too.
    shown = {key.replace("********", "password") for key in key_paths(yaml.safe_load(out))}
    return sorted(set(key_paths(config)) - shown)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_each_example_is_kept_or_refused_key_by_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    config, refused = EXAMPLES[name]
    code = check(tmp_path, config, capsys)
    out, err = capsys.readouterr()
    assert refusals(err) == refused, err
    assert code == (1 if refused else 0)
    if not refused:
        assert dropped(config, out) == []


def test_without_what_is_refused_each_example_is_kept_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refused examples, mended as a user would: an htpasswd file that exists, `ttl` for
    the cache's lifetime."""
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("")
    htpasswd.chmod(0o600)
    example = EXAMPLES["config-example"][0]
    cache = EXAMPLES["config-cache"][0]
    mended = [
        {**example, "auth": {"htpasswd": {"realm": "basic-realm", "path": str(htpasswd)}}},
        {**cache, "proxy": {**cache["proxy"], "ttl": cache["proxy"]["cacheTTL"]}},
    ]
    del mended[1]["proxy"]["cacheTTL"]
    for config in mended:
        assert check(tmp_path, config, capsys) == 0
        out, err = capsys.readouterr()
        assert refusals(err) == {}
        assert dropped(config, out) == []


def test_the_reference_packages_own_config_is_refused_one_line_per_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Debian's docker-registry ships a config whose htpasswd `path` is its config directory."""
    if not PACKAGE_CONFIG.exists():
        pytest.fail(f"{PACKAGE_CONFIG} is missing: apt-get install -y docker-registry")
    config = yaml.safe_load(PACKAGE_CONFIG.read_text())
    assert check(tmp_path, config, capsys) == 1
    _, err = capsys.readouterr()
    assert refusals(err) == {"auth.htpasswd.path": "/etc/docker/registry: Is a directory"}
    config["auth"]["htpasswd"]["path"] = str(tmp_path / "htpasswd")
    (tmp_path / "htpasswd").write_text("")
    (tmp_path / "htpasswd").chmod(0o600)
    assert check(tmp_path, config, capsys) == 0
    out, _ = capsys.readouterr()
    assert dropped(config, out) == []
