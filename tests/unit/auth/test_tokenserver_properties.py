"""Properties of the built-in token server's scope handling: from any `scope` parameters, a
token is issued that the registry verifies, granting at most what was asked, and only for
repository names the registry accepts (a name it would refuse, such as `a/../b`, is never
granted, whatever the ACL's patterns match).

The server is a real one (`auth.builtin`) built on files in a temporary directory: an ACL that
grants every action on every repository to anyone, so that only the names decide."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from moorage.auth.controllers import Builtin
from moorage.auth.scopes import ALL, REPOSITORY
from moorage.auth.tokenserver import _issue, grant_for, requested_scopes
from tests.strategies import MAX_NAME_LENGTH, NAME_GRAMMAR, hostile_names, valid_names

SERVICE = "props-service"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builtin]:
    directory = tmp_path_factory.mktemp("tokenserver")
    users = directory / "users"
    users.write_text("")
    acl = directory / "acl.yml"
    acl.write_text(
        yaml.safe_dump({"rules": [{"who": ["anonymous", "*"], "repos": ["*"], "actions": ["*"]}]})
    )
    options = {
        "service": SERVICE,
        "users": str(users),
        "acl": str(acl),
        "signingkey": str(directory / "keys" / "token.key"),
    }
    yield Builtin(options, lambda request, path: f"http://registry.example{path}")


def scope_texts() -> st.SearchStrategy[str]:
    """Mostly repository scopes with actions the ACL knows, for valid and hostile names."""
    actions = st.lists(
        st.sampled_from(["pull", "push", "delete", "*"]), min_size=1, max_size=3
    ).map(",".join) | st.text(max_size=10)
    kinds = st.sampled_from(["repository"] * 4 + ["registry", "Repository", "repository(x)", ""])
    return st.one_of(
        st.builds("{}:{}:{}".format, kinds, valid_names | hostile_names, actions),
        st.builds("{}:{}:{}".format, kinds, valid_names | hostile_names, actions),
        st.just("registry:catalog:*"),
        st.text(max_size=40),
    )


@given(st.lists(st.lists(scope_texts(), max_size=3).map(" ".join), max_size=3),
       st.sampled_from([None, "alice"]))  # fmt: skip
def test_tokens_grant_at_most_what_was_asked_for_valid_names_only(
    server: Builtin, values: list[str], user: str | None
) -> None:
    asked = requested_scopes(values)
    granted = grant_for(server, user, asked)
    for scope in granted:
        if scope.type != REPOSITORY:
            continue
        assert len(scope.name) <= MAX_NAME_LENGTH and re.fullmatch(NAME_GRAMMAR, scope.name), (
            f"granted a name the registry refuses: {scope}"
        )
        wanted: set[str] = set()
        for ask in asked:
            if (ask.type, ask.name) == (REPOSITORY, scope.name):
                wanted |= {"pull", "push", "delete"} if ALL in ask.actions else ask.actions
        assert scope.actions <= wanted

    answer = _issue(server, user, asked)
    claims = server.verifier.verify(answer["token"])
    assert claims.access == granted
    assert claims.subject == (user or "")
    assert answer["scope"] == " ".join(str(scope) for scope in granted)
