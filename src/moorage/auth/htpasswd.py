"""htpasswd files with bcrypt entries: reading, checking, and writing them (`moorage user`)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import tempfile
import time

import bcrypt

from moorage.auth.watched import WatchedFile

BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
BCRYPT_COST = 12
VERIFIED_FOR = 60.0  # seconds a successful check is remembered, so bcrypt runs once a minute


def parse(path: str) -> dict[str, bytes]:
    """user -> bcrypt hash. Raises ValueError naming the line for anything but bcrypt."""
    users: dict[str, bytes] = {}
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, hashed = line.strip().partition(":")
        if not sep or not user:
            raise ValueError(f"{path}:{number}: expected user:hash")
        if not hashed.startswith(BCRYPT_PREFIXES):
            raise ValueError(
                f"{path}:{number}: user {user!r} has a non-bcrypt password hash; only bcrypt "
                "is accepted (htpasswd -B, or moorage user passwd)"
            )
        users[user] = hashed.encode()
    return users


class Users:
    """The users of an htpasswd file, reloaded when it changes."""

    def __init__(self, path: str) -> None:
        self.file = WatchedFile(path, parse)
        self._verified: dict[bytes, float] = {}

    def exists(self, user: str) -> bool:
        return user in self.file.value

    async def check(self, user: str, password: str) -> bool:
        hashed = self.file.value.get(user)
        if hashed is None:
            # Spend the same time as for a real user, so timing does not reveal names.
            await asyncio.to_thread(bcrypt.checkpw, b"x", _dummy())
            return False
        key = hashlib.sha256(user.encode() + b"\0" + password.encode() + b"\0" + hashed).digest()
        now = time.monotonic()
        if self._verified.get(key, 0.0) > now:
            return True
        ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed)
        if ok:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[key] = now + VERIFIED_FOR
        return ok


@functools.cache
def _dummy() -> bytes:
    """A hash of the real cost, made on first need (a quarter second of CPU): not at import."""
    return bcrypt.hashpw(b"dummy", bcrypt.gensalt(BCRYPT_COST))


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()


def write(path: str, users: dict[str, str]) -> None:
    """Replaces the file atomically with `user:hash` lines, mode 0600."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".htpasswd.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.writelines(f"{user}:{hashed}\n" for user, hashed in sorted(users.items()))
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def read_for_edit(path: str) -> dict[str, str]:
    """The file's entries for `moorage user`; an absent file is an empty one."""
    if not os.path.exists(path):
        return {}
    return {user: hashed.decode() for user, hashed in parse(path).items()}
