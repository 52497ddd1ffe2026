"""Tag retention (`storage.maintenance.retention`), with zot's meaning:

- The first policy whose `repositories` globs match a repository's name decides for it (globs
  as the ACL's: auth/acl.py). A repository no policy matches keeps every tag.
- A policy without `keeptags` keeps every tag; its `deleteuntagged` and `deletereferrers` still
  tell the collector what it may remove (`Retention.collector_rules`).
- With `keeptags`, a tag is kept when any of the rules keeps it, and untagged otherwise.
- A rule keeps a tag that matches one of its `patterns` (regular expressions found anywhere in
  the tag unless anchored, as Go's MatchString; no patterns: every tag) and, when the rule has
  conditions, meets any of them: among the tags its patterns match, one of the
  `mostrecentlypushedcount` most recently pushed, or of the `mostrecentlypulledcount` most
  recently pulled (tags never pulled rank after every pulled one, most recently pushed first,
  as zot fills the count), or pushed within `pushedwithin`, or pulled (or, not to lose a fresh
  image, pushed) within `pulledwithin`.

A tag's push time is its link's modification time (paths.py); its pull time the later of its
own pull record and its manifest's (moorage/lifecycle/pulls.py).

`plan` is pure: it decides from the times given. `gather` reads the times from storage, `apply`
untags, re-checking each tag first; `enforce` does both, and the server runs it right before each
scheduled garbage collection (lifecycle/maintenance.py), which asks `collector_rules` per
repository.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from moorage.config import schema
from moorage.durations import seconds
from moorage.lifecycle.pulls import pull_times
from moorage.registry.blobs import read_link
from moorage.registry.digest import Digest
from moorage.registry.errors import ManifestUnknown
from moorage.registry.repository import Registry
from moorage.storage import paths

log = logging.getLogger("moorage.retention")

CONCURRENCY = 16  # tag links read at once while gathering one repository


@dataclass(frozen=True)
class TagTimes:
    tag: str
    digest: Digest  # what the tag points at
    pushed: float  # seconds since the epoch
    pulled: float | None  # None: never pulled (since pull times are recorded)


@dataclass(frozen=True)
class KeepRule:
    index: int  # its place in the policy's `keeptags`
    patterns: tuple[re.Pattern[str], ...] = ()
    most_recently_pushed: int = 0
    most_recently_pulled: int = 0
    pushed_within: float | None = None  # seconds
    pulled_within: float | None = None

    def matches(self, tag: str) -> bool:
        return not self.patterns or any(pattern.search(tag) for pattern in self.patterns)

    def keeping(self, tags: list[TagTimes], now: float) -> dict[str, str]:
        """The tags this rule keeps, each with the condition that keeps it."""
        matched = [times for times in tags if self.matches(times.tag)]
        kept: dict[str, str] = {}
        conditions = (
            self.most_recently_pushed,
            self.most_recently_pulled,
            self.pushed_within is not None,
            self.pulled_within is not None,
        )
        if not any(conditions):
            return {times.tag: "its patterns" for times in matched}
        by_push = sorted(matched, key=lambda t: (-t.pushed, t.tag))
        for times in by_push[: self.most_recently_pushed]:
            kept.setdefault(times.tag, f"mostrecentlypushedcount {self.most_recently_pushed}")
        by_pull = sorted(
            matched, key=lambda t: (t.pulled is None, -(t.pulled or 0.0), -t.pushed, t.tag)
        )
        for times in by_pull[: self.most_recently_pulled]:
            kept.setdefault(times.tag, f"mostrecentlypulledcount {self.most_recently_pulled}")
        if self.pushed_within is not None:
            since = now - self.pushed_within
            for times in matched:
                if times.pushed > since:
                    kept.setdefault(times.tag, f"pushedwithin {_duration(self.pushed_within)}")
        if self.pulled_within is not None:
            since = now - self.pulled_within
            for times in matched:
                if times.pushed > since or (times.pulled is not None and times.pulled > since):
                    kept.setdefault(times.tag, f"pulledwithin {_duration(self.pulled_within)}")
        return kept


@dataclass(frozen=True)
class Policy:
    index: int  # its place in `policies`
    repositories: tuple[str, ...]
    delete_untagged: bool | None = None  # None: as the collector's own setting says
    delete_referrers: bool = False
    keep: tuple[KeepRule, ...] = ()

    def covers(self, repository: str) -> bool:
        return any(fnmatch.fnmatchcase(repository, pattern) for pattern in self.repositories)

    def describe(self) -> str:
        return f"policy {self.index} (repositories {', '.join(self.repositories)})"


@dataclass(frozen=True)
class CollectorRules:
    """What the garbage collector may remove from one repository."""

    delete_untagged: bool  # manifests no tag points at (and nothing else keeps)
    delete_referrers: bool  # referrers whose subject manifest is gone


@dataclass(frozen=True)
class Decision:
    repository: str
    times: TagTimes
    policy: Policy
    kept: bool
    reason: str  # the rule and condition that keep it, or why none does

    def __str__(self) -> str:
        pulled = _when(self.times.pulled) if self.times.pulled is not None else "never"
        return (
            f"{'keep' if self.kept else 'untag'} {self.repository}:{self.times.tag} "
            f"{self.times.digest} (pushed {_when(self.times.pushed)}, pulled {pulled}): "
            f"{self.policy.describe()}: {self.reason}"
        )


class Retention:
    def __init__(self, policies: Iterable[Policy], *, dryrun: bool = False) -> None:
        self.policies = tuple(policies)
        self.dryrun = dryrun

    @classmethod
    def from_config(cls, settings: schema.Retention) -> Retention:
        policies = []
        for index, policy in enumerate(settings.policies):
            rules = tuple(
                KeepRule(
                    index=rule_index,
                    patterns=tuple(re.compile(pattern) for pattern in rule.patterns),
                    most_recently_pushed=rule.mostrecentlypushedcount,
                    most_recently_pulled=rule.mostrecentlypulledcount,
                    pushed_within=_seconds(rule.pushedwithin),
                    pulled_within=_seconds(rule.pulledwithin),
                )
                for rule_index, rule in enumerate(policy.keeptags)
            )
            policies.append(
                Policy(
                    index,
                    tuple(policy.repositories),
                    policy.deleteuntagged,
                    policy.deletereferrers,
                    rules,
                )
            )
        return cls(policies, dryrun=settings.dryrun)

    def policy_for(self, repository: str) -> Policy | None:
        """The policy deciding for the repository: the first whose globs match it."""
        return next((p for p in self.policies if p.covers(repository)), None)

    def collector_rules(self, repository: str, delete_untagged: bool) -> CollectorRules:
        """What the collector may remove from the repository: its policy's `deleteuntagged`
        (when set; else the collector's own `delete_untagged`) and `deletereferrers` (false
        without a policy)."""
        policy = self.policy_for(repository)
        if policy is None:
            return CollectorRules(delete_untagged, False)
        untagged = delete_untagged if policy.delete_untagged is None else policy.delete_untagged
        return CollectorRules(untagged, policy.delete_referrers)

    def tracked(self, repository: str) -> bool:
        """Whether the repository's tags may be untagged (its policy has keeptags rules)."""
        policy = self.policy_for(repository)
        return policy is not None and bool(policy.keep)

    def decide(self, repository: str, tags: list[TagTimes], now: float) -> list[Decision]:
        """A decision for each tag of the repository, in tag order; none when no policy
        matches it."""
        policy = self.policy_for(repository)
        if policy is None:
            return []
        ordered = sorted(tags, key=lambda t: t.tag)
        if not policy.keep:
            return [Decision(repository, t, policy, True, "no keeptags") for t in ordered]
        keeping = [(rule, rule.keeping(ordered, now)) for rule in policy.keep]
        decisions = []
        for times in ordered:
            deciding = next(((r, k[times.tag]) for r, k in keeping if times.tag in k), None)
            if deciding is not None:
                rule, condition = deciding
                reason = f"kept by keeptags[{rule.index}]: {condition}"
                decisions.append(Decision(repository, times, policy, True, reason))
                continue
            matching = [rule.index for rule in policy.keep if rule.matches(times.tag)]
            reason = (
                f"matches keeptags{matching} but meets none of their conditions"
                if matching
                else "matches the patterns of no keeptags rule"
            )
            decisions.append(Decision(repository, times, policy, False, reason))
        return decisions


def plan(
    retention: Retention, times: Mapping[str, list[TagTimes]], now: float | None = None
) -> list[Decision]:
    """The decisions for every tag of the repositories in `times`, by repository then tag."""
    at = time.time() if now is None else now
    return [
        decision
        for repository in sorted(times)
        for decision in retention.decide(repository, times[repository], at)
    ]


async def gather(registry: Registry, repositories: Iterable[str]) -> dict[str, list[TagTimes]]:
    """The tags of each repository with their times, from storage: one walk of its tags, the
    tags' links, one walk of its pull records."""
    found = {}
    for name in repositories:
        found[name] = await _tag_times(registry, name)
    return found


async def _tag_times(registry: Registry, name: str) -> list[TagTimes]:
    driver = registry.driver
    base = paths.tags(name) + "/"
    pushed: dict[str, float] = {}
    async for info in driver.walk(paths.tags(name)):
        tag, _, rest = info.path[len(base) :].partition("/")
        if rest == "current/link":
            pushed[tag] = info.modified
    pulls = await pull_times(driver, name)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def times(tag: str) -> TagTimes | None:
        async with limit:
            digest = await read_link(driver, paths.tag_current_link(name, tag))
        if digest is None:
            return None  # untagged meanwhile, or a broken link (fsck reports it)
        return TagTimes(tag, digest, pushed[tag], pulls.of(tag, digest))

    found = await asyncio.gather(*(times(tag) for tag in sorted(pushed)))
    return [each for each in found if each is not None]


async def apply(registry: Registry, decisions: Iterable[Decision]) -> list[Decision]:
    """Untags what the decisions untag, each only if it still points at the digest decided on
    (a push meanwhile keeps it); returns the decisions carried out."""
    done = []
    for decision in decisions:
        if decision.kept:
            continue
        repository = registry.repository(decision.repository)
        link = paths.tag_current_link(decision.repository, decision.times.tag)
        if await read_link(registry.driver, link) != decision.times.digest:
            continue
        try:
            await repository.tags.untag(decision.times.tag)
        except ManifestUnknown:
            continue  # untagged meanwhile
        done.append(decision)
    return done


async def enforce(registry: Registry, retention: Retention) -> list[Decision]:
    """Plans for every repository a policy with keeptags covers and untags (with `dryrun`,
    only logs) what no rule keeps; returns the untag decisions."""
    names = [name for name in await registry.repositories() if retention.tracked(name)]
    untags = [d for d in plan(retention, await gather(registry, names)) if not d.kept]
    if retention.dryrun:
        for decision in untags:
            log.info("retention would %s", decision)
        return untags
    done = await apply(registry, untags)
    for decision in done:
        log.info("retention: %s", decision)
    return done


def _seconds(value: schema.Duration | None) -> float | None:
    return None if value is None else seconds(value)


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:g}s"
