"""`moorage serve` as a process: the embedded default, config errors, environment overrides,
crash safety and flat memory under a 2 GiB blob."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
import yaml

from tests.api import Client, RepeatedBody, round_trip_big_blob, sha256
from tests.servers import Server, _wait_ready, free_port, run_moorage, spawn_moorage, stop

MiB = 1024 * 1024


def _start(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    log = cwd / "serve.log"
    return spawn_moorage(args, log, env, cwd=cwd), log


def test_serve_without_a_config_runs_the_embedded_default(tmp_path: Path) -> None:
    port = free_port()
    # Only the port is moved off 5000 (no fixed ports in tests), through the environment.
    process, log = _start([], tmp_path, {"REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}"})
    server = Server(f"127.0.0.1:{port}", process, tmp_path / "data", log)
    try:
        _wait_ready(server)
        Client(server.url).push_image("app", "v1")
        assert (tmp_path / "data/docker/registry/v2/repositories/app/_manifests").is_dir()
        lines = [line for line in server.logs().splitlines() if "listening" in line]
        assert len(lines) == 1
        assert f"127.0.0.1:{port}" in lines[0]
        assert f"filesystem at {tmp_path / 'data'}" in lines[0]
        # the web UI is where the line says, showing what was pushed
        assert lines[0].endswith(f"web UI at {server.url}/ui/")
        catalog = requests.get(f"{server.url}/ui/", timeout=30)
        assert catalog.status_code == 200 and '/ui/r/app">app</a>' in catalog.text
    finally:
        stop(process)


def _check(config: dict[str, object], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "moorage", "serve", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_bad_config_fails_at_start_with_the_key_path(tmp_path: Path) -> None:
    base = {"version": "0.1", "storage": {"inmemory": {}}, "http": {"addr": "127.0.0.1:1"}}
    cases = [
        ({**base, "http": {"adr": "x"}}, "http.adr: unknown key"),
        ({**base, "storage": {"nosuch": {}}}, "unknown storage driver 'nosuch'"),
        (
            {**base, "storage": {"inmemory": {}, "delete": {"enabled": "maybe"}}},
            "storage.delete.enabled",
        ),
        ({"storage": {"inmemory": {}}}, "version: required key is missing"),
    ]
    for config, expected in cases:
        result = _check(config, tmp_path)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert expected in lines[0]
        assert "Traceback" not in result.stderr


def test_environment_replaces_the_driver(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with run_moorage(tmp_path, root=root, env={"REGISTRY_STORAGE": "inmemory"}) as server:
        Client(server.url).push_image("app", "v1")
        assert "storage inmemory" in server.logs()
    assert not root.exists()


def test_a_killed_upload_leaves_nothing_visible(tmp_path: Path) -> None:
    root = tmp_path / "data"
    size = 64 * MiB
    block = os.urandom(MiB)
    digest = sha256(block * (size // MiB))
    with run_moorage(tmp_path / "first", root=root) as server:

        def kill_halfway(i: int) -> None:
            if i == size // MiB // 2:
                server.process.send_signal(signal.SIGKILL)
                server.process.wait(timeout=10)

        with pytest.raises(requests.ConnectionError):
            requests.post(
                f"{server.url}/v2/app/blobs/uploads/",
                params={"digest": digest},
                data=RepeatedBody(block, size // MiB, kill_halfway),
                timeout=30,
            )
        server.process.wait(timeout=10)
    assert list(root.glob("docker/registry/v2/blobs/**/data")) == []
    assert list(root.glob("docker/registry/v2/repositories/app/_layers/**/link")) == []
    with run_moorage(tmp_path / "second", root=root) as again:
        assert Client(again.url).request("HEAD", f"/v2/app/blobs/{digest}").status_code == 404


def test_memory_stays_flat_while_a_2_gib_blob_goes_up_and_down(tmp_path: Path) -> None:
    with run_moorage(tmp_path) as server:
        round_trip_big_blob(server.url, server.process.pid, "big", 2048, b"seed")


def test_concurrent_pushes_of_the_same_blob(tmp_path: Path) -> None:
    data = os.urandom(2 * MiB)
    with run_moorage(tmp_path) as server:
        client = Client(server.url)
        results: list[int] = []

        def push() -> None:
            results.append(
                requests.post(
                    f"{server.url}/v2/app/blobs/uploads/",
                    params={"digest": sha256(data)},
                    data=data,
                    timeout=60,
                ).status_code
            )

        threads = [threading.Thread(target=push) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [201] * 6
        assert client.request("GET", f"/v2/app/blobs/{sha256(data)}").content == data


def test_config_check_catches_what_serve_would_refuse(tmp_path: Path) -> None:
    """config check builds what serve builds (addresses, TLS files, caches, auth files), so a
    config it passes does not then fail at start; it writes nothing (no signing key made)."""
    base = {
        "version": "0.1",
        "storage": {"inmemory": {}},
        "http": {"addr": ":5000", "secret": "s3cr3t-value"},
    }
    cases = [
        ({**base, "http": {"addr": "nonsense"}}, "http.addr"),
        (
            {
                **base,
                "http": {
                    "tls": {
                        "certificate": str(tmp_path / "no.crt"),
                        "key": str(tmp_path / "no.key"),
                    }
                },
            },
            "http.tls",
        ),
        ({**base, "storage": {"inmemory": {}, "cache": {"blobdescriptor": "redis"}}}, "redis.addr"),
        ({**base, "storage": {"s3": {"bucket": "b"}}}, "storage.s3.region"),
        (
            {
                **base,
                "auth": {
                    "builtin": {
                        "service": "x",
                        "users": str(tmp_path / "none"),
                        "acl": "a",
                        "signingkey": "k",
                    }
                },
            },
            "auth.builtin.users",
        ),
    ]
    for config, expected in cases:
        path = tmp_path / "config.yml"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        result = subprocess.run(
            [sys.executable, "-m", "moorage", "config", "check", str(path)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert result.returncode == 1, (expected, result.stdout, result.stderr)
        assert expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    users, acl = tmp_path / "users", tmp_path / "acl.yml"
    users.write_text("")
    acl.write_text("rules: []\n")
    key = tmp_path / "keys" / "token.key"
    key.parent.mkdir()
    good = {
        **base,
        "auth": {
            "builtin": {
                "service": "x",
                "users": str(users),
                "acl": str(acl),
                "signingkey": str(key),
            }
        },
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(good))
    path.chmod(0o600)
    result = subprocess.run(
        [sys.executable, "-m", "moorage", "config", "check", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "s3cr3t-value" not in result.stdout + result.stderr
    assert list(key.parent.iterdir()) == []
