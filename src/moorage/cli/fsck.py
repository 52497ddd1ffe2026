"""`moorage fsck [CONFIG] [--repair] [--verify-content]`: checks the storage root the config names
(moorage.lifecycle.fsck) and prints one line per problem, then what was checked and the counts.

Exit status: 0 when nothing is wrong (with --repair: when everything found was repaired), 1 when
something is (or was left), 2 when the check could not run (usage, config, storage failure).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, TextIO

from moorage.cli.storage import CannotRun, create_driver, load_config, stops
from moorage.config import secrets
from moorage.config.schema import Config
from moorage.durations import seconds
from moorage.sizes import human, plural

if TYPE_CHECKING:  # the checker and the caches load when the command runs, not with the CLI
    from moorage.lifecycle.fsck import Fsck, Kind, Outcome, Report
    from moorage.storage.cache import BlobDescriptorCache

PROGRESS_EVERY = 0.1  # seconds between redraws of the progress line

# what was checked: singular and plural, in the order shown
CHECKED = {
    "repositories": ("repository", "repositories"),
    "manifests": ("manifest", "manifests"),
    "tags": ("tag", "tags"),
    "layer links": ("layer link", "layer links"),
    "referrers": ("referrer", "referrers"),
    "upload sessions": ("upload session", "upload sessions"),
    "blobs verified": ("blob verified", "blobs verified"),
}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "fsck",
        help="check a storage root for what a registry cannot serve",
        description="Checks the storage root of CONFIG (moorage's or distribution's): tags, "
        "revisions and layer links pointing at missing content, manifests missing blobs, "
        "indexes missing children, the referrers index, abandoned upload sessions. Exits 0 "
        "when nothing is wrong, 1 when something is, 2 when the check cannot run.",
    )
    parser.add_argument(
        "config", nargs="?", help="the config file `moorage serve` takes (default: embedded)"
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help="remove dangling links, rebuild the referrers index, remove abandoned uploads; "
        "what cannot be repaired without guessing is left and reported",
    )
    parser.add_argument(
        "--verify-content",
        action="store_true",
        help="re-hash every blob's content and compare it with its digest",
    )


def run(args: argparse.Namespace, redactor: secrets.Redactor) -> int:
    from moorage.lifecycle.fsck import Fsck

    with stops("fsck", redactor):
        config = load_config(args.config, redactor)
        progress = Progress(sys.stderr) if sys.stderr.isatty() else None
        fsck = Fsck(
            create_driver(config),
            upload_age=seconds(config.storage.maintenance.uploadpurging.age),
            cache=_cache(config) if args.repair else None,
            progress=progress,
        )
        return asyncio.run(_check(fsck, progress, args.repair, args.verify_content))


def _cache(config: Config) -> BlobDescriptorCache | None:
    """The cache the registries share (Redis), which repairs keep true; an in-memory cache is
    each serving process's own."""
    from moorage.storage import cache as caches

    if config.storage.cache.blobdescriptor != "redis":
        return None
    try:
        return caches.create("redis", {"redis": config.redis})
    except ValueError as exc:
        raise CannotRun(f"config: {exc}") from None


async def _check(fsck: Fsck, progress: Progress | None, repair: bool, verify_content: bool) -> int:
    try:
        try:
            report = await fsck.check(verify_content=verify_content)
        finally:
            if progress is not None:
                progress.close()
        for finding in report.findings:
            print(finding)
        print(_checked(report))
        if not report.findings:
            print("no problems found")
            return 0
        repairable = sum(finding.repairable for finding in report.findings)
        print(
            f"found {plural(len(report.findings), 'problem')}: {_kinds(report.counts())}; "
            f"{repairable} can be repaired{'' if repair else ' with --repair'}"
        )
        if not repair:
            return 1
        outcomes = await fsck.repair(report.findings)
        return _repaired(report, outcomes)
    finally:
        await fsck.driver.close()
        cache = fsck.writer.blobs.cache
        if cache is not None:
            await cache.close()


def _repaired(report: Report, outcomes: list[Outcome]) -> int:
    for outcome in outcomes:
        if not outcome.repaired:
            print(f"not repaired: {outcome.finding} ({outcome.note})")
    done = Counter(o.finding.kind for o in outcomes if o.repaired)
    left = report.counts() - done
    print(f"repaired {done.total()}" + (f": {_kinds(done)}" if done else ""))
    if not left:
        return 0
    print(f"left {left.total()}: {_kinds(left)}")
    return 1


def _checked(report: Report) -> str:
    shown = [key for key in CHECKED if key != "blobs verified" or key in report.checked]
    text = "checked " + ", ".join(plural(report.checked[key], *CHECKED[key]) for key in shown)
    if "bytes verified" in report.checked:
        text += f" ({human(report.checked['bytes verified'])})"
    return text


def _kinds(counts: Counter[Kind]) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items()))


class Progress:
    """Content verification on a terminal: one line, redrawn in place, of bytes done and the
    total."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._drawn_at = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._drawn_at < PROGRESS_EVERY:
            return
        self._drawn_at = now
        share = 100 * done / total if total else 100
        self.stream.write(
            f"\rverifying content: {human(done)} of {human(total)} ({share:.0f}%)\x1b[K"
        )
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
