"""Per-repository access rules (the built-in token server's ACL file).

```yaml
groups:
  developers: [alice, bob]
rules:
  - who: ["group:developers"]   # user names, group:NAME, "anonymous", or "*" (any signed-in user)
    repos: ["team/*"]           # glob patterns; ${user} is the signed-in user's name
    actions: [pull, push]       # pull, push, delete, or "*"
```

A request gets the union of what the matching rules grant; nothing matched, nothing granted.
Rules for `anonymous` apply to everyone: a signed-in user may do at least what an anonymous
caller may, so signing in never loses access to a public repository.

Patterns are shell-style globs matched against the whole repository name (names are checked
against the grammar first, so a pattern only ever meets valid names): `*` matches any run of
characters including `/` (`team/*` covers `team/app` and `team/a/b`, not `team` itself), `?`
one character, `[abc]` one of a set; `${user}` is replaced by the signed-in user's name, taken
literally.
"""

from __future__ import annotations

import fnmatch
import glob
from dataclasses import dataclass
from typing import Any

import yaml

from moorage.auth.scopes import ALL, DELETE, PULL, PUSH

ACTIONS = (PULL, PUSH, DELETE)
ANONYMOUS, ANY_USER, GROUP = "anonymous", "*", "group:"


@dataclass(frozen=True)
class Rule:
    index: int
    who: tuple[str, ...]
    repos: tuple[str, ...]
    actions: frozenset[str]

    def describe(self) -> str:
        return (
            f"rule {self.index}: who {list(self.who)} repos {list(self.repos)} "
            f"actions {sorted(self.actions)}"
        )


@dataclass(frozen=True)
class Acl:
    groups: dict[str, frozenset[str]]
    rules: tuple[Rule, ...]

    def _applies_to(self, rule: Rule, user: str | None) -> bool:
        for who in rule.who:
            if who == ANONYMOUS:
                return True
            if user is None:
                continue
            if who in (ANY_USER, user):
                return True
            if who.startswith(GROUP) and user in self.groups.get(who[len(GROUP) :], ()):
                return True
        return False

    def _covers(self, rule: Rule, user: str | None, repository: str) -> bool:
        for pattern in rule.repos:
            if "${user}" in pattern:
                if user is None:
                    continue
                # Escaped: a name holding `*`, `?` or `[` stands for itself, never a pattern.
                pattern = pattern.replace("${user}", glob.escape(user))
            if fnmatch.fnmatchcase(repository, pattern):
                return True
        return False

    def deciding(self, user: str | None, repository: str, action: str) -> list[Rule]:
        """The rules that grant `action` on `repository` to `user` (None: anonymous)."""
        return [
            rule
            for rule in self.rules
            if (action in rule.actions or ALL in rule.actions)
            and self._applies_to(rule, user)
            and self._covers(rule, user, repository)
        ]

    def allowed(self, user: str | None, repository: str, actions: frozenset[str]) -> frozenset[str]:
        """The subset of `actions` the rules grant."""
        return frozenset(a for a in actions if self.deciding(user, repository, a))


def parse(path: str) -> Acl:
    """Raises ValueError naming the file and the problem."""
    try:
        with open(path, encoding="utf-8") as file:
            document = yaml.safe_load(file) or {}
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from exc
    return from_document(document, path)


def from_document(document: Any, where: str) -> Acl:
    if not isinstance(document, dict) or set(document) - {"groups", "rules"}:
        raise ValueError(f"{where}: expected a mapping with groups and rules")
    groups_raw = document.get("groups") or {}
    if not isinstance(groups_raw, dict) or not all(
        isinstance(v, list) and all(isinstance(m, str) for m in v) for v in groups_raw.values()
    ):
        raise ValueError(f"{where}: groups must map names to lists of users")
    rules = []
    for index, raw in enumerate(document.get("rules") or []):
        at = f"{where}: rules[{index}]"
        if not isinstance(raw, dict) or set(raw) != {"who", "repos", "actions"}:
            raise ValueError(f"{at}: expected who, repos and actions")
        fields = {}
        for key in ("who", "repos", "actions"):
            value = raw[key]
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(v, str) for v in value)
            ):
                raise ValueError(f"{at}.{key}: expected a non-empty list of strings")
            fields[key] = value
        unknown = set(fields["actions"]) - {*ACTIONS, ALL}
        if unknown:
            raise ValueError(
                f"{at}.actions: unknown {sorted(unknown)}; use pull, push, delete or *"
            )
        for who in fields["who"]:
            if who.startswith(GROUP) and who[len(GROUP) :] not in groups_raw:
                raise ValueError(f"{at}.who: no group named {who[len(GROUP) :]!r}")
        rules.append(
            Rule(index, tuple(fields["who"]), tuple(fields["repos"]), frozenset(fields["actions"]))
        )
    groups = {name: frozenset(members) for name, members in groups_raw.items()}
    return Acl(groups, tuple(rules))
