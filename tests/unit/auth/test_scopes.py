"""Scope parsing and formatting, and what a Grant allows."""

from __future__ import annotations

from moorage.auth.scopes import CATALOG, Grant, Scope, repository
from moorage.auth.tokenserver import requested_scopes


def test_parse_repository_scope() -> None:
    assert Scope.parse("repository:team/app:pull,push") == repository("team/app", "pull", "push")


def test_parse_keeps_a_registry_port_in_the_name() -> None:
    scope = Scope.parse("repository:localhost:5000/team/app:pull")
    assert scope == repository("localhost:5000/team/app", "pull")


def test_parse_catalog() -> None:
    assert Scope.parse("registry:catalog:*") == CATALOG


def test_parse_refuses_what_is_not_type_name_actions() -> None:
    for text in ("", "pull", "repository:pull", ":name:pull", "repository::pull"):
        assert Scope.parse(text) is None, text


def test_str_is_the_challenge_form_with_sorted_actions() -> None:
    assert str(repository("a/b", "push", "pull")) == "repository:a/b:pull,push"
    assert str(CATALOG) == "registry:catalog:*"


def test_requested_scopes_splits_space_separated_values() -> None:
    found = requested_scopes(["repository:a:pull repository:b:push", "registry:catalog:*", "x"])
    assert found == [repository("a", "pull"), repository("b", "push"), CATALOG]


def test_grant_is_exact_per_repository_and_action() -> None:
    grant = Grant("u", [repository("a", "pull"), repository("b", "*")])
    assert grant.allows("repository", "a", "pull")
    assert not grant.allows("repository", "a", "push")
    assert not grant.allows("repository", "a/sub", "pull")
    assert not grant.allows("repository", "c", "pull")
    assert grant.allows("repository", "b", "delete")
    assert not grant.allows("registry", "catalog", "*")
    assert grant.covers([repository("a", "pull"), repository("b", "pull", "push")])
    assert not grant.covers([repository("a", "pull", "push")])


def test_everything_grant_allows_all() -> None:
    assert Grant("u", everything=True).covers([repository("x", "push"), CATALOG])
