"""The access log's own path (logs.access) writes what the record path writes, redacted the same
way, and the coalescing handler writes one loop iteration's lines together."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
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


def test_a_line_that_is_not_utf8_is_escaped_not_dropped(tmp_path: Path) -> None:
    """aiohttp decodes a client's header bytes with surrogateescape: an access line carrying
    them is written, escaped."""
    path = tmp_path / "log"
    config = Config.model_validate({"version": "0.1", "storage": {"inmemory": {}}})
    with open(path, "w") as file:
        logs.configure(config, Redactor([]), file)
    request_id = b"a\xffb".decode("utf-8", "surrogateescape")
    logs.access("GET /v2/ 200", {**EXTRA, "request_id": request_id})
    logging.getLogger("moorage").info("also %s", request_id)
    output = path.read_text()
    assert "request_id=a\\udcffb" in output
    assert "also a\\udcffb" in output
    assert "Logging error" not in output


def test_a_broken_stream_loses_lines_without_spinning_the_loop(tmp_path: Path) -> None:
    reading, writing = os.pipe()
    os.close(reading)  # whoever read the log went away: every write is EPIPE
    with os.fdopen(writing, "w") as stream:
        handler = logs.CoalescingHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test.broken")
    logger.propagate = False
    logger.addHandler(handler)
    errors: list[dict[str, Any]] = []
    ticks = 0

    async def scenario() -> None:
        nonlocal ticks
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        logger.warning("lost")
        for _ in range(50):  # the loop goes on idle, not flushing again and again
            await asyncio.sleep(0)
            ticks += 1

    try:
        asyncio.run(scenario())
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert ticks == 50
    assert errors == []


def test_writes_are_whole_lines_of_at_most_pipe_buf_bytes() -> None:
    lines = [f"line {n:04d} {'x' * 90}\n".encode() for n in range(200)]
    lines.insert(100, b"y" * 10_000 + b"\n")  # longer than PIPE_BUF: alone
    chunks = logs._chunks(lines, logs.PIPE_BUF)
    assert b"".join(chunks) == b"".join(lines)
    for chunk in chunks:
        assert chunk.endswith(b"\n")
        assert len(chunk) <= logs.PIPE_BUF or chunk.count(b"\n") == 1
    assert len(chunks) < len(lines) / 10  # and many lines per write


@pytest.mark.parametrize("formatter", ["text", "json", "logstash"])
def test_every_event_is_one_line(formatter: str) -> None:
    """Tracebacks, stacks and text from the network (a decoded path may hold a newline or a
    NUL) never break a line: each event is one line that says what happened."""
    stream = configured(formatter)
    log = logging.getLogger("moorage.test")
    try:
        raise ValueError("first\nsecond")
    except ValueError:
        log.exception("failed on %s", "/v2/a\nforged line\r\x00\x1b[31m")
    log.info("with a stack", stack_info=True)
    log.warning("value", extra={"path": "a\nb", "plain": "c"})
    logs.access("GET /v2/x\n200 forged 200", {**EXTRA, "route": "\u2028x"})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert all(not set(line) & {"\r", "\x00", "\x1b", "\u2028"} for line in lines)
    if formatter == "text":
        assert "\\nforged line\\r\\u0000\\u001b[31m" in lines[0]
        assert "error=" in lines[0] and "ValueError: first\\nsecond" in lines[0]
        assert "Stack (most recent call last)" in lines[1]
        assert 'path="a\\nb" plain=c' in lines[2]
        assert lines[3].split(" ", 1)[1].startswith("info moorage.access: GET /v2/x\\n200 forged")
    else:
        entries = [json.loads(line) for line in lines]
        message = "msg" if formatter == "json" else "message"
        assert entries[0][message] == "failed on /v2/a\nforged line\r\x00\x1b[31m"
        assert "ValueError: first\nsecond" in entries[0]["error"]
        assert "Stack (most recent call last)" in entries[1]["error"]
        assert entries[2]["path"] == "a\nb"
        assert entries[3]["route"] == "\u2028x"
