"""`moorage usage [CONFIG] [REPO...] [--json]`: what each repository of the config's storage holds
(moorage.lifecycle.usage), computed now by one walk of the links and one of the blobs.

The first argument is the config when it names a file, ends in `.yml` or `.yaml`, or is no
repository name (`/etc/...`, `./x`); the others are repositories to show (by default, every
one). Exit status: 0, 1 when a named repository does not exist, 2 when the usage cannot be
computed (config, storage).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import TYPE_CHECKING

from moorage.cli.storage import CannotRun, create_driver, load_config, stops
from moorage.config import secrets
from moorage.registry.errors import NameInvalid
from moorage.registry.names import check_name
from moorage.storage.driver import StorageDriver

if TYPE_CHECKING:  # the lifecycle loads when the command runs, not with the CLI
    from moorage.lifecycle.quotas import Quotas
    from moorage.lifecycle.usage import Usage

HEADINGS = ("REPOSITORY", "EXCLUSIVE", "SHARED", "TOTAL", "QUOTA")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "usage",
        help="the bytes each repository holds, alone and shared, and the registry's total",
        description="Computes from the storage of CONFIG (the first argument when it names a "
        "file, ends in .yml or .yaml, or is no repository name) the bytes each repository "
        "holds: exclusive (blobs no other repository links), shared (blobs others link too) "
        "and total; and the registry's total, each blob once.",
    )
    parser.add_argument("arguments", nargs="*", metavar="[CONFIG] [REPO...]")
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"repositories": [{"name", "exclusive", "shared", "total"}, ...], "total"}',
    )


def run(args: argparse.Namespace, redactor: secrets.Redactor) -> int:
    from moorage.lifecycle.quotas import Quotas

    arguments = list(args.arguments)
    path = arguments.pop(0) if arguments and _is_config(arguments[0]) else None
    with stops("usage", redactor):
        for name in arguments:
            try:
                check_name(name)
            except NameInvalid as exc:
                raise CannotRun(f"{name!r} is no repository name: {exc.message}") from None
        config = load_config(path, redactor)
        driver = create_driver(config)
        usage, missing = asyncio.run(_compute(driver, arguments))
    shown = [name for name in arguments if name not in missing] if arguments else None
    if args.json:
        print(json.dumps(usage.to_json(shown)))
    else:
        _table(usage, shown, Quotas.from_config(config.storage.quotas))
    for name in missing:
        print(f"moorage usage: no repository named {name}", file=sys.stderr)
    return 1 if missing else 0


def _is_config(argument: str) -> bool:
    if os.path.isfile(argument) or argument.endswith((".yml", ".yaml")):
        return True
    try:
        check_name(argument)
    except NameInvalid:
        return True
    return False


async def _compute(driver: StorageDriver, names: list[str]) -> tuple[Usage, list[str]]:
    """The usage, and which of `names` name no repository."""
    from moorage.lifecycle.usage import compute
    from moorage.registry.repository import Registry

    try:
        usage = await compute(driver)
        registry = Registry(driver)
        missing = [
            name
            for name in names
            if name not in usage.repositories and not await registry.repository(name).exists()
        ]
        return usage, missing
    finally:
        await driver.close()


def _table(usage: Usage, names: list[str] | None, quotas: Quotas) -> None:
    from moorage.sizes import human

    rows = []
    for name in usage.repositories if names is None else names:
        each = usage.of(name)
        limit = quotas.limit_for(name)
        sizes = (each.exclusive, each.shared, each.total)
        rows.append((name, *(human(size) for size in sizes), human(limit.size) if limit else "-"))
    columns = HEADINGS if quotas.configured else HEADINGS[:-1]
    rows = [row[: len(columns)] for row in rows]
    widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns))]
    for row in [columns, *rows]:
        numbers = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        print("  ".join([row[0].ljust(widths[0]), *numbers]).rstrip())
    blobs = f"{usage.blobs} blob" + ("" if usage.blobs == 1 else "s")
    print(f"registry total: {human(usage.total)} in {blobs} ({usage.total} bytes)")
