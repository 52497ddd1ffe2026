"""Properties of scope parsing (`type:name:actions`, as clients ask for tokens): a scope
written out parses back to itself (names may carry a registry host's port), and any other text
is a scope whose parts hold no separator of their own, or None, never an exception."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from moorage.auth.scopes import Scope
from tests.strategies import hostile_names, mutated, valid_names

scope_names = valid_names | st.builds(
    lambda host, port, name: f"{host}:{port}/{name}",
    st.sampled_from(["localhost", "registry.example", "127.0.0.1"]),
    st.integers(1, 65535),
    valid_names,
)
action_sets = st.frozensets(st.sampled_from(["pull", "push", "delete", "*"]), min_size=1)
scopes = st.builds(Scope, st.sampled_from(["repository", "registry"]), scope_names, action_sets)


@given(scopes)
def test_a_scope_written_out_parses_back(scope: Scope) -> None:
    assert Scope.parse(str(scope)) == scope


@given(
    st.one_of(
        st.text(max_size=60),
        mutated(scopes.map(str)),
        st.builds("repository:{}:{}".format, hostile_names, st.text(max_size=20)),
    )
)
def test_any_text_is_a_scope_or_none(text: str) -> None:
    scope = Scope.parse(text)
    if scope is not None:
        assert scope.type and scope.name and ":" not in scope.type
        assert all(action and "," not in action and ":" not in action for action in scope.actions)
        assert Scope.parse(str(scope)) == scope
