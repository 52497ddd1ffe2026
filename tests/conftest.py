from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Server, moorage_config, run_moorage


@pytest.fixture
def moorage(tmp_path: Path) -> Iterator[Server]:
    """A moorage process on the filesystem driver with the in-memory blob descriptor cache (as
    the embedded default runs), deletes enabled, on a free loopback port."""
    config = moorage_config(tmp_path / "moorage" / "data", 0)
    config["storage"]["cache"] = {"blobdescriptor": "inmemory"}
    with run_moorage(tmp_path / "moorage", config) as server:
        yield server
