"""Upload sessions as the purger and fsck see them, on the in-memory driver."""

from __future__ import annotations

import asyncio
import time

from moorage.registry import purge
from moorage.registry.repository import Registry
from moorage.storage import driver as drivers
from moorage.storage import paths


def test_sessions_their_start_and_which_are_stale() -> None:
    async def scenario() -> None:
        driver = drivers.create("inmemory", {})
        registry = Registry(driver)
        starts = {
            "old": b"2001-02-03T04:05:06.123456789Z",
            "new": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()).encode(),
            "garbled": b"\xff\xfe not a time",
        }
        for upload_id, started in starts.items():
            await driver.put_content(paths.upload_started_at("team/app", upload_id), started)
            await driver.put_content(paths.upload_data("team/app", upload_id), b"")
        found = {s.upload_id: s async for s in purge.sessions(registry)}
        assert set(found) == set(starts)
        assert found["old"].started == 981173106.0
        assert found["garbled"].started is None
        stale = [s.upload_id for s in found.values() if purge.is_stale(s, 3600)]
        assert stale == ["old"]
        assert await purge.purge_uploads(registry, 3600) == [paths.upload_dir("team/app", "old")]
        left = sorted([s.upload_id async for s in purge.sessions(registry)])
        assert left == ["garbled", "new"]

    asyncio.run(scenario())
