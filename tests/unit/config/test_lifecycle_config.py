"""moorage's lifecycle keys: sizes, `storage.quotas`, `storage.maintenance.retention` and
`storage.maintenance.usage`, with errors naming the key path."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from moorage.config.loader import ConfigError, load
from moorage.config.schema import byte_size

BASE = """
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
"""

GiB = 1024**3


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "config.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(str(path), environ={})
    return caught.value.problems


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (0, 0),
        (1024, 1024),
        ("1024", 1024),
        ("7 B", 7),
        ("3kB", 3000),
        ("10GiB", 10 * GiB),
        ("10gib", 10 * GiB),
        ("10 GB", 10 * 1000**3),
        ("1.5TiB", int(1.5 * 1024**4)),
    ],
)
def test_sizes(text: int | str, size: int) -> None:
    assert byte_size(text) == size


@pytest.mark.parametrize("text", [-1, "-1", True, 10.5, "1.5", "1.5B", "ten", "10XB", "1e3", ""])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ValueError, match=r"invalid size .*expected a number of bytes"):
        byte_size(text)  # type: ignore[arg-type]


def test_quotas_parse(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(
        BASE + '  quotas:\n    default: 10GiB\n    repositories:\n      "team/*": 50GiB\n'
    )
    quotas = load(str(path), environ={}).storage.quotas
    assert byte_size(quotas.default or 0) == 10 * GiB
    assert {k: byte_size(v) for k, v in quotas.repositories.items()} == {"team/*": 50 * GiB}


def test_quotas_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(BASE)
    config = load(
        str(path),
        environ={
            "REGISTRY_STORAGE_QUOTAS_DEFAULT": "2GiB",
            "REGISTRY_STORAGE_QUOTAS_REPOSITORIES": '{"big/*": 1TiB}',
        },
    )
    assert config.storage.driver == "filesystem"  # quotas is a setting, not a second driver
    assert config.storage.quotas.default == "2GiB"
    assert config.storage.quotas.repositories == {"big/*": "1TiB"}


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ("  quotas:\n    default: lots\n", "storage.quotas.default"),
        ("  quotas:\n    repositories:\n      a/*: 5 parsecs\n", "storage.quotas.repositories.a/*"),
        ("  quotas:\n    defualt: 1GiB\n", "storage.quotas.defualt"),
    ],
)
def test_bad_quotas_named_by_path(tmp_path: Path, extra: str, path: str) -> None:
    (problem,) = problems(tmp_path, BASE + extra)
    assert problem.startswith(f"{path}: "), problem


def test_quotas_need_usage(tmp_path: Path) -> None:
    text = BASE + (
        "  quotas:\n    default: 1GiB\n"
        "  maintenance:\n    usage:\n      enabled: false\n"
    )
    (problem,) = problems(tmp_path, text)
    assert problem.startswith("storage: ")
    assert "storage.maintenance.usage.enabled" in problem


RETENTION = BASE + """
  maintenance:
    retention:
      dryrun: true
      interval: 12h
      pullinterval: 10m
      policies:
        - repositories: ["team/*"]
          deleteuntagged: false
          deletereferrers: true
          keeptags:
            - patterns: ["^v[0-9]+", "-prod$"]
              mostrecentlypushedcount: 5
              pulledwithin: 720h
            - mostrecentlypulledcount: 2
        - repositories: ["*"]
"""


def test_retention_parses(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(RETENTION)
    retention = load(str(path), environ={}).storage.maintenance.retention
    assert retention.dryrun is True
    first, second = retention.policies
    assert first.repositories == ["team/*"]
    assert (first.deleteuntagged, first.deletereferrers) == (False, True)
    assert first.keeptags[0].patterns == ["^v[0-9]+", "-prod$"]
    assert first.keeptags[0].mostrecentlypushedcount == 5
    assert first.keeptags[1].patterns == []
    assert (second.deleteuntagged, second.deletereferrers, second.keeptags) == (None, False, [])


def test_retention_interval_is_deprecated_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Retention runs before each garbage collection: its own interval, accepted so that an
    older config still loads, is warned about; so are policies without a scheduled collection."""
    path = tmp_path / "config.yml"
    path.write_text(RETENTION)
    with caplog.at_level(logging.WARNING, logger="moorage.config.loader"):
        load(str(path), environ={})
    interval, disabled = [m for m in caplog.messages if m.startswith("storage.")]
    assert interval.startswith("storage.maintenance.retention.interval is deprecated and ignored")
    assert "storage.maintenance.gc.enabled is false" in disabled
    caplog.clear()
    path.write_text(
        RETENTION.replace("      interval: 12h\n", "").replace(
            "    retention:", "    gc:\n      enabled: true\n    retention:"
        )
    )
    with caplog.at_level(logging.WARNING, logger="moorage.config.loader"):
        load(str(path), environ={})
    assert [m for m in caplog.messages if m.startswith("storage.")] == []


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ('"^v[0-9]+"', '"v[0-9"', "storage.maintenance.retention.policies.0.keeptags.0.patterns.0"),
        ("720h", "a month", "storage.maintenance.retention.policies.0.keeptags.0.pulledwithin"),
        (
            "mostrecentlypushedcount: 5",
            "mostrecentlypushedcount: -1",
            "storage.maintenance.retention.policies.0.keeptags.0.mostrecentlypushedcount",
        ),
        ('repositories: ["*"]', "repositories: []", "storage.maintenance.retention.policies.1"),
        ("interval: 12h", "interval: soon", "storage.maintenance.retention.interval"),
        ("deletereferrers", "deletereferrer", "storage.maintenance.retention.policies.0"),
    ],
)
def test_bad_retention_named_by_path(tmp_path: Path, old: str, new: str, path: str) -> None:
    (problem,) = problems(tmp_path, RETENTION.replace(old, new))
    assert problem.startswith(path), problem
