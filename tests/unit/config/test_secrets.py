"""Secrets in the configuration, in process: read from `<key>file` and `REGISTRY_..._FILE`,
permission checks, secrets passed in the environment, and redaction of every log record."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from moorage import logs
from moorage.config import secrets
from moorage.config.loader import ConfigError, load
from moorage.config.schema import Config

BASE = """
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
"""


def write(path: Path, text: str, mode: int = 0o600) -> str:
    path.write_text(textwrap.dedent(text))
    path.chmod(mode)
    return str(path)


def secret_file(tmp_path: Path, name: str, content: str, mode: int = 0o600) -> str:
    path = tmp_path / name
    path.write_text(content)
    path.chmod(mode)
    return str(path)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_every_secret_key_read_from_a_file_beside_it(tmp_path: Path) -> None:
    files = {
        name: secret_file(tmp_path, name, f"{name}-value\n")
        for name in ("http", "redis", "sentinel", "proxy", "hook")
    }
    config = load(
        write(
            tmp_path / "config.yml",
            BASE
            + f"""
http:
  secretfile: {files["http"]}
redis:
  addr: localhost:6379
  passwordfile: {files["redis"]}
  sentinelpasswordfile: {files["sentinel"]}
proxy:
  remoteurl: https://registry-1.docker.io
  username: someone
  passwordfile: {files["proxy"]}
notifications:
  endpoints:
    - name: hook
      url: https://hooks.example/events
      headers:
        Authorizationfile: {files["hook"]}
""",
        ),
        environ={},
    )
    assert config.http.secret == "http-value"
    assert config.redis.password == "redis-value"
    assert config.redis.sentinelpassword == "sentinel-value"
    assert config.proxy.password == "proxy-value"
    assert config.notifications.endpoints[0].headers == {"Authorization": ["hook-value"]}


def test_only_one_trailing_newline_is_stripped(tmp_path: Path) -> None:
    for content, expected in [
        ("plain", "plain"),
        ("with-newline\n", "with-newline"),
        ("two-newlines\n\n", "two-newlines\n"),
        ("  spaced  \n", "  spaced  "),
    ]:
        path = secret_file(tmp_path, "secret", content)
        config = load(write(tmp_path / "c.yml", BASE), environ={"REGISTRY_HTTP_SECRET_FILE": path})
        assert config.http.secret == expected


def test_secret_files_from_the_environment(tmp_path: Path) -> None:
    environ = {
        "REGISTRY_HTTP_SECRET_FILE": secret_file(tmp_path, "http", "from-env-file\n"),
        "REGISTRY_REDIS_PASSWORD_FILE": secret_file(tmp_path, "redis", "redis-from-file\n"),
        "REGISTRY_PROXY_PASSWORD_FILE": secret_file(tmp_path, "proxy", "proxy-from-file"),
    }
    config = load(write(tmp_path / "config.yml", BASE), environ=environ)
    assert config.http.secret == "from-env-file"
    assert config.redis.password == "redis-from-file"
    assert config.proxy.password == "proxy-from-file"
    # `_FILE` variables name files, not secrets: nothing to take out of the environment.
    assert sorted(environ) == sorted(
        [
            "REGISTRY_HTTP_SECRET_FILE",
            "REGISTRY_REDIS_PASSWORD_FILE",
            "REGISTRY_PROXY_PASSWORD_FILE",
        ]
    )


def test_environment_file_overrides_the_config_files_inline_secret(tmp_path: Path) -> None:
    text = BASE + "http:\n  secret: inline-one\n"
    path = secret_file(tmp_path, "http", "file-one\n")
    config = load(write(tmp_path / "c.yml", text), environ={"REGISTRY_HTTP_SECRET_FILE": path})
    assert config.http.secret == "file-one"


def test_secret_files_in_systemds_credentials_directory(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    secret_file(credentials, "http-secret", "from-credential\n")
    secret_file(credentials, "redis-password", "redis-credential\n")
    text = BASE + "http:\n  secretfile: ${CREDENTIALS_DIRECTORY}/http-secret\n"
    environ = {
        "CREDENTIALS_DIRECTORY": str(credentials),
        "REGISTRY_REDIS_PASSWORD_FILE": "$CREDENTIALS_DIRECTORY/redis-password",
    }
    config = load(write(tmp_path / "c.yml", text), environ=environ)
    assert config.http.secret == "from-credential"
    assert config.redis.password == "redis-credential"


def test_credentials_directory_named_but_not_set_is_one_line(tmp_path: Path) -> None:
    text = BASE + "http:\n  secretfile: ${CREDENTIALS_DIRECTORY}/http-secret\n"
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path / "c.yml", text), environ={})
    (problem,) = caught.value.problems
    assert problem.startswith("http.secret: ")
    assert "CREDENTIALS_DIRECTORY" in problem and "LoadCredential=" in problem


def test_missing_secret_file_names_key_and_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path / "c.yml", BASE + f"redis:\n  passwordfile: {missing}\n"), environ={})
    (problem,) = caught.value.problems
    assert "redis.password" in problem
    assert str(missing) in problem


def test_inline_and_file_together_refused(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "s", "x-secret-x")
    text = BASE + f"http:\n  secret: inline-secret\n  secretfile: {path}\n"
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path / "c.yml", text), environ={})
    (problem,) = caught.value.problems
    assert problem.startswith("http.secret: ")
    assert "inline-secret" not in problem and "x-secret-x" not in problem


def test_notification_header_whose_name_ends_in_file_is_a_header(tmp_path: Path) -> None:
    # `<key>file` names a file only when its value is one path: header values are lists.
    text = (
        BASE
        + """
notifications:
  endpoints:
    - name: hook
      url: https://hooks.example/events
      headers:
        X-Profile: [a]
        X-Config-File: [b]
"""
    )
    config = load(write(tmp_path / "c.yml", text), environ={})
    assert config.notifications.endpoints[0].headers == {"X-Profile": ["a"], "X-Config-File": ["b"]}


def test_exposed_secret_file_warned_about_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = secret_file(tmp_path, "http-secret", "exposed-value\n", mode=0o644)
    config_path = write(tmp_path / "c.yml", BASE + f"http:\n  secretfile: {path}\n")
    with caplog.at_level(logging.WARNING):
        config = load(config_path, environ={})
    assert config.http.secret == "exposed-value"
    (warning,) = warnings_of(caplog)
    assert "\n" not in warning
    assert path in warning
    assert f"chmod 600 {path}" in warning
    assert "exposed-value" not in warning


@pytest.mark.parametrize("mode", [0o604, 0o620, 0o640, 0o602])
def test_strict_secrets_refuses_a_file_others_can_read_or_write(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path, "secret", "strict-value", mode=mode)
    with pytest.raises(ConfigError) as caught:
        load(
            write(tmp_path / "c.yml", BASE),
            environ={"REGISTRY_HTTP_SECRET_FILE": path},
            strict_secrets=True,
        )
    (problem,) = caught.value.problems
    assert path in problem and "chmod 600" in problem
    assert "strict-value" not in problem


def test_private_secret_file_passes_strict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = secret_file(tmp_path, "secret", "private-value", mode=0o400)
    with caplog.at_level(logging.WARNING):
        config = load(
            write(tmp_path / "c.yml", BASE),
            environ={"REGISTRY_HTTP_SECRET_FILE": path},
            strict_secrets=True,
        )
    assert config.http.secret == "private-value"
    assert warnings_of(caplog) == []


def test_config_file_holding_a_secret_inline_checked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exposed = write(tmp_path / "c.yml", BASE + "redis:\n  password: inline-password\n", 0o644)
    with caplog.at_level(logging.WARNING):
        load(exposed, environ={}, strict_secrets=False)
    (warning,) = [w for w in warnings_of(caplog) if "exposed" in w]
    assert exposed in warning and f"chmod 600 {exposed}" in warning
    assert "inline-password" not in warning
    with pytest.raises(ConfigError) as caught:
        load(exposed, environ={}, strict_secrets=True)
    (problem,) = caught.value.problems
    assert exposed in problem and "inline-password" not in problem
    # Without inline secrets, the config file may be world-readable.
    caplog.clear()
    plain = write(tmp_path / "plain.yml", BASE + "http:\n  secret: ''\n", 0o644)
    with caplog.at_level(logging.WARNING):
        load(plain, environ={}, strict_secrets=True)
    assert not [w for w in warnings_of(caplog) if "exposed" in w]


def test_config_file_holding_a_numeric_secret_inline_checked(tmp_path: Path) -> None:
    exposed = write(tmp_path / "c.yml", BASE + "http:\n  secret: 123456789\n", 0o644)
    with pytest.raises(ConfigError):
        load(exposed, environ={}, strict_secrets=True)


def test_secret_in_the_environment_warned_about_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    value = "env-secret-0123456789"
    monkeypatch.setenv("REGISTRY_HTTP_SECRET", value)
    monkeypatch.setenv("REGISTRY_REDIS_PASSWORD", "env-redis-password")
    with caplog.at_level(logging.DEBUG):
        config = load(write(tmp_path / "c.yml", BASE))
    assert config.http.secret == value
    assert config.redis.password == "env-redis-password"
    warnings = warnings_of(caplog)
    assert len([w for w in warnings if "REGISTRY_HTTP_SECRET" in w]) == 1
    assert len([w for w in warnings if "REGISTRY_REDIS_PASSWORD" in w]) == 1
    for record in caplog.records:
        text = record.getMessage()
        assert value not in text and "env-redis-password" not in text
    assert "REGISTRY_HTTP_SECRET" not in os.environ
    assert "REGISTRY_REDIS_PASSWORD" not in os.environ
    # A child process started now inherits neither variable (the real environment, not a copy).
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(sorted(os.environ))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "REGISTRY_HTTP_SECRET" not in child.stdout
    assert "REGISTRY_REDIS_PASSWORD" not in child.stdout
    env = subprocess.run(["env"], capture_output=True, text=True, check=True).stdout
    assert value not in env and "env-redis-password" not in env


def test_random_secret_when_missing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "c.yml", BASE)
    with caplog.at_level(logging.WARNING):
        first = load(path, environ={})
        second = load(path, environ={})
    assert len(first.http.secret) >= 32
    assert first.http.secret != second.http.secret
    warnings = [w for w in warnings_of(caplog) if "http.secret" in w]
    assert len(warnings) == 2
    assert "load balancer" in warnings[0] and "shared" in warnings[0]


def test_validation_errors_never_carry_a_secret(tmp_path: Path) -> None:
    # A value that is a secret elsewhere, put where its text is quoted back in the error.
    value = "hunter2-proxy-password"
    text = BASE + f"proxy:\n  password: {value}\nhttp:\n  draintimeout: {value}\n"
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path / "c.yml", text), environ={})
    (problem,) = caught.value.problems
    assert problem.startswith("http.draintimeout: ")
    assert value not in problem and secrets.MASK in problem


def test_values_and_masked_find_every_secret_kind() -> None:
    tree = {
        "http": {"secret": "a-secret", "addr": ":5000"},
        "redis": {"password": "b-secret", "sentinelpassword": "c-secret", "addr": "r:6379"},
        "proxy": {"password": "d-secret", "username": "someone"},
        "storage": {"s3": {"accesskey": "e-secret", "secretkey": "f-secret", "bucket": "b"}},
        "notifications": {
            "endpoints": [{"name": "n", "headers": {"Authorization": ["Bearer g-secret"]}}]
        },
    }
    found = sorted(secrets.values(tree))
    assert found == sorted(
        ["a-secret", "b-secret", "c-secret", "d-secret", "e-secret", "f-secret", "Bearer g-secret"]
    )
    shown = secrets.masked(tree)
    assert shown["http"] == {"secret": secrets.MASK, "addr": ":5000"}
    assert shown["proxy"]["username"] == "someone"
    assert shown["storage"]["s3"]["bucket"] == "b"
    assert shown["notifications"]["endpoints"][0]["headers"]["Authorization"] == [secrets.MASK]
    assert not [s for s in found if s in repr(shown)]


def _configured_logging(formatter: str, redactor: secrets.Redactor) -> io.StringIO:
    stream = io.StringIO()
    config = Config.model_validate(
        {
            "version": "0.1",
            "storage": {"inmemory": {}},
            "log": {"level": "debug", "formatter": formatter, "fields": {"service": "registry"}},
        }
    )
    logs.configure(config, redactor, stream)
    return stream


@pytest.mark.parametrize("formatter", ["text", "json", "logstash"])
def test_redacted_at_every_level_in_every_part_of_a_record(formatter: str) -> None:
    secret = 's3cr3t-"quoted"-value'
    redactor = secrets.Redactor([secret, "abc"])  # too short to mask in free text: kept
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        stream = _configured_logging(formatter, redactor)
        log = logging.getLogger("moorage.test")
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
            log.log(level, "value %s here abc", secret, extra={"detail": f"x{secret}x"})
        log.critical(f"inline {secret}")
        try:
            raise ValueError(f"boom {secret}")
        except ValueError:
            log.exception("failed with %r", secret)
        logging.getLogger("moorage.access").info("GET / 200", extra={"request_id": secret})
    finally:
        root.handlers = saved[0]
        root.setLevel(saved[1])
    output = stream.getvalue()
    assert secret not in output
    assert "s3cr3t" not in output
    assert output.count(secrets.MASK) >= 8
    assert "abc" in output
    assert "boom" in output


def test_credentials_of_an_authorization_value_are_a_secret_alone() -> None:
    redactor = secrets.Redactor(["Bearer tok-123456", "plain words here"])
    assert redactor.redact("Bearer tok-123456 / tok-123456") == f"{secrets.MASK} / {secrets.MASK}"
    assert redactor.redact("words here") == "words here"  # only auth-scheme values split


@pytest.mark.parametrize("formatter", ["json", "logstash"])
def test_warnings_before_the_config_is_loaded_use_its_format(formatter: str) -> None:
    """`serve` holds what is logged while the config loads, and writes it once the config has
    named the format: every line of a JSON log is JSON, and redacted with the secrets loaded."""
    redactor = secrets.Redactor()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.bootstrap(redactor, hold=True)
        logging.getLogger("moorage.config").warning("about late-secret-value")
        logging.getLogger("moorage.config").debug("below the configured level")
        redactor.add(["late-secret-value"])
        stream = _configured_logging(formatter, redactor)
        logging.getLogger("moorage").info("after")
        logging.getLogger().setLevel(logging.INFO)
    finally:
        root.handlers = saved[0]
        root.setLevel(saved[1])
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    key = "message" if formatter == "logstash" else "msg"
    assert [e[key] for e in entries] == [f"about {secrets.MASK}", "after"]
    assert all(e["service"] == "registry" for e in entries)


def test_held_warnings_written_as_text_when_loading_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    redactor = secrets.Redactor()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.bootstrap(redactor, hold=True)
        logging.getLogger("moorage.config").warning("exposed file; fix with: chmod 600 x")
        assert capsys.readouterr().err == ""
        logs.release(redactor)
    finally:
        root.handlers = saved[0]
        root.setLevel(saved[1])
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith("warning moorage.config: exposed file; fix with: chmod 600 x")
