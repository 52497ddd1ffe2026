"""htpasswd files (bcrypt only), failed-login limiting, and files reloaded when they change."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import bcrypt
import pytest

from moorage.auth import watched
from moorage.auth.htpasswd import Users, hash_password, parse, read_for_edit, write
from moorage.auth.ratelimit import FailedLogins


def test_bcrypt_entries_are_read(tmp_path: Path) -> None:
    path = tmp_path / "users"
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    path.write_text(f"# comment\n\nalice:{hashed}\nbob:{hashed.replace('$2b$', '$2y$')}\n")
    assert sorted(parse(str(path))) == ["alice", "bob"]


@pytest.mark.parametrize(
    "entry",
    [
        "alice:$apr1$abc$defghijklmnopqrstuvwx.",  # htpasswd -m (MD5)
        "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",  # htpasswd -s
        "alice:abJnggxhB/yWI",  # crypt
        "alice:plaintext",
    ],
)
def test_non_bcrypt_entries_are_refused_naming_the_line(tmp_path: Path, entry: str) -> None:
    path = tmp_path / "users"
    path.write_text(f"# users\n{entry}\n")
    with pytest.raises(ValueError, match=r"users:2: user 'alice' has a non-bcrypt") as raised:
        parse(str(path))
    assert "bcrypt" in str(raised.value)


def test_malformed_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("alice\n")
    with pytest.raises(ValueError, match="users:1: expected user:hash"):
        parse(str(path))


def test_check_and_write(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "users"
    assert read_for_edit(str(path)) == {}
    write(str(path), {"alice": hash_password("secret")})
    assert path.stat().st_mode & 0o777 == 0o600
    users = Users(str(path))
    assert asyncio.run(users.check("alice", "secret"))
    assert asyncio.run(users.check("alice", "secret"))  # remembered, same answer
    assert not asyncio.run(users.check("alice", "wrong"))
    assert not asyncio.run(users.check("nobody", "secret"))
    assert users.exists("alice") and not users.exists("nobody")


def test_failed_logins_per_user() -> None:
    limits = FailedLogins(user_limit=3, address_limit=100, window=60)
    for _ in range(3):
        assert limits.retry_after("alice", "10.0.0.1") == 0
        limits.failed("alice", "10.0.0.1")
    wait = limits.retry_after("alice", "10.0.0.2")
    assert 0 < wait <= 60
    assert limits.retry_after("bob", "10.0.0.1") == 0


def test_failed_logins_per_address() -> None:
    limits = FailedLogins(user_limit=100, address_limit=3, window=60)
    for name in ("a", "b", "c"):
        limits.failed(name, "10.0.0.1")
    assert limits.retry_after("fresh", "10.0.0.1") > 0
    assert limits.retry_after("fresh", "10.0.0.2") == 0


def test_failures_leave_the_window_and_success_clears_the_user() -> None:
    limits = FailedLogins(user_limit=2, address_limit=100, window=0.2)
    limits.failed("alice", "x")
    limits.failed("alice", "x")
    assert limits.retry_after("alice", "y") == 1  # rounded up to whole seconds
    time.sleep(0.25)
    assert limits.retry_after("alice", "y") == 0
    limits.failed("alice", "x")
    limits.succeeded("alice")
    limits.failed("alice", "x")
    assert limits.retry_after("alice", "y") == 0


def test_watched_file_reloads_and_keeps_the_last_good_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watched, "CHECK_INTERVAL", 0.0)
    path = tmp_path / "f"
    path.write_text("1")

    def parse_int(p: str) -> int:
        try:
            return int(Path(p).read_text())
        except ValueError as exc:
            raise ValueError(f"{p}: not a number") from exc

    file = watched.WatchedFile(str(path), parse_int)
    assert file.value == 1
    path.write_text("22")
    assert file.value == 22
    path.write_text("bad")
    assert file.value == 22
    path.unlink()
    assert file.value == 22
    path.write_text("333")
    assert file.value == 333


def test_watched_file_must_exist_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing"):
        watched.WatchedFile(str(tmp_path / "missing"), parse)
