from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import Server, run_moorage


@pytest.fixture
def moorage(tmp_path: Path) -> Iterator[Server]:
    """A moorage process on the filesystem driver, deletes enabled, on a free loopback port."""
    with run_moorage(tmp_path / "moorage") as server:
        yield server
