"""Retention policies with zot's meaning: the first policy matching a repository decides; within
a keeptags rule, patterns AND any condition; across rules, OR; counts rank the tags a rule's
patterns match, by push or pull time; durations from now; and what the collector may remove."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.config.schema import Retention as RetentionSettings
from moorage.lifecycle.retention import CollectorRules, Decision, Retention, TagTimes, plan
from moorage.registry.digest import Digest

NOW = 1_800_000_000.0
HOUR = 3600.0
DAY = 24 * HOUR


def retention(*policies: dict[str, Any], dryrun: bool = False) -> Retention:
    settings = RetentionSettings.model_validate({"dryrun": dryrun, "policies": list(policies)})
    return Retention.from_config(settings)


def tag(name: str, pushed_days_ago: float, pulled_days_ago: float | None = None) -> TagTimes:
    pulled = None if pulled_days_ago is None else NOW - pulled_days_ago * DAY
    return TagTimes(name, Digest.of(name.encode()), NOW - pushed_days_ago * DAY, pulled)


def decide(policy: Retention, tags: list[TagTimes], repository: str = "team/app") -> list[Decision]:
    return plan(policy, {repository: tags}, NOW)


def untagged(policy: Retention, tags: list[TagTimes], repository: str = "team/app") -> list[str]:
    return [d.times.tag for d in decide(policy, tags, repository) if not d.kept]


TAGS = [
    tag("v1.0", 100, 1),
    tag("v1.1", 50),
    tag("v2.0", 10, 40),
    tag("v2.1", 2),
    tag("latest", 1, 0.5),
    tag("dev-abc", 30),
    tag("dev-def", 3),
]


def test_no_policy_keeps_everything() -> None:
    assert plan(retention(), {"team/app": TAGS}, NOW) == []
    policy = retention({"repositories": ["other/*"], "keeptags": [{"patterns": ["^v"]}]})
    assert decide(policy, TAGS) == []


def test_a_policy_without_keeptags_keeps_every_tag() -> None:
    decisions = decide(retention({"repositories": ["team/*"], "deleteuntagged": False}), TAGS)
    assert len(decisions) == len(TAGS)
    assert all(d.kept and d.reason == "no keeptags" for d in decisions)


def test_patterns_alone_keep_what_they_match_anywhere_in_the_tag() -> None:
    policy = retention({"repositories": ["team/*"], "keeptags": [{"patterns": ["^v2", "test"]}]})
    assert untagged(policy, TAGS) == ["dev-abc", "dev-def", "v1.0", "v1.1"]  # "latest" has "test"
    # unanchored: a pattern is found anywhere, as Go's MatchString does
    found = untagged(retention({"repositories": ["*"], "keeptags": [{"patterns": ["1"]}]}), TAGS)
    assert found == ["dev-abc", "dev-def", "latest", "v2.0"]


def test_a_rule_without_patterns_covers_every_tag() -> None:
    policy = retention({"repositories": ["*"], "keeptags": [{"mostrecentlypushedcount": 2}]})
    assert untagged(policy, TAGS) == ["dev-abc", "dev-def", "v1.0", "v1.1", "v2.0"]


def test_within_a_rule_patterns_and_any_condition() -> None:
    policy = retention(
        {
            "repositories": ["*"],
            "keeptags": [
                {"patterns": ["^v"], "mostrecentlypushedcount": 1, "pulledwithin": "72h"}
            ],
        }
    )
    # v2.1: most recently pushed of the v tags; v1.0: pulled a day ago; latest is no v tag
    # though pulled half a day ago and pushed a day ago
    decisions = {d.times.tag: d for d in decide(policy, TAGS)}
    assert sorted(t for t, d in decisions.items() if d.kept) == ["v1.0", "v2.1"]
    assert decisions["v2.1"].reason == "kept by keeptags[0]: mostrecentlypushedcount 1"
    assert decisions["v1.0"].reason == "kept by keeptags[0]: pulledwithin 72h"
    assert decisions["v2.0"].reason == "matches keeptags[0] but meets none of their conditions"
    assert decisions["latest"].reason == "matches the patterns of no keeptags rule"


def test_across_rules_or() -> None:
    policy = retention(
        {
            "repositories": ["*"],
            "keeptags": [
                {"patterns": ["^v"], "mostrecentlypushedcount": 1},
                {"patterns": ["^dev-"], "pushedwithin": "168h"},
                {"patterns": ["^latest$"]},
                # overlaps the first: v1.1 is kept here though the first rule does not keep it
                {"patterns": ["^v1"], "pushedwithin": "1300h"},
            ],
        }
    )
    decisions = {d.times.tag: d for d in decide(policy, TAGS)}
    assert sorted(t for t, d in decisions.items() if not d.kept) == ["dev-abc", "v1.0", "v2.0"]
    assert decisions["v1.1"].reason == "kept by keeptags[3]: pushedwithin 1300h"
    assert decisions["dev-def"].reason == "kept by keeptags[1]: pushedwithin 168h"
    assert decisions["latest"].reason == "kept by keeptags[2]: its patterns"
    assert decisions["v2.0"].reason == "matches keeptags[0] but meets none of their conditions"


def test_first_matching_policy_wins() -> None:
    policy = retention(
        {"repositories": ["team/keep-*"]},
        {"repositories": ["team/*"], "keeptags": [{"patterns": ["^latest$"]}]},
        {"repositories": ["*"], "keeptags": [{"patterns": ["^v"]}]},
    )
    assert untagged(policy, TAGS, "team/keep-all") == []
    assert len(untagged(policy, TAGS, "team/app")) == len(TAGS) - 1
    assert untagged(policy, TAGS, "other") == ["dev-abc", "dev-def", "latest"]
    assert decide(policy, TAGS, "team/app")[0].policy.index == 1


def test_repository_globs_mean_what_the_acl_globs_mean() -> None:
    policy = retention({"repositories": ["team/*", "solo?"], "keeptags": [{"patterns": ["^$"]}]})
    assert policy.policy_for("team/a/b") is not None  # * crosses /
    assert policy.policy_for("team") is None
    assert policy.policy_for("solo1") is not None
    assert policy.policy_for("solo12") is None
    assert policy.policy_for("Team/a") is None  # case matters


def test_most_recently_pushed_counts_rank_the_tags_the_patterns_match() -> None:
    policy = retention(
        {"repositories": ["*"], "keeptags": [{"patterns": ["^v1"], "mostrecentlypushedcount": 1}]}
    )
    # only v1.x compete: v1.1 is the most recently pushed of them, though v2.x are newer
    assert untagged(policy, TAGS) == sorted(t.tag for t in TAGS if t.tag != "v1.1")


def test_most_recently_pulled_ranks_pulled_tags_first_then_fills_by_push() -> None:
    def keeps(count: int) -> list[str]:
        rule = {"mostrecentlypulledcount": count}
        policy = retention({"repositories": ["*"], "keeptags": [rule]})
        return sorted(d.times.tag for d in decide(policy, TAGS) if d.kept)

    assert keeps(1) == ["latest"]  # pulled half a day ago
    assert keeps(2) == ["latest", "v1.0"]
    assert keeps(3) == ["latest", "v1.0", "v2.0"]
    # no more pulled tags: the count is filled with the most recently pushed never pulled ones
    assert keeps(4) == ["latest", "v1.0", "v2.0", "v2.1"]
    assert keeps(100) == sorted(t.tag for t in TAGS)


def test_durations() -> None:
    def keeps(**rule: Any) -> list[str]:
        policy = retention({"repositories": ["*"], "keeptags": [rule]})
        return sorted(d.times.tag for d in decide(policy, TAGS) if d.kept)

    assert keeps(pushedwithin="48h") == ["latest"]  # v2.1, pushed 48h ago exactly, is not
    assert keeps(pushedwithin="49h") == ["latest", "v2.1"]
    # pulled within, or pushed within (a fresh image that no one pulled yet stays)
    assert keeps(pulledwithin="36h") == ["latest", "v1.0"]
    assert keeps(pulledwithin="60h") == ["latest", "v1.0", "v2.1"]
    assert keeps(pulledwithin="1000h") == ["dev-abc", "dev-def", "latest", "v1.0", "v2.0", "v2.1"]


def test_equal_push_times_are_ranked_by_name() -> None:
    same = [tag("b", 1), tag("a", 1), tag("c", 1)]
    policy = retention({"repositories": ["*"], "keeptags": [{"mostrecentlypushedcount": 2}]})
    assert untagged(policy, same) == ["c"]


def test_collector_rules() -> None:
    policy = retention(
        {"repositories": ["keep/*"], "deleteuntagged": False},
        {"repositories": ["sign/*"], "deletereferrers": True},
        {"repositories": ["drop/*"], "deleteuntagged": True},
    )
    assert policy.collector_rules("keep/a", True) == CollectorRules(False, False)
    # deleteuntagged unset: the collector's own setting; deletereferrers: the policy's
    assert policy.collector_rules("sign/a", True) == CollectorRules(True, True)
    assert policy.collector_rules("sign/a", False) == CollectorRules(False, True)
    assert policy.collector_rules("drop/a", False) == CollectorRules(True, False)
    # no policy: the collector's own setting, and referrers are not deleted
    assert policy.collector_rules("other", True) == CollectorRules(True, False)
    assert policy.policy_for("other") is None


def test_decisions_read_as_lines() -> None:
    policy = retention({"repositories": ["team/*"], "keeptags": [{"patterns": ["^v2"]}]})
    decision = next(d for d in decide(policy, TAGS) if d.times.tag == "dev-abc")
    assert str(decision) == (
        f"untag team/app:dev-abc {Digest.of(b'dev-abc')} (pushed 2026-12-16T08:00:00Z, pulled "
        "never): policy 0 (repositories team/*): matches the patterns of no keeptags rule"
    )


@pytest.mark.parametrize("count", [0, 1])
def test_zero_counts_are_no_condition(count: int) -> None:
    rule = {"patterns": ["^v"], "mostrecentlypushedcount": count}
    policy = retention({"repositories": ["*"], "keeptags": [rule]})
    assert len(untagged(policy, TAGS)) == (3 if count == 0 else 6)
