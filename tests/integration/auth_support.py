"""Helpers for the tests that run moorage with authentication: users files and the built-in
token server's config section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bcrypt

SERVICE = "moorage-test"


def htpasswd_file(path: Path, users: dict[str, str]) -> Path:
    """bcrypt entries at a low cost (the server accepts any cost), fast to check."""
    path.write_text(
        "".join(
            f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(4)).decode()}\n"
            for user, pw in users.items()
        )
    )
    return path


def builtin_section(users: Path, acl: Path, key: Path, **extra: Any) -> dict[str, Any]:
    return {
        "builtin": {
            "service": SERVICE,
            "users": str(users),
            "acl": str(acl),
            "signingkey": str(key),
            **extra,
        }
    }
