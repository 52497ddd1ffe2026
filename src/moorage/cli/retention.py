"""`moorage retention plan [CONFIG] [--verbose]`: what the retention policies of CONFIG
(storage.maintenance.retention) would untag now, and why: one line per tag, naming the policy
and what keeps or does not keep it (moorage.lifecycle.retention). Reads only.

Exit status: 0, or 2 when the plan cannot be made (config, storage).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from moorage.cli.storage import create_driver, load_config, stops
from moorage.config import secrets
from moorage.storage.driver import StorageDriver

if TYPE_CHECKING:  # the lifecycle loads when the command runs, not with the CLI
    from moorage.lifecycle import retention


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("retention", help="tag retention policies")
    actions = parser.add_subparsers(dest="retention_command", required=True)
    plan = actions.add_parser(
        "plan",
        help="print what the policies would untag now, and why",
        description="Applies the retention policies of CONFIG to its storage without changing "
        "it: prints each tag they would untag with the policy deciding and why no keeptags "
        "rule keeps it (with --verbose, each tag kept too, with the rule keeping it).",
    )
    plan.add_argument(
        "config", nargs="?", help="the config file `moorage serve` takes (default: embedded)"
    )
    plan.add_argument("-v", "--verbose", action="store_true", help="print the tags kept too")


def run(args: argparse.Namespace, redactor: secrets.Redactor) -> int:
    from moorage.lifecycle import retention

    with stops("retention", redactor):
        config = load_config(args.config, redactor)
        settings = config.storage.maintenance.retention
        if not settings.policies:
            print("no retention policies (storage.maintenance.retention.policies): nothing to do")
            return 0
        policies = retention.Retention.from_config(settings)
        decisions = asyncio.run(_plan(create_driver(config), policies))
    untags = [d for d in decisions if not d.kept]
    for decision in decisions:
        if args.verbose or not decision.kept:
            print(decision)
    repositories = len({d.repository for d in untags})
    print(
        f"would untag {len(untags)} of {len(decisions)} tags"
        f" in {repositories} repositor{'y' if repositories == 1 else 'ies'}"
        + (" (dryrun is set: the server only logs them)" if settings.dryrun else "")
    )
    return 0


async def _plan(driver: StorageDriver, policies: retention.Retention) -> list[retention.Decision]:
    from moorage.lifecycle import retention
    from moorage.registry.repository import Registry

    try:
        registry = Registry(driver)
        names = [name for name in await registry.repositories() if policies.tracked(name)]
        return retention.plan(policies, await retention.gather(registry, names))
    finally:
        await driver.close()
