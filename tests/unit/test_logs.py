"""The access log's own path (logs.access) writes what the record path writes, redacted the same
way, and the coalescing handler writes one loop iteration's lines together."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moorage import logs
from moorage.config.schema import Config
from moorage.config.secrets import MASK, Redactor

SECRET = 's3cr"et-value\\123'  # a quote and a backslash: JSON would escape them
EXTRA = {"method": "GET", "route": "/v2/", "status": 200, "remote": "127.0.0.1", "user": "-"}


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    access_lines = logs._access_lines
    yield
    root.handlers, root.level = handlers, level
    logs._access_lines = access_lines
    logging.getLogger(logs.ACCESS).disabled = False


def configured(formatter: str = "text", level: str = "info", **log: Any) -> io.StringIO:
    config = Config.model_validate({
        "version": "0.1",
        "storage": {"inmemory": {}},
        "log": {"formatter": formatter, "level": level, "fields": {"service": "registry"}, **log},
    })
    stream = io.StringIO()
    logs.configure(config, Redactor([SECRET]), stream)
    return stream


def without_time(line: str, formatter: str) -> Any:
    if formatter == "text":
        return line.split(" ", 1)[1]
    entry = json.loads(line)
    entry.pop("time", None)
    entry.pop("@timestamp", None)
    return entry


@pytest.mark.parametrize("formatter", ["text", "json", "logstash"])
def test_access_lines_are_what_a_record_would_write(formatter: str) -> None:
    stream = configured(formatter)
    logs.access("GET /v2/ 200", dict(EXTRA))
    logging.getLogger(logs.ACCESS).info("GET /v2/ 200", extra=dict(EXTRA))
    fast, record = stream.getvalue().splitlines()
    assert without_time(fast, formatter) == without_time(record, formatter)
    assert "service" in fast and "remote" in fast


@pytest.mark.parametrize("formatter", ["text", "json", "logstash"])
def test_access_lines_are_redacted_in_message_and_fields(formatter: str) -> None:
    stream = configured(formatter)
    logs.access(f"GET /v2/{SECRET} 404", {**EXTRA, "user": SECRET, "route": "unmatched"})
    output = stream.getvalue()
    assert output.count("\n") == 1
    assert SECRET not in output and json.dumps(SECRET)[1:-1] not in output
    assert output.count(MASK) == 2


def test_access_lines_follow_level_and_disabled() -> None:
    stream = configured(level="warn")
    logs.access("GET /v2/ 200", dict(EXTRA))
    assert stream.getvalue() == ""
    stream = configured(accesslog={"disabled": True})
    logs.access("GET /v2/ 200", dict(EXTRA))
    assert stream.getvalue() == ""
    logging.getLogger("moorage").info("still logging")
    assert "still logging" in stream.getvalue()


def test_coalescing_handler_writes_one_iterations_lines_together(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with open(path, "w") as file:
        handler = logs.CoalescingHandler(file)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test.coalescing")
    logger.propagate = False
    logger.addHandler(handler)
    try:

        async def iteration() -> tuple[str, str]:
            for number in range(3):
                logger.warning("line %d", number)
            during = path.read_text()
            await asyncio.sleep(0)  # the loop runs the scheduled flush
            return during, path.read_text()

        during, after = asyncio.run(iteration())
        assert during == ""
        assert after == "line 0\nline 1\nline 2\n"
        logger.warning("no loop")  # outside a loop: written at once
        assert path.read_text().endswith("no loop\n")
    finally:
        logger.removeHandler(handler)
        handler.close()
