"""deploy/moorage.service under a real systemd: PID 1 of a container made from the moorage image
(which has moorage in /opt/moorage, where the unit looks) with systemd added and the image's own
user removed, as on a host where the unit's DynamicUser= makes one. The unit file and
deploy/moorage.yml are used as they are, but for the port.

Checked: `systemd-analyze verify` and `security` on the unit; `systemctl start` with every
hardening setting it has; the http.secret read from $CREDENTIALS_DIRECTORY (LoadCredential=,
with --strict-secrets); a registry root distribution wrote (as root) taken over in the
StateDirectory; docker push and pull; `systemctl stop` draining.

The container needs what systemd needs to sandbox a service: every capability this host grants
(this one withholds CAP_SYS_RESOURCE, so --privileged is refused), the cgroup tree writable,
and its root mount shared, which systemd leaves to a container's manager and LoadCredential=
relies on."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.images import make_image
from tests.integration.docker_support import MOORAGE_IMAGE, REPOSITORY, Built, Docker, build_stdin
from tests.integration.test_container import push_and_pull, skopeo_copy, small_image
from tests.servers import free_port, run_reference_registry

pytestmark = [pytest.mark.interop, pytest.mark.timeout(900)]

SYSTEMD_IMAGE = "moorage-test/systemd"
SYSTEMD = f"""
FROM {MOORAGE_IMAGE}
USER root
RUN apt-get update -q \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \\
        systemd systemd-sysv \\
    && rm -rf /var/lib/apt/lists/* \\
    && userdel moorage
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["sh", "-c", "mount --make-rshared / && exec /sbin/init"]
CMD []
"""
# Linux capabilities by number, as /proc/PID/status counts them.
CAPABILITIES = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
]  # fmt: skip
UNIT = "moorage.service"


def capability_flags() -> list[str]:
    """--cap-add ALL, less what this process's bounding set lacks (docker cannot grant it)."""
    status = Path("/proc/self/status").read_text()
    match = re.search(r"^CapBnd:\s*([0-9a-f]+)$", status, re.M)
    assert match, status
    bounding = int(match.group(1), 16)
    missing = [name for bit, name in enumerate(CAPABILITIES) if not bounding >> bit & 1]
    return ["--cap-add", "ALL", *(f"--cap-drop={name}" for name in missing)]


@pytest.fixture(scope="module")
def systemd_image(docker_session: Docker, moorage_image: Built) -> str:
    return build_stdin(docker_session, SYSTEMD_IMAGE, SYSTEMD)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        time.sleep(0.5)


@pytest.fixture
def machine(docker: Docker, systemd_image: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The systemd container with the unit in /etc/systemd/system and /etc/moorage holding
    deploy/moorage.yml (on a free port) and the secret; yields its name and the port."""
    port = free_port()
    etc = tmp_path / "etc-moorage"
    (etc / "credentials").mkdir(parents=True)
    config = yaml.safe_load((REPOSITORY / "deploy" / "moorage.yml").read_text())
    config["http"]["addr"] = f"127.0.0.1:{port}"
    (etc / "config.yml").write_text(yaml.safe_dump(config))
    secret = etc / "credentials" / "http-secret"
    secret.write_text("a-secret-for-systemd-only\n")
    secret.chmod(0o600)
    name = f"moorage-systemd-{port}"
    docker(
        "run", "-d", "--name", name, *capability_flags(),
        "--security-opt", "seccomp=unconfined", "--network", "host",
        "--tmpfs", "/run", "--tmpfs", "/run/lock", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "-v", f"{REPOSITORY / 'deploy' / UNIT}:/etc/systemd/system/{UNIT}:ro",
        "-v", f"{etc}:/etc/moorage:ro", systemd_image,
    )  # fmt: skip
    try:

        def booted() -> bool:
            state = docker("exec", name, "systemctl", "is-system-running", check=False)
            return state.stdout.strip() in ("running", "degraded")

        wait_until(booted, "systemd up")
        yield name, port
    finally:
        docker("rm", "-f", "-v", name, check=False)


def journal(docker: Docker, name: str) -> str:
    return docker("exec", name, "journalctl", "-u", UNIT, "--no-pager", "-o", "cat").stdout


def test_the_unit_runs_hardened_under_systemd(
    docker: Docker, machine: tuple[str, int], tmp_path: Path
) -> None:
    name, port = machine
    verified = docker("exec", name, "systemd-analyze", "verify", f"/etc/systemd/system/{UNIT}")
    assert verified.stdout + verified.stderr == ""
    security = docker("exec", name, "systemd-analyze", "security", "--no-pager", UNIT).stdout
    exposure = re.search(rf"Overall exposure level for {UNIT}: ([0-9.]+) (\w+)", security)
    assert exposure and float(exposure.group(1)) <= 2.0, security

    # A registry root distribution wrote as root, moved into the state directory.
    image = make_image(tmp_path / "layout", "v1", seed="systemd")
    with run_reference_registry(tmp_path / "distribution", tmp_path / "data") as reference:
        skopeo_copy(image.ref, f"docker://{reference.host}/team/moved:v1")
    docker("exec", name, "mkdir", "-p", "/var/lib/moorage")
    docker("cp", f"{tmp_path / 'data'}/.", f"{name}:/var/lib/moorage")

    docker("exec", name, "systemctl", "start", UNIT)
    host = f"127.0.0.1:{port}"
    wait_until(lambda: "moorage listening on" in journal(docker, name), "moorage listening")
    logged = journal(docker, name)
    assert f"listening on http://{host}, storage filesystem at /var/lib/moorage" in logged
    assert "http.secret" not in logged  # read from the credential, no random one

    ref = f"{host}/team/moved:v1"
    docker("pull", ref)
    assert docker.inspect(ref, kind="image")[0]["Id"] == image.config_digest
    small_image(docker, tmp_path, "app:local", "systemd")
    push_and_pull(docker, "app:local", f"{host}/team/app:v1")

    # Run by the user systemd made, owning the state directory, the moved data included.
    pid = docker("exec", name, "systemctl", "show", "-P", "MainPID", UNIT).stdout.strip()
    status = docker("exec", name, "cat", f"/proc/{pid}/status").stdout
    uid = re.search(r"^Uid:\s+(\d+)", status, re.M)
    assert uid and uid.group(1) != "0", status
    owners = docker(
        "exec", name, "sh", "-c", "find /var/lib/private/moorage -printf '%U\\n' | sort -u"
    ).stdout.split()  # fmt: skip
    assert owners == [uid.group(1)]

    docker("exec", name, "systemctl", "stop", UNIT)
    assert "moorage stopping: draining" in journal(docker, name)
    result = docker("exec", name, "systemctl", "show", "-P", "Result", UNIT).stdout.strip()
    assert result == "success"
