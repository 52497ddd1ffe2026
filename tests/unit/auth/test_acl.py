"""ACL evaluation: each kind of rule (user, group, anonymous, any signed-in user, ${user}),
each action, the union of rules, and the file's validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.auth.acl import Acl, from_document, parse

ALL = frozenset({"pull", "push", "delete"})

DOCUMENT = {
    "groups": {"devs": ["alice", "bob"], "ops": ["carol"]},
    "rules": [
        {"who": ["anonymous"], "repos": ["public/*"], "actions": ["pull"]},
        {"who": ["*"], "repos": ["shared/*"], "actions": ["pull"]},
        {"who": ["group:devs"], "repos": ["team/*"], "actions": ["pull", "push"]},
        {"who": ["carol"], "repos": ["team/*"], "actions": ["delete"]},
        {"who": ["group:ops"], "repos": ["ops"], "actions": ["*"]},
        {"who": ["*"], "repos": ["home/${user}", "home/${user}/*"], "actions": ["*"]},
        {"who": ["bob"], "repos": ["shared/bob-*"], "actions": ["push"]},
    ],
}


@pytest.fixture
def acl() -> Acl:
    return from_document(DOCUMENT, "acl.yml")


def test_anonymous_rule_applies_to_everyone(acl: Acl) -> None:
    # Signing in never loses what an anonymous caller may do.
    assert acl.allowed(None, "public/app", ALL) == {"pull"}
    assert acl.allowed("alice", "public/app", ALL) == {"pull"}
    assert [rule.index for rule in acl.deciding("dave", "public/app", "pull")] == [0]
    assert acl.allowed("alice", "public", ALL) == frozenset()


def test_star_means_any_signed_in_user_and_not_anonymous(acl: Acl) -> None:
    assert acl.allowed("dave", "shared/x", ALL) == {"pull"}
    assert acl.allowed(None, "shared/x", ALL) == frozenset()


def test_group_rule(acl: Acl) -> None:
    assert acl.allowed("alice", "team/app", ALL) == {"pull", "push"}
    assert acl.allowed("dave", "team/app", ALL) == frozenset()


def test_glob_star_crosses_slashes(acl: Acl) -> None:
    assert acl.allowed("alice", "team/a/b/c", ALL) == {"pull", "push"}
    assert acl.allowed("alice", "teamx/app", ALL) == frozenset()


def test_user_rule_and_union_of_rules(acl: Acl) -> None:
    # carol: delete on team/* by name, everything on ops through her group
    assert acl.allowed("carol", "team/app", ALL) == {"delete"}
    assert acl.allowed("carol", "ops", ALL) == ALL
    # bob: pull on shared/* for any user, plus push on shared/bob-* by name
    assert acl.allowed("bob", "shared/bob-tools", ALL) == {"pull", "push"}
    assert acl.allowed("bob", "shared/other", ALL) == {"pull"}


def test_user_placeholder(acl: Acl) -> None:
    assert acl.allowed("alice", "home/alice", ALL) == ALL
    assert acl.allowed("alice", "home/alice/tool", ALL) == ALL
    assert acl.allowed("alice", "home/bob", ALL) == frozenset()
    assert acl.allowed(None, "home/alice", ALL) == frozenset()


def test_user_placeholder_does_not_treat_glob_characters_in_a_name_as_a_pattern() -> None:
    acl = from_document(
        {"rules": [{"who": ["*"], "repos": ["home/${user}"], "actions": ["*"]}]}, "acl.yml"
    )
    assert acl.allowed("a*", "home/alice", ALL) == frozenset()
    assert acl.allowed("?", "home/x", ALL) == frozenset()
    assert acl.allowed("a*", "home/a*", ALL) == ALL


def test_nothing_matched_nothing_granted(acl: Acl) -> None:
    assert acl.allowed("alice", "elsewhere", ALL) == frozenset()
    assert from_document({}, "empty").allowed("alice", "x", ALL) == frozenset()


def test_deciding_names_the_rules(acl: Acl) -> None:
    [rule] = acl.deciding("carol", "team/app", "delete")
    assert rule.index == 3
    assert "carol" in rule.describe()
    assert acl.deciding("carol", "team/app", "push") == []


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ([], "expected a mapping"),
        ({"rules": [], "extra": 1}, "expected a mapping"),
        ({"rules": [{"who": ["a"], "repos": ["x"]}]}, "rules[0]: expected who, repos and actions"),
        ({"rules": [{"who": ["a"], "repos": ["x"], "actions": ["write"]}]}, "unknown ['write']"),
        ({"rules": [{"who": [], "repos": ["x"], "actions": ["pull"]}]}, "rules[0].who"),
        ({"rules": [{"who": ["group:nope"], "repos": ["x"], "actions": ["pull"]}]}, "'nope'"),
        ({"groups": {"g": "alice"}, "rules": []}, "groups must map"),
    ],
)
def test_invalid_documents_are_refused(document: object, problem: str) -> None:
    with pytest.raises(ValueError, match=r"acl\.yml") as raised:
        from_document(document, "acl.yml")
    assert problem in str(raised.value)


def test_parse_reads_yaml_and_names_the_file_on_errors(tmp_path: Path) -> None:
    path = tmp_path / "acl.yml"
    path.write_text("rules:\n  - who: [alice]\n    repos: ['a/*']\n    actions: [pull]\n")
    assert parse(str(path)).allowed("alice", "a/b", ALL) == {"pull"}
    path.write_text("rules: [\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        parse(str(path))
    with pytest.raises(ValueError, match=r"missing\.yml"):
        parse(str(tmp_path / "missing.yml"))
