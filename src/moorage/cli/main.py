"""`moorage serve [CONFIG]`, `moorage config check [CONFIG]` and `moorage health [CONFIG]`."""

from __future__ import annotations

import argparse
import asyncio
import sys

import yaml

from moorage import __version__, logs
from moorage.cli import admin, fsck, gc, health, retention, usage
from moorage.config import secrets
from moorage.config.loader import ConfigError, load
from moorage.config.schema import Config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moorage", description="A private container registry.")
    parser.add_argument("--version", action="version", version=f"moorage {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    strict = argparse.ArgumentParser(add_help=False)
    strict.add_argument(
        "--strict-secrets",
        action="store_true",
        help="refuse secret files (and config files holding secrets) others can read or write",
    )
    serve = commands.add_parser("serve", parents=[strict], help="run the registry")
    serve.add_argument(
        "config", nargs="?", help="distribution-style config.yml (default: embedded)"
    )
    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser(
        "check", parents=[strict], help="validate a configuration and print it, secrets masked"
    )
    check.add_argument("config", nargs="?")
    health_parser = commands.add_parser(
        "health", help="check that the registry a config describes answers (exit 0 or 1)"
    )
    health.add_arguments(health_parser)
    admin.add_parsers(commands)
    fsck.add_parser(commands)
    gc.add_parser(commands)
    usage.add_parser(commands)
    retention.add_parser(commands)
    return parser


def _load(path: str | None, strict: bool, redactor: secrets.Redactor) -> Config:
    """The config, its secrets registered with the redactor; exits 1 with one line per
    problem when it cannot be used."""
    try:
        config = load(path, strict_secrets=strict)
    except ConfigError as exc:
        logs.release(redactor)
        for problem in exc.problems:
            print(redactor.redact(f"moorage: config: {problem}"), file=sys.stderr)
        raise SystemExit(1) from None
    redactor.add(list(secrets.values(config.as_tree())))
    return config


def _serve(args: argparse.Namespace, redactor: secrets.Redactor) -> int:
    from moorage import workers
    from moorage.server import StartupError, serve

    config = _load(args.config, args.strict_secrets, redactor)
    logs.configure(config, redactor)
    try:
        number = workers.count(config)
        if number > 1:
            return workers.supervise(config, redactor, number, args.strict_secrets)
        asyncio.run(serve(config, redactor, strict_secrets=args.strict_secrets))
    except (StartupError, secrets.SecretProblem) as exc:
        print(redactor.redact(f"moorage: {exc}"), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"moorage: cannot listen on {config.http.addr}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def _check(args: argparse.Namespace, redactor: secrets.Redactor) -> int:
    """Validates the config as `serve` would build it (TLS files, driver and cache settings,
    auth files), without serving, connecting or writing; prints it with secrets masked."""
    from moorage import workers
    from moorage.server import Server, StartupError

    config = _load(args.config, args.strict_secrets, redactor)
    try:
        workers.count(config)
        Server(config, redactor, strict_secrets=args.strict_secrets, create_files=False)
    except (StartupError, secrets.SecretProblem) as exc:
        print(redactor.redact(f"moorage: config: {exc}"), file=sys.stderr)
        return 1
    print(yaml.safe_dump(secrets.shown(config.as_tree(), redactor), sort_keys=False), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Every command's errors end as one line on stderr and a non-zero exit, never a
    traceback."""
    args = _parser().parse_args(argv)
    redactor = secrets.Redactor()
    # serve holds the config's warnings until the config names the log format.
    logs.bootstrap(redactor, hold=args.command == "serve")
    try:
        return _run(args, redactor)
    except admin.AdminError as exc:
        problem = str(exc)
    except KeyboardInterrupt:
        problem = "interrupted"
    except EOFError:
        problem = "standard input ended before what was asked for was read"
    except OSError as exc:
        problem = f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)
    except Exception as exc:  # a defect: still one line, with what it was
        problem = f"unexpected {type(exc).__name__}: {exc}"
    print(logs.one_line(redactor.redact(f"moorage: {problem}")), file=sys.stderr)
    return 1


def _run(args: argparse.Namespace, redactor: secrets.Redactor) -> int:
    if args.command == "serve":
        return _serve(args, redactor)
    if args.command == "user":
        return admin.run_user(args)
    if args.command == "acl":
        return admin.run_acl(args)
    if args.command == "fsck":
        return fsck.run(args, redactor)
    if args.command == "garbage-collect":
        return gc.run(args, redactor)
    if args.command == "health":
        return health.run(args)
    if args.command == "usage":
        return usage.run(args, redactor)
    if args.command == "retention":
        return retention.run(args, redactor)
    return _check(args, redactor)
