"""What the commands that work on a storage root offline (fsck, usage, retention) share: the
config `moorage serve` takes, its storage driver built the same way, and how they stop."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from moorage.config import secrets
from moorage.config.loader import ConfigError, load
from moorage.config.schema import Config
from moorage.storage import driver as drivers
from moorage.storage.driver import StorageError


class CannotRun(Exception):
    """The command cannot run as asked: one line for the user."""


def load_config(path: str | None, redactor: secrets.Redactor) -> Config:
    """The config (the embedded default without a path), its secrets registered with the
    redactor."""
    try:
        config = load(path, serving=False)
    except ConfigError as exc:
        raise CannotRun(f"config: {'; '.join(exc.problems)}") from None
    redactor.add(list(secrets.values(config.as_tree())))
    return config


def create_driver(config: Config) -> drivers.StorageDriver:
    """The storage driver, built as `moorage serve` builds it."""
    if config.storage.driver == "inmemory":
        raise CannotRun("config: storage.inmemory keeps nothing outside the serving process")
    try:
        return drivers.create(config.storage.driver, config.storage.parameters)
    except ValueError as exc:
        raise CannotRun(f"config: {exc}") from None


@contextlib.contextmanager
def stops(command: str, redactor: secrets.Redactor) -> Iterator[None]:
    """Ends `moorage COMMAND` (SystemExit) on what stops it, said in one line on stderr: 2 for
    a problem with the config or the storage, 130 when interrupted."""
    try:
        yield
    except CannotRun as exc:
        print(redactor.redact(f"moorage {command}: {exc}"), file=sys.stderr)
        raise SystemExit(2) from None
    except StorageError as exc:
        print(redactor.redact(f"moorage {command}: storage: {exc}"), file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"\nmoorage {command}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
