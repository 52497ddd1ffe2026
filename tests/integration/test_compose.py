"""deploy/compose.yaml with docker-compose, as the README's "Containers" section runs it: the
secrets made by deploy/init-secrets, a TLS certificate and a users file, `docker-compose up -d`,
`docker login` and `docker push` through nginx over HTTPS with the CA the engine trusts, a pull
back, `docker-compose down` and up again with the data kept. Also the jwilder/nginx-proxy
example, which can only be checked (`docker-compose config`): its images cannot be had here.

redis and nginx are stand-ins built from the session's Debian base with apt and tagged with the
names the compose file uses; they run as the official images do (Redis as uid 999, nginx's
master as root, its conf.d included)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.docker_support import (
    BASE_IMAGE,
    MOORAGE_IMAGE,
    REGISTRY_NAME,
    REPOSITORY,
    Built,
    Docker,
    build_stdin,
)
from tests.integration.http_support import make_ca
from tests.integration.test_container import push_and_pull, small_image

pytestmark = [pytest.mark.interop, pytest.mark.timeout(900)]

DEPLOY = REPOSITORY / "deploy"
PASSWORD = "alice-compose-pw"
REDIS_IMAGE = "redis:7"
NGINX_IMAGE = "nginx:stable"

# Redis and nginx from Debian, one layer for both.
SERVICES = f"""
FROM {BASE_IMAGE}
RUN groupadd --system --gid 999 redis \\
    && useradd --system --uid 999 --gid 999 --home-dir /data --no-create-home \\
        --shell /usr/sbin/nologin redis \\
    && apt-get update -q \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \\
        redis-server nginx \\
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \\
    && mkdir -p /data && chown redis:redis /data \\
    && ln -sf /dev/stdout /var/log/nginx/access.log \\
    && ln -sf /dev/stderr /var/log/nginx/error.log
"""
REDIS = """
FROM moorage-test/services
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server"]
"""
NGINX = """
FROM moorage-test/services
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
"""


@pytest.fixture(scope="module")
def stand_ins(docker_session: Docker, docker_base: str) -> None:
    build_stdin(docker_session, "moorage-test/services", SERVICES)
    build_stdin(docker_session, REDIS_IMAGE, REDIS)
    build_stdin(docker_session, NGINX_IMAGE, NGINX)


def free_loopback6_port() -> int:
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def compose_project(docker: Docker, project: Path, env: dict[str, str]) -> Iterator[str]:
    """The project's name; whatever it left (containers, network, volumes) goes at the end."""
    name = f"moorage{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        docker.compose(project, "-p", name, "down", "-v", "--timeout", "60", env=env, check=False)


def deployment(tmp_path: Path, docker: Docker, port: int) -> Path:
    """deploy/ as a user has it after following the README: its files, the secrets from
    init-secrets, a certificate for registry.test (from a CA the engine is told to trust) with
    its key, and a users file made with the image's own `moorage user add`."""
    project = tmp_path / "deploy"
    shutil.copytree(DEPLOY, project, ignore=shutil.ignore_patterns("secrets", "certs", "users"))
    subprocess.run([project / "init-secrets"], check=True, capture_output=True, timeout=60)
    ca = make_ca(tmp_path / "pki")
    cert, key = ca.issue(tmp_path / "pki", "registry", server=True, dns=(REGISTRY_NAME,))
    (project / "certs").mkdir()
    shutil.copy(cert, project / "certs" / "tls.crt")
    shutil.copy(key, project / "secrets" / "tls.key")
    docker.engine.trust(f"{REGISTRY_NAME}:{port}", ca.cert)
    docker(
        "run", "--rm", "-i", "-v", f"{project / 'auth'}:/auth", MOORAGE_IMAGE,
        "user", "add", "alice", "--users", "/auth/users", "--password-stdin",
        input=f"{PASSWORD}\n",
    )  # fmt: skip
    return project


def login(docker: Docker, host: str, timeout: float = 120) -> None:
    """`docker login`, retried while the services come up."""
    deadline = time.monotonic() + timeout
    while True:
        result = docker(
            "login", "-u", "alice", "--password-stdin", host, input=f"{PASSWORD}\n", check=False
        )
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"docker login {host} failed: {result.stderr}")
        time.sleep(1)


def test_compose_up_push_through_tls_down_and_up_again(
    docker: Docker, moorage_image: Built, stand_ins: None, tmp_path: Path
) -> None:
    port = free_loopback6_port()
    host = f"{REGISTRY_NAME}:{port}"
    project = deployment(tmp_path, docker, port)
    env = {"MOORAGE_HTTPS": f"[::1]:{port}"}
    with compose_project(docker, project, env) as name:
        docker.compose(project, "-p", name, "up", "-d", env=env)
        login(docker, host)
        small_image(docker, tmp_path, "app:local", "compose")
        ref = f"{host}/alice/app:v1"
        push_and_pull(docker, "app:local", ref)

        containers = docker.compose(project, "-p", name, "ps", "-q", env=env).stdout.split()
        assert len(containers) == 3
        services = {c["Config"]["Labels"]["com.docker.compose.service"]: c
                    for c in docker.inspect(*containers)}  # fmt: skip
        # The image's HEALTHCHECK, through the config's debug listener.
        moorage = services["moorage"]["Name"].lstrip("/")
        probe = docker("exec", moorage, "moorage-entrypoint", "health").stdout.strip()
        assert probe == "http://localhost:5001/debug/health: answered 200"
        # moorage caches in Redis, signed in with the password from its secret file.
        redis = services["redis"]["Name"].lstrip("/")
        keys = docker(
            "exec", redis, "sh", "-c",
            'redis-cli --no-auth-warning -a "$(sed -n "s/^requirepass //p" '
            '/run/secrets/redis.conf)" dbsize',
        ).stdout  # fmt: skip
        assert int(keys) > 0
        # No secret in any container's settings or environment, nor in moorage's log.
        secrets = [
            (project / "secrets" / name).read_text().strip()
            for name in ("http-secret", "redis-password")
        ]
        shown = docker("inspect", *containers).stdout + docker("logs", moorage).stderr
        assert not [secret for secret in secrets if secret in shown]

        docker.compose(project, "-p", name, "down", env=env)
        volumes = docker("volume", "ls", "-q").stdout.split()
        assert f"{name}_registry-data" in volumes
        docker("rmi", ref)
        docker.compose(project, "-p", name, "up", "-d", env=env)
        login(docker, host)
        docker("pull", ref)


def test_nginx_proxy_example_is_a_valid_compose_file(docker: Docker, tmp_path: Path) -> None:
    """jwilder/nginx-proxy with its ACME companion: routed by VIRTUAL_HOST and VIRTUAL_PORT, a
    per-host file lifting nginx's 1 MiB body limit. Checked, not run (no such image here)."""
    example = DEPLOY / "nginx-proxy"
    env = {"REGISTRY_HOST": "registry.example.com", "LETSENCRYPT_EMAIL": "ops@example.com"}
    result = docker.compose(example, "config", env=env)
    config = yaml.safe_load(result.stdout)
    moorage = config["services"]["moorage"]
    environment = moorage["environment"]
    assert environment["VIRTUAL_HOST"] == environment["LETSENCRYPT_HOST"] == "registry.example.com"
    assert environment["VIRTUAL_PORT"] == "5000"
    assert not [name for name in environment if name.startswith("REGISTRY_")]
    proxy = config["services"]["nginx-proxy"]
    (vhost,) = [v for v in proxy["volumes"] if v.endswith(":/etc/nginx/vhost.d:rw")]
    per_host = Path(vhost.split(":")[0]) / "registry.example.com"
    assert per_host == example / "vhost.d" / "registry.example.com"
    assert "client_max_body_size 0;" in per_host.read_text()
    companion = config["services"]["acme-companion"]
    assert vhost in companion["volumes"]
    assert companion["environment"]["DEFAULT_EMAIL"] == "ops@example.com"
    # Without the host name the file refuses to start, naming what to set.
    missing = docker.compose(example, "config", check=False)
    assert missing.returncode != 0 and "set REGISTRY_HOST" in missing.stderr
