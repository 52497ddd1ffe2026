from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import Phase, settings

from tests.emulators import AzureServer, GcsServer, run_azurite, run_fake_gcs
from tests.integration.docker_support import (
    Built,
    Docker,
    Engine,
    build_base,
    build_moorage,
    run_engine,
)
from tests.servers import (
    RedisServer,
    S3Server,
    Server,
    moorage_config,
    run_moorage,
    run_redis,
    run_seaweedfs,
)

# Property tests (Hypothesis). `ci`, the default, is bounded so that all of them together add
# about a minute and a half on 2 cores, and derandomized: each run tries the same examples, so
# a failure in CI is the same failure on any machine, and nothing is written to the checkout
# (derandomized runs keep no example database). It reports a failure as first found: shrinking
# one to its smallest form can take minutes of requests. `HYPOTHESIS_PROFILE=long` explores
# thousands of fresh examples per test, shrinks what fails and keeps it in .hypothesis/ to try
# first next time. Requests go to real servers over loopback: no per-example deadline in either.
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
)
settings.register_profile("long", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def moorage(tmp_path: Path) -> Iterator[Server]:
    """A moorage process on the filesystem driver with the in-memory blob descriptor cache (as
    the embedded default runs), deletes enabled, on a free loopback port."""
    config = moorage_config(tmp_path / "moorage" / "data", 0)
    config["storage"]["cache"] = {"blobdescriptor": "inmemory"}
    with run_moorage(tmp_path / "moorage", config) as server:
        yield server


@pytest.fixture(scope="session")
def s3_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS for the whole run; tests keep apart by bucket or root directory."""
    with run_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def gcs_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsServer]:
    """One GCS emulator for the whole run; tests keep apart by bucket or root directory."""
    with run_fake_gcs(tmp_path_factory.mktemp("fake-gcs")) as server:
        yield server


@pytest.fixture(scope="session")
def azure_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureServer]:
    """One Azurite for the whole run; tests keep apart by container or root directory."""
    with run_azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis for the whole run; tests keep apart by database or key."""
    with run_redis() as server:
        yield server


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Engine]:
    """One docker engine for the whole run (tests/integration/docker_support.py)."""
    with run_engine() as engine:
        yield engine


@pytest.fixture
def docker(docker_engine: Engine, tmp_path: Path) -> Docker:
    """The docker CLI on the session's engine, with a configuration (credentials) of this
    test's own."""
    return Docker(docker_engine, tmp_path / "docker-config")


@pytest.fixture(scope="session")
def docker_session(docker_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Docker:
    """The docker CLI for what the session builds and shares."""
    return Docker(docker_engine, tmp_path_factory.mktemp("docker-config"))


@pytest.fixture(scope="session")
def docker_base(docker_session: Docker, request: pytest.FixtureRequest) -> str:
    """The local Debian base image, built once per run (its tar kept in pytest's cache)."""
    return build_base(docker_session, request.config.cache.mkdir("moorage-docker-base"))


@pytest.fixture(scope="session")
def moorage_image(docker_session: Docker, docker_base: str) -> Built:
    """`docker build -t moorage .` of this checkout on the local base, once per run."""
    return build_moorage(docker_session, docker_base)


@pytest.fixture(scope="session")
def docker_network(docker_session: Docker) -> Iterator[str]:
    """A bridge network for the session's containers, which publish their ports on it."""
    name = f"moorage-test-{os.getpid()}"
    docker_session("network", "create", name)
    yield name
    docker_session("network", "rm", name, check=False)
