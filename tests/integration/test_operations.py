"""Operating moorage, as real `moorage` processes: secrets from files and the environment, their
permission checks and redaction on every output channel, `moorage config check`, the debug
listener (health, Prometheus metrics, the redacted config) and the logs (levels, formatters,
fields, access lines)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.api import Client, RepeatedBody, error_codes, sha256
from tests.servers import (
    S3Server,
    Server,
    _wait_ready,
    free_port,
    moorage_config,
    run_moorage,
    spawn_moorage,
    stop,
)

MASK = "********"
UPLOADS = "/v2/{name}/blobs/uploads/"
SESSION = "/v2/{name}/blobs/uploads/{upload_id}"
BLOB = "/v2/{name}/blobs/{digest}"
MANIFEST = "/v2/{name}/manifests/{reference}"

SEED = """\
version: 0.1
log:
  level: debug
  fields:
    service: registry
    environment: staging
storage:
  filesystem:
    rootdirectory: {root}
  cache:
    layerinfo: inmemory
http:
  addr: :5000
  secret: somerandomstring
  debug:
    addr: localhost:5001
"""


# -- helpers -------------------------------------------------------------------------------------


def private_file(path: Path, content: str, mode: int = 0o600) -> Path:
    path.write_text(content)
    path.chmod(mode)
    return path


def moorage(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m moorage ARGS` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "moorage", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=60,
    )


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def debug_addr() -> str:
    return f"127.0.0.1:{free_port()}"


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


Samples = list[tuple[str, dict[str, str], float]]


def scrape(debug: str) -> Samples:
    response = requests.get(f"http://{debug}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    return sum(
        v for n, ls, v in samples if n == name and all(ls.get(k) == x for k, x in labels.items())
    )


def requests_total(samples: Samples, route: str, method: str, status: int) -> float:
    return value(
        samples, "moorage_http_requests_total", route=route, method=method, status=str(status)
    )


def break_storage(root: Path) -> Callable[[], None]:
    """Makes every storage operation under `root/docker` fail with ELOOP (a symlink loop in
    place of the directory); returns the function that repairs it."""
    docker = root / "docker"
    saved = root / "docker.saved"
    docker.rename(saved)
    docker.symlink_to("docker")
    assert not os.path.exists(docker)  # stat follows the loop and fails

    def repair() -> None:
        docker.unlink()
        saved.rename(docker)

    return repair


# -- the seed configuration ----------------------------------------------------------------------


def test_seed_configuration_works_as_written(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    config = private_file(tmp_path / "config.yml", SEED.format(root=root))
    port, debug = free_port(), debug_addr()
    log = tmp_path / "serve.log"
    env = {"REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}", "REGISTRY_HTTP_DEBUG_ADDR": debug}
    process = spawn_moorage([str(config)], log, env)
    server = Server(f"127.0.0.1:{port}", process, root, log)
    try:
        _wait_ready(server)
        client = Client(server.url)
        payload, digest = client.push_image("library/app", "v1", seed="seed")
        pulled = client.request("GET", "/v2/library/app/manifests/v1", headers={"Accept": "*/*"})
        assert pulled.status_code == 200 and pulled.content == payload
        assert pulled.headers["Docker-Content-Digest"] == digest
        for layer in json.loads(payload)["layers"]:
            blob = client.request("GET", f"/v2/library/app/blobs/{layer['digest']}")
            assert blob.status_code == 200 and sha256(blob.content) == layer["digest"]
        assert (root / "docker/registry/v2/repositories/library/app/_manifests").is_dir()

        health = requests.get(f"http://{debug}/debug/health", timeout=10)
        assert (health.status_code, health.json()) == (200, {})
        samples = scrape(debug)
        assert requests_total(samples, MANIFEST, "PUT", 201) == 1
        shown = requests.get(f"http://{debug}/debug/config", timeout=10).json()
        assert shown["http"]["secret"] == MASK
        assert shown["storage"]["cache"]["blobdescriptor"] == "inmemory"
        assert shown["log"]["fields"] == {"service": "registry", "environment": "staging"}
    finally:
        stop(process)
    output = lines(server.logs())
    assert "somerandomstring" not in server.logs()
    assert any(" debug " in line for line in output)  # log.level: debug
    assert len([line for line in output if "listening" in line]) == 1
    assert len([line for line in output if "moorage.access" in line]) >= 5
    for line in output:
        assert line.endswith("service=registry environment=staging"), line


# -- secrets from files and the environment ------------------------------------------------------


def test_http_secret_from_a_file_is_the_secret_less_its_newline(tmp_path: Path) -> None:
    """An upload URL's `_state` is signed with http.secret: a session started where the secret
    comes from a file (`secretfile:` or REGISTRY_HTTP_SECRET_FILE) continues on a replica given
    the same secret inline, and not on one whose secret keeps the file's newline."""
    root = tmp_path / "data"
    secret = private_file(tmp_path / "http-secret", "replica-shared-secret\n")
    from_key = moorage_config(root, 0, http={"secretfile": str(secret)})
    with run_moorage(tmp_path / "a", from_key) as server:
        assert "replica-shared-secret" not in server.logs()
        first, second = (Client(server.url).start_upload("app") for _ in range(2))
    with run_moorage(
        tmp_path / "b", moorage_config(root, 0), env={"REGISTRY_HTTP_SECRET_FILE": str(secret)}
    ) as server:
        third = Client(server.url).start_upload("app")

    with_newline = moorage_config(root, 0, http={"secret": "replica-shared-secret\n"})
    with run_moorage(tmp_path / "c", with_newline) as other:
        client = Client(other.url)
        response = client.request(
            "PATCH", f"{other.url}{urlsplit(second).path}?{urlsplit(second).query}", data=b"x"
        )
        assert response.status_code == 400
        assert error_codes(response) == ["BLOB_UPLOAD_INVALID"]

    inline = moorage_config(root, 0, http={"secret": "replica-shared-secret"})
    with run_moorage(tmp_path / "d", inline) as replica:
        client = Client(replica.url)
        for location in (first, second, third):
            data = os.urandom(100)
            url = f"{replica.url}{urlsplit(location).path}?{urlsplit(location).query}"
            assert client.request("PATCH", url, data=data).status_code == 202
            done = client.request("PUT", url, params={"digest": sha256(data)})
            assert done.status_code == 201, done.text


def test_every_secret_kind_from_files(tmp_path: Path) -> None:
    files = {
        name: private_file(tmp_path / name, f"{name}-from-file-value\n")
        for name in ("redis", "sentinel", "proxy", "hook")
    }
    config = {
        "version": "0.1",
        "storage": {"inmemory": {}},
        "redis": {"addr": "127.0.0.1:6379", "passwordfile": str(files["redis"])},
        "proxy": {"username": "someone", "passwordfile": str(files["proxy"])},
        "notifications": {
            "endpoints": [
                {
                    "name": "hook",
                    "url": "http://127.0.0.1:9/events",
                    "headers": {"Authorizationfile": str(files["hook"])},
                }
            ]
        },
    }
    path = private_file(tmp_path / "config.yml", yaml.safe_dump(config))
    env = {"REGISTRY_REDIS_SENTINELPASSWORD_FILE": str(files["sentinel"])}
    result = moorage("config", "check", str(path), env=env)
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["redis"]["password"] == MASK
    assert shown["redis"]["sentinelpassword"] == MASK
    assert shown["proxy"]["password"] == MASK
    assert shown["notifications"]["endpoints"][0]["headers"] == {"Authorization": [MASK]}
    assert "from-file-value" not in result.stdout + result.stderr
    # The files' content is what the registry holds (checked in process by the unit tests);
    # here: a file that cannot be read is one problem naming the key and the file.
    files["proxy"].unlink()
    result = moorage("config", "check", str(path), env=env)
    assert result.returncode == 1
    (problem,) = lines(result.stderr)
    assert "proxy.password" in problem and str(files["proxy"]) in problem


@contextlib.contextmanager
def redis_with_password(password: str) -> Iterator[int]:
    """A real redis-server on a free loopback port that requires `password`; yields the port."""
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            password,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: redis_cli(port, password, "PING") == "PONG")
        yield port
    finally:
        stop(process)


def redis_cli(port: int, password: str, *command: str) -> str:
    result = subprocess.run(
        ["redis-cli", "-p", str(port), "--no-auth-warning", "-a", password, *command],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


@pytest.mark.parametrize("form", ["passwordfile", "REGISTRY_REDIS_PASSWORD_FILE"])
def test_redis_password_from_a_file_is_used(tmp_path: Path, form: str) -> None:
    """The redis blob descriptor cache authenticates with the file's content, newline
    stripped: the cache fills on a Redis that refuses any other password."""
    password = "redis-file-password-77"
    path = private_file(tmp_path / "redis-password", password + "\n")
    with redis_with_password(password) as port:
        redis: dict[str, object] = {"addr": f"127.0.0.1:{port}"}
        env = {}
        if form == "passwordfile":
            redis["passwordfile"] = str(path)
        else:
            env[form] = str(path)
        config = moorage_config(tmp_path / "data", 0, redis=redis)
        config["storage"]["cache"] = {"blobdescriptor": "redis"}
        with run_moorage(tmp_path / "run", config, env=env) as server:
            client = Client(server.url)
            payload, _ = client.push_image("app", "v1")
            layer = json.loads(payload)["layers"][0]["digest"]
            for _ in range(2):
                assert client.request("HEAD", f"/v2/app/blobs/{layer}").status_code == 200
            assert int(redis_cli(port, password, "DBSIZE")) > 0
        output = server.logs()
        assert password not in output
        assert "redis unavailable" not in output


def test_s3_keys_from_files(tmp_path: Path, s3_store: S3Server) -> None:
    """storage.s3's keys from `accesskeyfile:` and REGISTRY_STORAGE_S3_SECRETKEY_FILE: the
    driver works, and neither key shows in the logs or the debug server's config."""
    params = s3_store.params("moorage-secrets", rootdirectory="/ops")
    access = private_file(tmp_path / "access", params.pop("accesskey") + "\n")
    secret_value = params.pop("secretkey")
    secret = private_file(tmp_path / "secret", secret_value + "\n")
    s3_store.create_bucket("moorage-secrets")
    debug = debug_addr()
    config = {
        "version": "0.1",
        "storage": {"s3": {**params, "accesskeyfile": str(access)}},
        "http": {"debug": {"addr": debug}},
    }
    env = {"REGISTRY_STORAGE_S3_SECRETKEY_FILE": str(secret)}
    with run_moorage(tmp_path / "run", config, env=env) as server:
        client = Client(server.url)
        payload, _ = client.push_image("app", "v1")
        pulled = client.request("GET", "/v2/app/manifests/v1")
        assert pulled.status_code == 200 and pulled.content == payload
        shown = requests.get(f"http://{debug}/debug/config", timeout=10)
        assert shown.json()["storage"]["s3"]["accesskey"] == MASK
        assert shown.json()["storage"]["s3"]["secretkey"] == MASK
    for text in (server.logs(), shown.text):
        assert "AKIATESTTESTTESTTEST" not in text and secret_value not in text


def test_exposed_secret_file_warned_about_and_refused_when_strict(tmp_path: Path) -> None:
    secret = private_file(tmp_path / "http-secret", "exposed-secret-value\n", mode=0o644)
    config = moorage_config(tmp_path / "data", 0, http={"secretfile": str(secret)})
    with run_moorage(tmp_path / "run", config) as server:
        Client(server.url).push_image("app", "v1")
    output = server.logs()
    warnings = [line for line in lines(output) if "chmod 600" in line]
    assert len(warnings) == 1
    assert str(secret) in warnings[0] and f"chmod 600 {secret}" in warnings[0]
    assert "warning" in warnings[0]
    assert "exposed-secret-value" not in output

    path = private_file(tmp_path / "strict.yml", yaml.safe_dump(config))
    for args in (["serve", "--strict-secrets"], ["config", "check", "--strict-secrets"]):
        result = moorage(*args, str(path))
        assert result.returncode == 1, result
        (problem,) = lines(result.stderr)
        assert str(secret) in problem and "chmod 600" in problem
        assert "exposed-secret-value" not in result.stdout + result.stderr

    # The environment's form is checked the same way.
    plain = private_file(tmp_path / "plain.yml", yaml.safe_dump(moorage_config(None, free_port())))
    result = moorage(
        "serve", "--strict-secrets", str(plain), env={"REGISTRY_HTTP_SECRET_FILE": str(secret)}
    )
    assert result.returncode == 1
    (problem,) = lines(result.stderr)
    assert str(secret) in problem and "chmod 600" in problem

    secret.chmod(0o600)
    result = moorage("config", "check", "--strict-secrets", str(path))
    assert result.returncode == 0, result.stderr
    assert "chmod" not in result.stderr


def test_config_file_holding_a_secret_inline_warned_about(tmp_path: Path) -> None:
    config = moorage_config(tmp_path / "data", 0, http={"secret": "inline-secret-value"})
    with run_moorage(tmp_path / "run", config) as server:
        config_path = tmp_path / "run" / f"moorage-{server.host.rpartition(':')[2]}.yml"
    assert config_path.stat().st_mode & 0o777 == 0o644
    warnings = [line for line in lines(server.logs()) if "chmod 600" in line]
    assert len(warnings) == 1
    assert f"chmod 600 {config_path}" in warnings[0]
    assert "inline-secret-value" not in server.logs()

    result = moorage("serve", "--strict-secrets", str(config_path))
    assert result.returncode == 1
    (problem,) = lines(result.stderr)
    assert str(config_path) in problem and "inline-secret-value" not in problem

    config_path.chmod(0o600)
    result = moorage("config", "check", "--strict-secrets", str(config_path))
    assert result.returncode == 0, result.stderr
    assert "chmod" not in result.stderr


def test_secret_in_the_environment_works_with_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "data"
    env = {"REGISTRY_HTTP_SECRET": "secret-given-in-env-42"}
    with run_moorage(tmp_path / "a", moorage_config(root, 0), env=env) as server:
        location = Client(server.url).start_upload("app")
    output = server.logs()
    assert "secret-given-in-env-42" not in output
    warnings = [line for line in lines(output) if "REGISTRY_HTTP_SECRET" in line]
    assert len(warnings) == 1 and "warning" in warnings[0]
    # It is the secret in use: a replica configured with it inline continues the session.
    inline = moorage_config(root, 0, http={"secret": "secret-given-in-env-42"})
    with run_moorage(tmp_path / "b", inline) as replica:
        url = f"{replica.url}{urlsplit(location).path}?{urlsplit(location).query}"
        assert Client(replica.url).request("PATCH", url, data=b"abc").status_code == 202


def test_missing_http_secret_is_random_with_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with run_moorage(tmp_path / "a", moorage_config(root, 0)) as server:
        location = Client(server.url).start_upload("app")
    warnings = [line for line in lines(server.logs()) if "http.secret" in line]
    assert len(warnings) == 1
    assert "warning" in warnings[0] and "load balancer" in warnings[0]
    with run_moorage(tmp_path / "b", moorage_config(root, 0)) as replica:
        url = f"{replica.url}{urlsplit(location).path}?{urlsplit(location).query}"
        response = Client(replica.url).request("PATCH", url, data=b"abc")
        assert response.status_code == 400
        assert error_codes(response) == ["BLOB_UPLOAD_INVALID"]
    # Commands that serve nothing have no use for it, and say nothing of it.
    config = private_file(tmp_path / "config.yml", yaml.safe_dump(moorage_config(root, 0)))
    checked = moorage("fsck", str(config))
    assert checked.returncode == 0 and "http.secret" not in checked.stderr, checked


# -- redaction: every secret, every output channel -----------------------------------------------

HTTP_SECRET = "grep-http-secret-7f3a9c"
REDIS_PASSWORD = "grep-redis-password-41b2"
SENTINEL_PASSWORD = "grep-sentinel-password-c3d1"
PROXY_PASSWORD = "grep-proxy-password-9e8d"
HOOK_TOKEN = "grep-hook-token-5a6b"
ALL_SECRETS = (HTTP_SECRET, REDIS_PASSWORD, SENTINEL_PASSWORD, PROXY_PASSWORD, HOOK_TOKEN)


def _drive_traffic(server: Server, debug: str) -> list[str]:
    """Pushes, pulls and errors of every kind, some carrying a secret in the request; returns
    every response body and header the registry and its debug server sent."""
    client = Client(server.url)
    seen: list[str] = []

    def keep(response: requests.Response) -> requests.Response:
        seen.append(f"{response.status_code} {dict(response.headers)} {response.text}")
        return response

    payload, digest = client.push_image("team/app", "v1", seed="grep")
    keep(client.request("GET", "/v2/team/app/manifests/v1"))
    layer = json.loads(payload)["layers"][0]["digest"]
    keep(client.request("GET", f"/v2/team/app/blobs/{layer}"))
    keep(client.request("HEAD", f"/v2/team/app/blobs/{layer}"))
    keep(client.request("GET", "/v2/team/app/tags/list"))
    keep(client.request("GET", "/v2/_catalog"))
    keep(client.request("GET", "/v2/team/app/manifests/missing"))
    keep(client.request("GET", f"/v2/team/app/blobs/{sha256(b'nothing')}"))
    keep(client.request("GET", "/v2/Bad..Name/manifests/v1"))
    keep(client.request("POST", "/v2/team/app/blobs/uploads/", params={"digest": "sha256:zz"}))
    keep(client.request("GET", "/nowhere/at/all"))
    # Secrets in the path, query, headers and body of requests: the responses echo what the
    # client sent (not kept), the logs must not.
    client.request(
        "GET",
        f"/v2/{HTTP_SECRET}/manifests/{PROXY_PASSWORD}",
        params={"token": REDIS_PASSWORD},
        headers={
            "X-Request-Id": HOOK_TOKEN,
            "X-Forwarded-For": SENTINEL_PASSWORD,
            "Authorization": f"Bearer {HTTP_SECRET}",
        },
    )
    client.request("PUT", f"/v2/team/app/manifests/{HOOK_TOKEN}", data=HTTP_SECRET)
    location = client.start_upload("team/app")
    client.request("PATCH", f"{location.split('?')[0]}?_state={HTTP_SECRET}", data=b"x")
    keep(client.request("DELETE", f"/v2/team/app/manifests/{digest}"))
    # Storage failures: errors logged with their tracebacks.
    assert server.root is not None
    repair = break_storage(server.root)
    try:
        keep(client.request("GET", "/v2/team/app/manifests/v1"))
        keep(requests.get(f"http://{debug}/debug/health", timeout=10))
    finally:
        repair()
    for path in ("/debug/health", "/debug/config", "/metrics"):
        keep(requests.get(f"http://{debug}{path}", timeout=10))
    return seen


@pytest.mark.parametrize("formatter", ["text", "json", "logstash"])
def test_no_secret_in_any_output(tmp_path: Path, formatter: str) -> None:
    redis_file = private_file(tmp_path / "redis-password", REDIS_PASSWORD + "\n")
    sentinel_file = private_file(tmp_path / "sentinel-password", SENTINEL_PASSWORD + "\n")
    debug = debug_addr()
    config = moorage_config(
        tmp_path / "data",
        0,
        log={"level": "debug", "formatter": formatter, "fields": {"service": "registry"}},
        http={"secret": HTTP_SECRET, "debug": {"addr": debug}},
        redis={"addr": "127.0.0.1:6379", "passwordfile": str(redis_file)},
        proxy={"username": "someone"},
        notifications={
            "endpoints": [
                {
                    "name": "hook",
                    "url": "http://127.0.0.1:9/events",
                    "headers": {"Authorization": [f"Bearer {HOOK_TOKEN}"]},
                }
            ]
        },
    )
    env = {
        "REGISTRY_REDIS_SENTINELPASSWORD_FILE": str(sentinel_file),
        "REGISTRY_PROXY_PASSWORD": PROXY_PASSWORD,  # directly: works, with a warning
    }
    outputs: dict[str, str] = {}
    with run_moorage(tmp_path / "run", config, env=env) as server:
        outputs["responses"] = "\n".join(_drive_traffic(server, debug))
        config_path = tmp_path / "run" / f"moorage-{server.host.rpartition(':')[2]}.yml"
        shown = requests.get(f"http://{debug}/debug/config", timeout=10).json()
    outputs["server log"] = server.logs()

    check = moorage("config", "check", str(config_path), env=env)
    assert check.returncode == 0, check.stderr
    outputs["config check stdout"], outputs["config check stderr"] = check.stdout, check.stderr
    # Config errors that quote a value: one that is a secret elsewhere.
    broken = yaml.safe_load(config_path.read_text())
    broken["http"]["draintimeout"] = PROXY_PASSWORD
    broken["http"]["trustedproxies"] = [HTTP_SECRET]
    broken_path = private_file(tmp_path / "broken.yml", yaml.safe_dump(broken))
    for args in (["config", "check"], ["serve"]):
        result = moorage(*args, str(broken_path), env=env)
        assert result.returncode == 1
        problems = lines(result.stderr)
        assert [p for p in problems if "http.draintimeout" in p]
        assert [p for p in problems if "http.trustedproxies" in p]
        outputs[f"{args} stdout"], outputs[f"{args} stderr"] = result.stdout, result.stderr

    for channel, text in outputs.items():
        for secret in ALL_SECRETS:
            assert secret not in text, f"{secret} in {channel}:\n{text}"

    # Redaction did not hide the configuration itself: secrets show as the mask.
    assert shown["http"]["secret"] == MASK
    assert shown["redis"]["password"] == shown["redis"]["sentinelpassword"] == MASK
    assert shown["proxy"]["password"] == MASK
    assert shown["notifications"]["endpoints"][0]["headers"]["Authorization"] == [MASK]
    checked = yaml.safe_load(check.stdout)
    assert checked["proxy"] == shown["proxy"]
    assert checked["storage"] == shown["storage"]
    log_lines = lines(outputs["server log"])
    assert [line for line in log_lines if "REGISTRY_PROXY_PASSWORD" in line]
    assert [line for line in log_lines if "storage" in line and "error" in line]
    if formatter != "text":
        for line in log_lines:
            json.loads(line)


# -- moorage config check ------------------------------------------------------------------------


def test_config_check_prints_the_effective_config(tmp_path: Path) -> None:
    config = moorage_config(
        tmp_path / "data", 0, http={"addr": "127.0.0.1:5000", "secret": "checked-secret-value"}
    )
    path = private_file(tmp_path / "config.yml", yaml.safe_dump(config))
    env = {
        "REGISTRY_STORAGE_DELETE_ENABLED": "false",
        "REGISTRY_LOG_FORMATTER": "json",
        "REGISTRY_REDIS_PASSWORD": "checked-redis-value",
    }
    result = moorage("config", "check", str(path), env=env)
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["storage"]["filesystem"] == {"rootdirectory": str(tmp_path / "data")}
    assert shown["storage"]["delete"] == {"enabled": False}  # from the environment
    assert shown["log"]["formatter"] == "json"
    assert shown["http"]["addr"] == "127.0.0.1:5000"
    assert shown["http"]["secret"] == shown["redis"]["password"] == MASK
    output = result.stdout + result.stderr
    assert "checked-secret-value" not in output and "checked-redis-value" not in output
    (warning,) = lines(result.stderr)
    assert "REGISTRY_REDIS_PASSWORD" in warning

    default = moorage("config", "check", env={"REGISTRY_HTTP_SECRET_FILE": str(path)}, cwd=tmp_path)
    assert default.returncode == 0, default.stderr
    assert yaml.safe_load(default.stdout)["storage"]["filesystem"] == {
        "rootdirectory": str(tmp_path / "data")
    }


def test_config_check_reports_one_line_per_problem(tmp_path: Path) -> None:
    text = """\
version: 0.1
log:
  level: loud
storage:
  filesystem:
    rootdirectory: /tmp/x
  delete:
    enabled: sometimes
http:
  adrr: :5000
"""
    path = private_file(tmp_path / "config.yml", text)
    result = moorage("config", "check", str(path), env={"REGISTRY_CATALOG_MAXENTRIES": "0"})
    assert result.returncode == 1
    assert result.stdout == ""
    problems = lines(result.stderr)
    assert len(problems) == 4, problems
    for problem, key in zip(
        sorted(problems),
        ["catalog.maxentries", "http.adrr", "log.level", "storage.delete.enabled"],
        strict=True,
    ):
        assert problem.startswith(f"moorage: config: {key}: "), problem

    for broken in ("version: 0.1\nstorage: [\n", "- just a list\n"):
        result = moorage("config", "check", str(private_file(tmp_path / "b.yml", broken)))
        assert result.returncode == 1 and result.stdout == ""
        assert len(lines(result.stderr)) == 1, result.stderr
    result = moorage("config", "check", str(tmp_path / "absent.yml"))
    assert result.returncode == 1
    assert len(lines(result.stderr)) == 1 and "absent.yml" in result.stderr


def test_unusable_files_are_named_by_their_key(tmp_path: Path) -> None:
    """Whatever is wrong with a file the config names (a directory, missing, not a file the
    key wants), the one line says which key, which file and what is wrong with it."""
    directory = tmp_path / "a-directory"
    directory.mkdir()
    users = private_file(tmp_path / "users", "")
    acl = private_file(tmp_path / "acl.yml", "rules: []\n")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"auth": {"htpasswd": {"realm": "r", "path": str(directory)}}}, "auth.htpasswd.path"),
        (
            {"auth": {"token": {"realm": "r", "service": "s", "issuer": "i",
                                "rootcertbundle": str(directory)}}},
            "auth.token.rootcertbundle",
        ),
        (
            {"auth": {"token": {"realm": "r", "service": "s", "issuer": "i",
                                "jwks": str(tmp_path / "absent.json")}}},
            "auth.token.jwks",
        ),
        (
            {"auth": {"builtin": {"service": "s", "users": str(users), "acl": str(directory),
                                  "signingkey": str(tmp_path / "key.pem")}}},
            "auth.builtin.acl",
        ),
        (
            {"auth": {"builtin": {"service": "s", "users": str(users), "acl": str(acl),
                                  "signingkey": str(directory)}}},
            "auth.builtin.signingkey",
        ),
        ({"http": {"tls": {"certificate": str(directory), "key": str(users)}}},
         "http.tls.certificate"),
        ({"http": {"tls": {"certificate": str(users), "key": str(tmp_path / "absent.key")}}},
         "http.tls.key"),
        ({"storage": {"filesystem": {"rootdirectory": str(users)}}},
         "storage.filesystem.rootdirectory"),
    ]  # fmt: skip
    for number, (sections, key) in enumerate(cases):
        config = moorage_config(tmp_path / "data", free_port(), http={"secret": "s-e-c-r-e-t"})
        for name, section in sections.items():
            config[name] = {**config.get(name, {}), **section}
        path = private_file(tmp_path / f"config-{number}.yml", yaml.safe_dump(config))
        commands = [("config", "check", str(path))]
        if number == 0:
            commands.append(("serve", str(path)))
        for command in commands:
            result = moorage(*command)
            assert result.returncode == 1, (command, result)
            (problem,) = [
                line for line in lines(result.stderr) if " warning " not in line
            ]  # a warning about the test's own files' modes may precede it
            assert problem.startswith(f"moorage: config: {key}: ") or problem.startswith(
                f"moorage: {key}: "
            ), (command, problem)


def test_serve_refuses_unusable_settings_in_one_line(tmp_path: Path) -> None:
    config = moorage_config(tmp_path / "data", free_port(), http={"secret": "s-e-c-r-e-t"})
    config["storage"]["cache"] = {"blobdescriptor": "redis"}  # and no redis.addr
    path = private_file(tmp_path / "config.yml", yaml.safe_dump(config))
    result = moorage("serve", str(path))
    assert result.returncode == 1
    (problem,) = lines(result.stderr)
    assert problem == "moorage: redis.addr: required when a redis cache is configured"


# -- the debug listener: health ------------------------------------------------------------------


def test_storage_health_check_fails_and_recovers(tmp_path: Path) -> None:
    debug = debug_addr()
    config = moorage_config(
        tmp_path / "data",
        0,
        http={"debug": {"addr": debug}},
        health={"storagedriver": {"enabled": True, "interval": "100ms", "threshold": 2}},
    )
    health_url = f"http://{debug}/debug/health"
    with run_moorage(tmp_path / "run", config) as server:
        client = Client(server.url)
        payload, _ = client.push_image("app", "v1")
        response = requests.get(health_url, timeout=10)
        assert (response.status_code, response.json()) == (200, {})

        assert server.root is not None
        repair = break_storage(server.root)
        try:
            wait_for(lambda: requests.get(health_url, timeout=10).status_code == 503)
            response = requests.get(health_url, timeout=10)
            ((check, error),) = response.json().items()
            assert check == "storagedriver_filesystem"
            assert "Too many levels of symbolic links" in error
            # The API refuses while the storage is unhealthy, without touching it.
            wait_for(lambda: client.request("GET", "/v2/").status_code == 503)
            for path in ("/v2/", "/v2/app/manifests/v1"):
                response = client.request("GET", path)
                assert response.status_code == 503
                assert error_codes(response) == ["UNAVAILABLE"]
        finally:
            repair()
        wait_for(lambda: requests.get(health_url, timeout=10).status_code == 200)
        assert requests.get(health_url, timeout=10).json() == {}
        wait_for(lambda: client.request("GET", "/v2/").status_code == 200)
        pulled = client.request("GET", "/v2/app/manifests/v1")
        assert pulled.status_code == 200 and pulled.content == payload
    output = lines(server.logs())
    failing = [line for line in output if "health check failing" in line]
    assert len(failing) == 1 and " error " in failing[0]
    assert len([line for line in output if "health check passing again" in line]) == 1


def test_health_threshold_counts_periodic_checks_only(tmp_path: Path) -> None:
    """The registry turns unhealthy after `threshold` consecutive failures of the check run
    every `interval`: asking /debug/health often does not count as more failures."""
    debug = debug_addr()
    interval, threshold = 0.3, 3
    config = moorage_config(
        tmp_path / "data",
        0,
        http={"debug": {"addr": debug}},
        health={"storagedriver": {"enabled": True, "interval": "300ms", "threshold": threshold}},
    )
    health_url = f"http://{debug}/debug/health"
    with run_moorage(tmp_path / "run", config) as server:
        Client(server.url).push_image("app", "v1")
        assert server.root is not None
        repair = break_storage(server.root)
        broken = time.monotonic()
        try:
            with requests.Session() as session:
                while session.get(health_url, timeout=10).status_code == 200:
                    assert time.monotonic() - broken < 10
                    time.sleep(0.01)
            # The first failing check may run at once; the threshold-th one, 2 intervals on.
            assert time.monotonic() - broken >= (threshold - 1) * interval * 0.9
        finally:
            repair()


def test_health_without_periodic_checks_keeps_serving(tmp_path: Path) -> None:
    """`health.storagedriver.enabled: false` (the default): the API does not refuse; the debug
    server's view still probes the storage when asked."""
    debug = debug_addr()
    config = moorage_config(tmp_path / "data", 0, http={"debug": {"addr": debug}})
    with run_moorage(tmp_path / "run", config) as server:
        client = Client(server.url)
        client.push_image("app", "v1")
        assert server.root is not None
        repair = break_storage(server.root)
        try:
            assert client.request("GET", "/v2/").status_code == 200
        finally:
            repair()
        response = requests.get(f"http://{debug}/debug/health", timeout=10)
        assert (response.status_code, response.json()) == (200, {})


# -- the debug listener: metrics -----------------------------------------------------------------


def test_metrics_count_requests_bytes_uploads_storage_and_cache(tmp_path: Path) -> None:
    debug = debug_addr()
    root = tmp_path / "data"
    config = moorage_config(root, 0, http={"debug": {"addr": debug}})
    config["storage"]["cache"] = {"blobdescriptor": "inmemory"}
    with run_moorage(tmp_path / "run", config) as server:
        client = Client(server.url)
        before = scrape(debug)
        assert value(before, "moorage_uploads_in_flight") == 0
        payload, _ = client.push_image("app", "v1", seed="metrics")
        document = json.loads(payload)
        layer = document["layers"][0]
        pushed = document["config"]["size"] + layer["size"]
        for _ in range(2):
            assert client.request("GET", "/v2/app/manifests/v1").status_code == 200
        blob = client.request("GET", f"/v2/app/blobs/{layer['digest']}")
        assert blob.status_code == 200
        assert client.request("GET", "/v2/app/manifests/nope").status_code == 404
        for _ in range(3):
            assert client.request("HEAD", f"/v2/app/blobs/{layer['digest']}").status_code == 200
        samples = scrape(debug)

        assert requests_total(samples, UPLOADS, "POST", 201) == 2
        assert requests_total(samples, MANIFEST, "PUT", 201) == 1
        assert requests_total(samples, MANIFEST, "GET", 200) == 2
        assert requests_total(samples, MANIFEST, "GET", 404) == 1
        assert requests_total(samples, BLOB, "GET", 200) == 1
        assert requests_total(samples, BLOB, "HEAD", 200) == 3
        duration = "moorage_http_request_duration_seconds"
        assert value(samples, f"{duration}_count", route=MANIFEST, method="GET") == 3
        count = f"{duration}_count"
        assert value(samples, count, route=MANIFEST, method="GET", status="200") == 2
        assert value(samples, count, route=MANIFEST, method="GET", status="404") == 1
        assert value(samples, f"{duration}_sum", route=MANIFEST, method="GET") > 0
        buckets = [s for s in samples if s[0] == f"{duration}_bucket" and s[1]["route"] == MANIFEST]
        assert {s[1]["le"] for s in buckets} >= {"0.005", "0.1", "1.0", "+Inf"}
        assert value(samples, "moorage_http_request_bytes_total", route=UPLOADS) == pushed
        assert value(samples, "moorage_http_request_bytes_total", route=MANIFEST) == len(payload)
        # Bytes out are the bodies' bytes: the blob once (HEAD sends none), the manifest twice.
        assert value(samples, "moorage_http_response_bytes_total", route=BLOB) == layer["size"]
        assert value(samples, "moorage_http_response_bytes_total", route=MANIFEST) == (
            2 * len(payload) + len(client.request("GET", "/v2/app/manifests/nope").content)
        )
        storage = "moorage_storage_operation_duration_seconds_count"
        for operation in ("stat", "get_content", "put_content", "writer", "move"):
            assert value(samples, storage, driver="filesystem", operation=operation) > 0, operation
        hits = value(samples, "moorage_cache_requests_total", cache="inmemory", result="hit")
        misses = value(samples, "moorage_cache_requests_total", cache="inmemory", result="miss")
        assert misses >= 1 and hits >= 3
        for _ in range(2):
            client.request("HEAD", f"/v2/app/blobs/{layer['digest']}")
        later = scrape(debug)
        assert value(later, "moorage_cache_requests_total", result="hit") >= hits + 2
        assert value(later, "moorage_cache_requests_total", result="miss") == misses


def test_uploads_in_flight_gauge(tmp_path: Path) -> None:
    debug = debug_addr()
    config = moorage_config(tmp_path / "data", 0, http={"debug": {"addr": debug}})
    with run_moorage(tmp_path / "run", config) as server:
        client = Client(server.url)
        location = client.start_upload("app")
        midway, release = threading.Event(), threading.Event()

        def on_block(index: int) -> None:
            if index == 4:
                midway.set()
                assert release.wait(30)

        body = RepeatedBody(b"u" * 65536, 8, on_block)
        result: list[int] = []
        sender = threading.Thread(
            target=lambda: result.append(client.request("PATCH", location, data=body).status_code)
        )
        sender.start()
        try:
            assert midway.wait(30)
            wait_for(lambda: value(scrape(debug), "moorage_uploads_in_flight") == 1)
        finally:
            release.set()
            sender.join(30)
        assert result == [202]
        assert value(scrape(debug), "moorage_uploads_in_flight") == 0
        patched = value(scrape(debug), "moorage_http_request_bytes_total", route=SESSION)
        assert patched == 8 * 65536


def test_prometheus_can_be_switched_off(tmp_path: Path) -> None:
    debug = debug_addr()
    config = moorage_config(
        tmp_path / "data", 0, http={"debug": {"addr": debug, "prometheus": {"enabled": False}}}
    )
    with run_moorage(tmp_path / "run", config):
        assert requests.get(f"http://{debug}/metrics", timeout=10).status_code == 404
        assert requests.get(f"http://{debug}/debug/health", timeout=10).status_code == 200


# -- logs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("formatter", ["json", "logstash"])
def test_json_log_lines_carry_fields_and_access_details(tmp_path: Path, formatter: str) -> None:
    config = moorage_config(
        tmp_path / "data",
        0,
        log={"level": "info", "formatter": formatter, "fields": {"service": "registry", "n": 7}},
    )
    with run_moorage(tmp_path / "run", config) as server:
        client = Client(server.url)
        payload, _ = client.push_image("app", "v1")
        response = client.request(
            "GET",
            "/v2/app/manifests/v1",
            headers={"X-Request-Id": "req-4242", "X-Forwarded-For": "203.0.113.9"},
        )
        assert response.headers["X-Request-Id"] == "req-4242"
        missing = client.request("GET", "/v2/app/manifests/nope")
    entries = [json.loads(line) for line in lines(server.logs())]
    assert entries
    message, stamp = ("message", "@timestamp") if formatter == "logstash" else ("msg", "time")
    for entry in entries:
        assert entry["service"] == "registry" and entry["n"] == 7
        assert {message, stamp, "level", "logger"} <= set(entry)
        if formatter == "logstash":
            assert entry["@version"] == "1"
    access = [e for e in entries if e["logger"] == "moorage.access"]
    (pull,) = [e for e in access if e["request_id"] == "req-4242"]
    assert pull["method"] == "GET"
    assert pull["route"] == MANIFEST
    assert pull["status"] == 200
    assert pull["bytes_out"] == len(payload)
    assert pull["bytes_in"] == 0
    assert isinstance(pull["duration_ms"], int | float) and pull["duration_ms"] >= 0
    assert pull["remote"] == "203.0.113.9"  # through a trusted proxy (loopback)
    assert pull["user"] == "-"
    (not_found,) = [e for e in access if e["request_id"] == missing.headers["X-Request-Id"]]
    assert not_found["status"] == 404 and not_found["remote"] == "127.0.0.1"
    (put,) = [e for e in access if e["method"] == "PUT"]
    assert put["bytes_in"] == len(payload) and put["status"] == 201
    assert len(access) == 6  # 2 blob POSTs, the manifest PUT, 2 GETs and _wait_ready's GET


def test_text_access_line(tmp_path: Path) -> None:
    config = moorage_config(tmp_path / "data", 0, log={"fields": {"environment": "staging"}})
    with run_moorage(tmp_path / "run", config) as server:
        response = Client(server.url).request("GET", "/v2/", headers={"X-Request-Id": "r-17"})
        assert response.status_code == 200
    (line,) = [line for line in lines(server.logs()) if "request_id=r-17" in line]
    for part in (
        " info moorage.access: GET /v2/ 200",
        "method=GET",
        "route=/v2/",
        "status=200",
        "bytes_in=0",
        "bytes_out=2 ",
        "duration_ms=",
        "remote=127.0.0.1",
        "user=-",
        "environment=staging",
    ):
        assert part in line, (part, line)


def test_access_log_disabled(tmp_path: Path) -> None:
    config = moorage_config(tmp_path / "data", 0, log={"accesslog": {"disabled": True}})
    with run_moorage(tmp_path / "run", config) as server:
        Client(server.url).push_image("app", "v1")
    output = lines(server.logs())
    assert [line for line in output if "listening" in line]
    assert not [line for line in output if "moorage.access" in line]


def test_log_level_filters_lines(tmp_path: Path) -> None:
    config = moorage_config(tmp_path / "data", 0, log={"level": "warn"})
    with run_moorage(tmp_path / "run", config) as server:
        Client(server.url).push_image("app", "v1")
    output = lines(server.logs())
    assert not [line for line in output if " info " in line or " debug " in line]
    # Warnings still show: the config file holds no secret, so http.secret's is the one.
    assert [line for line in output if " warning " in line and "http.secret" in line]


@pytest.mark.parametrize("formatter", ["text", "json"])
def test_every_log_line_is_one_event_even_at_debug(tmp_path: Path, formatter: str) -> None:
    """At debug the HTTP layer logs what it cannot parse, with a traceback: a TLS handshake on
    the plain port, a request line with a NUL. Each is still one line, as is an access line for
    a path that decodes to a newline."""
    config = moorage_config(tmp_path / "data", 0, log={"level": "debug", "formatter": formatter})
    with run_moorage(tmp_path / "run", config) as server:
        port = int(server.host.rpartition(":")[2])
        hello = bytes.fromhex("16030100a5010000a10303") + os.urandom(32) + b"\x00" * 40
        for raw in (hello, b"GET /v2/\x00 HTTP/1.1\r\nHost: x\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(raw)
                with contextlib.suppress(OSError):
                    sock.recv(4096)
        forged = requests.get(f"{server.url}/v2/a%0A2026-01-01T00:00:00.000Z%20info/tags/list")
        assert forged.status_code == 400
        requests.get(f"{server.url}/v2/", timeout=10).raise_for_status()
        time.sleep(0.2)  # the access lines of the last loop iteration
    output = server.logs().splitlines()
    assert any("Traceback" in line for line in output), server.logs()
    for line in output:
        if formatter == "json":
            assert isinstance(json.loads(line), dict), line
        else:
            assert line[:4].isdigit() and line[10] == "T", line
