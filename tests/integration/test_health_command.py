"""`moorage health [CONFIG]`, the probe behind the container image's HEALTHCHECK, against real
servers: it finds the registry where the config (and the environment) puts it, on TCP, TLS with
a prefix, a unix socket or the debug listener, and fails in one line when nothing healthy
answers."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.http_support import config, make_ca, moorage
from tests.integration.test_operations import break_storage, wait_for
from tests.servers import free_port

pytestmark = pytest.mark.timeout(300)


def environ(**extra: str) -> dict[str, str]:
    """This process's environment without any REGISTRY_* override, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}, **extra}


def health(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moorage", "health", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def healthy(path: Path, env: dict[str, str] | None = None) -> str:
    result = health(path, env)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout.strip()


def failed(path: Path, env: dict[str, str] | None = None) -> str:
    result = health(path, env)
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("moorage: health: ")
    return line


def test_answers_while_serving_and_fails_in_one_line_once_stopped(tmp_path: Path) -> None:
    port = free_port()
    settings = config(tmp_path / "data", {"addr": f":{port}"})
    with moorage(tmp_path / "run", settings):
        # `:PORT` listens on every address and is probed on loopback.
        assert healthy(tmp_path / "run" / "moorage.yml") == (
            f"http://127.0.0.1:{port}/v2/: answered 200"
        )
    line = failed(tmp_path / "run" / "moorage.yml")
    assert line == f"moorage: health: http://127.0.0.1:{port}/v2/: Connection refused"


def test_follows_the_address_in_the_environment_and_takes_401_as_up(tmp_path: Path) -> None:
    port = free_port()
    env = {"REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}"}
    settings = config(
        tmp_path / "data",
        {"addr": "127.0.0.1:1"},
        auth={"silly": {"realm": "x", "service": "y"}},
    )
    with moorage(tmp_path / "run", settings, env=env):
        path = tmp_path / "run" / "moorage.yml"
        answer = healthy(path, environ(**env))
        assert answer == f"http://127.0.0.1:{port}/v2/: answered 401"
        assert failed(path, environ()).endswith("127.0.0.1:1/v2/: Connection refused")


def test_tls_with_a_prefix(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "pki")
    cert, key = ca.issue(tmp_path / "pki", "server", server=True)
    port = free_port()
    tls = {"certificate": str(cert), "key": str(key)}
    settings = config(
        tmp_path / "data", {"addr": f"127.0.0.1:{port}", "prefix": "/registry", "tls": tls}
    )
    with moorage(tmp_path / "run", settings):
        answer = healthy(tmp_path / "run" / "moorage.yml")
        assert answer == f"https://127.0.0.1:{port}/registry/v2/: answered 200"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A unix socket path must fit in 108 bytes; tmp_path may not."""
    with tempfile.TemporaryDirectory(prefix="moorage-") as directory:
        yield Path(directory)


def test_unix_socket(tmp_path: Path, short_dir: Path) -> None:
    sock = short_dir / "moorage.sock"
    settings = config(tmp_path / "data", {"net": "unix", "addr": str(sock)})
    with moorage(tmp_path / "run", settings):
        assert healthy(tmp_path / "run" / "moorage.yml") == f"unix:{sock}/v2/: answered 200"


def test_debug_listener_reports_failing_storage(tmp_path: Path) -> None:
    debug = f"127.0.0.1:{free_port()}"
    settings = config(
        tmp_path / "data",
        {"addr": f"127.0.0.1:{free_port()}", "debug": {"addr": debug}},
        health={"storagedriver": {"enabled": True, "interval": "100ms", "threshold": 1}},
    )
    path = tmp_path / "run" / "moorage.yml"
    with moorage(tmp_path / "run", settings):
        assert healthy(path) == f"http://{debug}/debug/health: answered 200"
        (tmp_path / "data" / "docker").mkdir(parents=True, exist_ok=True)
        repair = break_storage(tmp_path / "data")
        try:
            wait_for(lambda: health(path).returncode == 1, timeout=30)
            assert failed(path) == f"moorage: health: http://{debug}/debug/health: answered 503"
        finally:
            repair()
        wait_for(lambda: health(path).returncode == 0, timeout=30)


def test_a_bad_config_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("version: 0.1\nstorage: {}\n")
    assert failed(path).startswith("moorage: health: config: storage")
