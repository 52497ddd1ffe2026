"""Scopes: a resource and the actions wanted on it, as the token protocol writes them
(`repository:team/app:pull,push`, `registry:catalog:*`)."""

from __future__ import annotations

from dataclasses import dataclass, field

PULL, PUSH, DELETE, ALL = "pull", "push", "delete", "*"
REPOSITORY, REGISTRY = "repository", "registry"


@dataclass(frozen=True)
class Scope:
    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        """None for text that is not `type:name:actions` (names hold no colon but a registry
        host's port, which the type and actions around it still bound)."""
        head, sep, actions = text.rpartition(":")
        kind, sep2, name = head.partition(":")
        if not sep or not sep2 or not kind or not name:
            return None
        return cls(kind, name, frozenset(a for a in actions.split(",") if a))

    def to_claim(self) -> dict[str, object]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


def repository(name: str, *actions: str) -> Scope:
    return Scope(REPOSITORY, name, frozenset(actions))


CATALOG = Scope(REGISTRY, "catalog", frozenset({ALL}))


@dataclass
class Grant:
    """What an authorized request may do. `user` is None for an anonymous caller."""

    user: str | None
    scopes: list[Scope] = field(default_factory=list)
    everything: bool = False  # basic-auth schemes: a signed-in user may do anything

    def allows(self, kind: str, name: str, action: str) -> bool:
        if self.everything:
            return True
        return any(
            s.type == kind and s.name == name and (action in s.actions or ALL in s.actions)
            for s in self.scopes
        )

    def covers(self, wanted: list[Scope]) -> bool:
        return all(self.allows(s.type, s.name, a) for s in wanted for a in s.actions)
