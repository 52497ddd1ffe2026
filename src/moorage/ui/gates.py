"""Who may do what in the web UI: the registry's own access control, asked as the API asks it.

One gate per `auth` section:

- none: everyone may see and do everything the registry allows (as on the API);
- htpasswd (and distribution's test controller, silly): nothing without signing in; a signed-in
  user may do anything;
- builtin: users from its users file, grants from its ACL: a visitor sees the repositories the
  ACL lets them pull and gets the actions it grants them (anonymous rules apply to everyone);
- token: the issuer is another server, which the UI cannot ask on a user's behalf without
  holding their password; the UI offers no sign-in and says so.

Whether a delete can happen at all (`storage.delete.enabled`, read-only mode) is the pages'
business, not the gate's.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from aiohttp import web

from moorage.auth.controllers import AccessController, Builtin, Htpasswd, Passwords, Silly
from moorage.auth.scopes import PULL

VISIBLE_KEPT = 64  # users whose filtered catalogs are kept


class Gate(Protocol):
    # None when sign-in is possible; else why not, for the sign-in page
    unavailable: str | None
    # whether anything at all is shown without signing in (else: to the sign-in page)
    anonymous_browsing: bool

    async def sign_in(self, request: web.Request, user: str, password: str) -> bool:
        """Checks the credentials (failed attempts are limited, as on the API's logins);
        raises moorage.auth.errors.TooManyRequests."""
        ...

    def signed_in(self, user: str) -> bool:
        """Whether a session's user still exists."""
        ...

    def visible(self, user: str | None, names: list[str], version: int) -> list[str]:
        """The repositories of `names` (sorted) the visitor may see, sorted; `version` changes
        whenever `names` does (moorage.registry.catalog.Catalog.changes)."""
        ...

    def may(self, user: str | None, repository: str, action: str) -> bool: ...


class Open:
    """No access control: as the API, everything to everyone."""

    unavailable: str | None = "this registry has no sign-in: everyone may do everything"
    anonymous_browsing = True

    async def sign_in(self, request: web.Request, user: str, password: str) -> bool:
        return False

    def signed_in(self, user: str) -> bool:
        return False

    def visible(self, user: str | None, names: list[str], version: int) -> list[str]:
        return names

    def may(self, user: str | None, repository: str, action: str) -> bool:
        return True


class Everything:
    """htpasswd: a signed-in user may do anything, an anonymous visitor nothing."""

    unavailable: str | None = None
    anonymous_browsing = False

    def __init__(self, passwords: Passwords) -> None:
        self.passwords = passwords

    async def sign_in(self, request: web.Request, user: str, password: str) -> bool:
        return await self.passwords.check(request, user, password)

    def signed_in(self, user: str) -> bool:
        return self.passwords.users.exists(user)

    def visible(self, user: str | None, names: list[str], version: int) -> list[str]:
        return names if user is not None else []

    def may(self, user: str | None, repository: str, action: str) -> bool:
        return user is not None


class AnyCredentials(Everything):
    """silly, distribution's test controller, which takes any credentials."""

    def __init__(self) -> None:
        pass

    async def sign_in(self, request: web.Request, user: str, password: str) -> bool:
        return bool(user)

    def signed_in(self, user: str) -> bool:
        return True


class Acl:
    """The built-in token server's users and ACL."""

    unavailable: str | None = None
    anonymous_browsing = True

    def __init__(self, server: Builtin) -> None:
        self.server = server
        # user -> (the ACL, the catalog's version, the names visible): an ACL is a new object
        # after each reload of its file
        self._visible: OrderedDict[str | None, tuple[object, int, list[str]]] = OrderedDict()

    async def sign_in(self, request: web.Request, user: str, password: str) -> bool:
        return await self.server.passwords.check(request, user, password)

    def signed_in(self, user: str) -> bool:
        return self.server.passwords.users.exists(user)

    def visible(self, user: str | None, names: list[str], version: int) -> list[str]:
        acl = self.server.acl.value
        kept = self._visible.get(user)
        if kept is not None and kept[0] is acl and kept[1] == version:
            self._visible.move_to_end(user)
            return kept[2]
        shown = [name for name in names if acl.deciding(user, name, PULL)]
        self._visible[user] = (acl, version, shown)
        if len(self._visible) > VISIBLE_KEPT:
            self._visible.popitem(last=False)
        return shown

    def may(self, user: str | None, repository: str, action: str) -> bool:
        return bool(self.server.acl.value.deciding(user, repository, action))


class External(Open):
    """auth.token: grants come from a token server elsewhere."""

    unavailable: str | None = (
        "this registry trusts tokens from an external token server (auth.token), which the web "
        "UI cannot ask for grants on your behalf: browse the registry with a client of that "
        "server, or configure htpasswd or the built-in token server (auth.builtin)"
    )
    anonymous_browsing = False

    def visible(self, user: str | None, names: list[str], version: int) -> list[str]:
        return []

    def may(self, user: str | None, repository: str, action: str) -> bool:
        return False


def for_controller(controller: AccessController | None) -> Gate:
    if controller is None:
        return Open()
    if isinstance(controller, Builtin):
        return Acl(controller)
    if isinstance(controller, Htpasswd):
        return Everything(controller.passwords)
    if isinstance(controller, Silly):
        return AnyCredentials()
    return External()
