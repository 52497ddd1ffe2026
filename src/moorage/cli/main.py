"""`moorage serve [CONFIG]` and `moorage config check [CONFIG]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from moorage import __version__
from moorage.config.loader import ConfigError, load
from moorage.config.schema import Config

_LEVELS = {"warn": "WARNING", "warning": "WARNING"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moorage", description="A private container registry.")
    parser.add_argument("--version", action="version", version=f"moorage {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the registry")
    serve.add_argument(
        "config", nargs="?", help="distribution-style config.yml (default: embedded)"
    )
    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate a configuration")
    check.add_argument("config", nargs="?")
    return parser


def _load(path: str | None) -> Config:
    try:
        return load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"moorage: config: {problem}", file=sys.stderr)
        raise SystemExit(1) from None


def _configure_logging(config: Config) -> None:
    level = _LEVELS.get(config.log.level, config.log.level.upper())
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        config = _load(args.config)
        _configure_logging(config)
        from moorage.server import serve

        try:
            asyncio.run(serve(config))
        except OSError as exc:
            print(f"moorage: cannot serve on {config.http.addr}: {exc.strerror}", file=sys.stderr)
            return 1
        return 0
    if args.command == "config":
        config = _load(args.config)
        print(f"configuration is valid: storage {config.storage.driver}, http {config.http.addr}")
        return 0
    return 2
