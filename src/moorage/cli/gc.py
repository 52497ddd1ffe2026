"""`moorage garbage-collect [CONFIG] [--dry-run|-d] [--delete-untagged|-m] [--quiet|-q]`: the
reference registry's command and flags, over moorage's collector (moorage.lifecycle.gc): one line
per deletion (unless --quiet), then a summary.

It runs beside serving registries, under the root's lease (lifecycle/lease.py), with the config's
`storage.maintenance.gc.delay`; a Redis cache and catalog configured there are kept true. The
config's retention policies decide, for the repositories they cover, whether untagged manifests
go (lifecycle/retention.py); untagging by policy is the server's, before its own collections. The
in-memory caches of running servers cannot be reached from here: such a server may answer a blob
HEAD from its cache for a blob collected here, and the push that relies on it then fails once at
its manifest PUT (which checks storage and drops the stale entry); `storage.maintenance.gc`, run
by the server itself, has no such gap.

Exit status: 0 when the collection is complete, 1 when it could not run or stopped before the
end (another collection holds the lease, its deadline passed, storage or Redis failed), 2 for
usage and config errors.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from moorage.cli.storage import CannotRun, create_driver, load_config
from moorage.config import secrets
from moorage.config.schema import Config
from moorage.durations import seconds
from moorage.lifecycle import lease
from moorage.lifecycle.gc import Collector, Event, Options, Summary
from moorage.lifecycle.retention import Retention
from moorage.registry.errors import Unavailable
from moorage.registry.repository import Registry
from moorage.sizes import human, plural
from moorage.storage import cache as caches
from moorage.storage.cache import BlobDescriptorCache
from moorage.storage.cache.redis import RedisCache, RedisNames
from moorage.storage.driver import StorageDriver, StorageError

PROGRAM = "moorage garbage-collect"


class Failed(Exception):
    """The collection could not run or finish: one line for the user."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "garbage-collect",
        help="delete the blobs and links no kept manifest needs",
        description="Marks every blob a kept manifest names (with the children of kept indexes "
        "and the manifests whose subject is kept) and deletes the rest that nothing used "
        "within storage.maintenance.gc.delay: blob content and layer links, and with -m "
        "untagged manifests. Safe while registries serve the root.",
    )
    parser.add_argument(
        "config", nargs="?", help="the config file `moorage serve` takes (default: embedded)"
    )
    parser.add_argument(
        "-d", "--dry-run", action="store_true", help="say what would be deleted; delete nothing"
    )
    parser.add_argument(
        "-m",
        "--delete-untagged",
        action="store_true",
        help="delete manifests no tag points at (unless an index or subject that is kept "
        "names them)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print only the summary, not each deletion"
    )


def run(args: argparse.Namespace, redactor: secrets.Redactor) -> int:
    try:
        config = load_config(args.config, redactor)
        driver = create_driver(config)
        options = Options(
            delay=seconds(config.storage.maintenance.gc.delay),
            delete_untagged=args.delete_untagged,
            dryrun=args.dry_run,
        )
        summary = asyncio.run(_collect(config, driver, options, args.quiet))
    except CannotRun as exc:
        print(redactor.redact(f"{PROGRAM}: {exc}"), file=sys.stderr)
        return 2
    except StorageError as exc:
        print(redactor.redact(f"{PROGRAM}: storage: {exc}"), file=sys.stderr)
        return 1
    except (Failed, Unavailable) as exc:
        print(redactor.redact(f"{PROGRAM}: {exc}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{PROGRAM}: interrupted", file=sys.stderr)
        return 130
    for manifest in summary.unreadable:
        print(f"{PROGRAM}: manifest {manifest} cannot be read: links kept", file=sys.stderr)
    print(_summary(summary, options.dryrun))
    if summary.stopped:
        print(f"{PROGRAM}: {summary.stopped}", file=sys.stderr)
        return 1
    return 0


async def _collect(config: Config, driver: StorageDriver, options: Options, quiet: bool) -> Summary:
    cache = _shared_cache(config)
    shared = RedisNames(cache.client) if isinstance(cache, RedisCache) else None
    registry = Registry(driver, cache=cache, shared_names=shared, gc_delay=options.delay)
    settings = config.storage.maintenance.retention
    retention = Retention.from_config(settings) if settings.policies else None
    held, client = lease.from_config(config, driver)
    try:
        if not options.dryrun and (other := await held.acquire()) is not None:
            raise Failed(f"another garbage collection is running on this root ({other})")
        report = None if quiet else _printer(options.dryrun)
        still = None if options.dryrun else held.held  # a dry run writes nothing: no lease
        collector = Collector(registry, options, report=report, held=still, retention=retention)
        return await collector.collect()
    finally:
        await held.release()
        if client is not None:
            await client.aclose()
        await driver.close()
        if cache is not None:
            await cache.close()


def _shared_cache(config: Config) -> BlobDescriptorCache | None:
    """The cache the registries share (Redis), which the collection keeps true; an in-memory
    cache is each serving process's own."""
    if config.storage.cache.blobdescriptor != "redis":
        return None
    try:
        return caches.create("redis", {"redis": config.redis})
    except ValueError as exc:
        raise CannotRun(f"config: {exc}") from None


def _printer(dryrun: bool) -> Callable[[Event], None]:
    done = "would delete" if dryrun else "deleted"

    def report(event: Event) -> None:
        if event.kind == "manifest":
            print(f"{done} manifest {event.repository}@{event.digest}")
        elif event.kind == "link":
            print(f"{done} layer link {event.repository} {event.digest}")
        elif event.kind == "blob":
            print(f"{done} blob {event.digest} ({human(event.size)})")
        else:
            print(f"{'would remove' if dryrun else 'removed'} empty repository {event.repository}")

    return report


def _summary(summary: Summary, dryrun: bool) -> str:
    parts = [
        plural(summary.manifests, "manifest"),
        f"{plural(summary.blobs, 'blob')} ({human(summary.bytes)})",
        plural(summary.links, "layer link"),
        plural(summary.repositories, "empty repository", "empty repositories"),
    ]
    return (
        f"{'would delete' if dryrun else 'deleted'} {', '.join(parts)}; "
        f"{plural(summary.marked, 'blob')} in use"
    )
