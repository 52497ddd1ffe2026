"""The web UI's keys (`ui`): defaults, the path, CORS origins, and errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.config.loader import ConfigError, embedded_default, load
from moorage.config.schema import Config
from moorage.server import cors_origins

BASE = """
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
"""


def loaded(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    path = tmp_path / "config.yml"
    path.write_text(BASE + text)
    return load(str(path), environ=environ or {})


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        loaded(tmp_path, text)
    return caught.value.problems


def test_on_at_ui_by_default_with_or_without_a_file(tmp_path: Path) -> None:
    for config in (loaded(tmp_path, ""), Config.model_validate(embedded_default())):
        assert config.ui.enabled
        assert config.ui.path == "/ui/"
        assert config.ui.sessionlifetime == "12h"
        assert config.ui.cors.origins == []


def test_keys_and_the_environment(tmp_path: Path) -> None:
    config = loaded(tmp_path, "ui:\n  path: /registry/browse\n  sessionlifetime: 30m\n")
    assert config.ui.path == "/registry/browse/"
    assert loaded(tmp_path, "", {"REGISTRY_UI_ENABLED": "false"}).ui.enabled is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ui:\n  path: ui\n", "ui.path: 'ui' is not a URL path below /"),
        ("ui:\n  path: /v2/ui\n", "ui.path: '/v2/ui' is the API's"),
        ("ui:\n  path: /auth/\n", "ui.path: '/auth/' is the API's"),
        ("ui:\n  path: /a b/\n", "ui.path: '/a b/' is not a URL path"),
        ("ui:\n  sessionlifetime: forever\n", "ui.sessionlifetime: invalid duration"),
        ("ui:\n  cors:\n    origins: [https://ui.example/path]\n", "ui.cors.origins: "),
        ("ui:\n  colour: blue\n", "ui.colour: unknown key"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    assert any(problem.startswith(expected) for problem in problems(tmp_path, text)), problems(
        tmp_path, text
    )


def test_cors_origins_from_the_ui_and_from_http_headers(tmp_path: Path) -> None:
    config = loaded(
        tmp_path,
        "ui:\n  cors:\n    origins: ['https://ui.example', 'http://[::1]:8080']\n"
        "http:\n  headers:\n    access-control-allow-origin: ['https://other.example']\n",
    )
    assert cors_origins(config) == {
        "https://ui.example",
        "http://[::1]:8080",
        "https://other.example",
    }
    assert cors_origins(loaded(tmp_path, "")) == frozenset()
