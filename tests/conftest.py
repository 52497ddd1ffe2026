from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import (
    RedisServer,
    S3Server,
    Server,
    moorage_config,
    run_moorage,
    run_redis,
    run_seaweedfs,
)


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
def redis_server() -> Iterator[RedisServer]:
    """One Redis for the whole run; tests keep apart by database or key."""
    with run_redis() as server:
        yield server
