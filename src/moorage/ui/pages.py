"""The web UI's pages: aiohttp handlers that gather what a page shows from the registry's
services (moorage.ui.model) and render it with the templates beside this module.

Routes, below the UI's path (`ui.path` under `http.prefix`):

    GET  /                               the catalog (?q= search, ?page=)
    GET  /r/<name>                       its tags (?q=, ?sort=pushed|name, ?order=, ?page=)
    GET  /r/<name>/-/manifest/<ref>      a manifest by tag or digest: layers, config,
                                         platforms, referrers
    GET  /r/<name>/-/delete?tag=|digest= the confirmation of a delete (neither: the repository)
    POST /r/<name>/-/delete              the delete
    GET  /login, POST /login, /logout    signing in and out
    GET  /static/<file>                  the stylesheet, the script and the icon

`/-/` cannot be part of a repository name (a component starts with a letter or digit), which
keeps the name and what follows apart. A page answers `?fragment=1` with its results alone,
which the script swaps in as a search is typed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web

from moorage.api.context import absolute_url
from moorage.api.errors import code_and_status
from moorage.auth.errors import Denied, TooManyRequests
from moorage.auth.scopes import DELETE, PULL
from moorage.lifecycle.pulls import PullTimes, pull_times
from moorage.lifecycle.quotas import Quotas
from moorage.lifecycle.usage import Usage, UsageTracker
from moorage.registry.digest import Digest
from moorage.registry.errors import NameInvalid, NameUnknown, RegistryError, Unsupported
from moorage.registry.names import check_name, check_tag
from moorage.registry.repository import Registry, Repository
from moorage.sizes import human
from moorage.ui import model
from moorage.ui.gates import Gate
from moorage.ui.sessions import CSRF_FIELD, Session, Sessions
from moorage.ui.versions import version_key

log = logging.getLogger("moorage.ui")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CATALOG_PAGE = 50  # repositories a page
TAGS_PAGE = 100  # tags a page
VERSIONS_KEPT = 256  # repositories whose tags are kept in version order, and push times
PUSH_TIMES_FRESH = 2.0  # seconds after which a repository's push times are read again
STATIC = {"ui.css": "text/css", "ui.js": "text/javascript", "icon.svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class Forbidden(Denied):
    """The visitor may not do this (the UI's own refusal, shown as a page)."""

    message = "you may not do this"


@dataclass(frozen=True)
class Options:
    """What the pages need to know of the registry's settings."""

    base: str  # the UI's URL path, without the trailing slash (`/ui`, `/prefix/ui`)
    deletes: bool  # storage.delete.enabled
    readonly: bool  # storage.maintenance.readonly
    records_pulls: bool  # pull times are recorded (the UI on or retention policies, not read-only)


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


def iso(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def short(digest: Digest | str | None) -> str:
    text = str(digest or "")
    algorithm, _, hex_ = text.partition(":")
    return f"{algorithm}:{hex_[:12]}" if hex_ else text


def _page_number(request: web.Request) -> int:
    text = request.query.get("page", "1")
    return int(text) if text.isdigit() and 0 < len(text) < 7 and int(text) > 0 else 1


class Pages:
    def __init__(
        self,
        registry: Registry,
        gate: Gate,
        sessions: Sessions,
        options: Options,
        usage: UsageTracker | None,
        quotas: Quotas | None,
    ) -> None:
        self.registry = registry
        self.gate = gate
        self.sessions = sessions
        self.options = options
        self.usage = usage
        self.quotas = quotas
        self.summaries = model.Summaries(registry.driver)
        # repository -> (a tag listing, the same tags in version order)
        self._versions: OrderedDict[str, tuple[list[str], list[str]]] = OrderedDict()
        # repository -> (when read, its tags' push times), and the re-reads under way
        self._times: OrderedDict[str, tuple[float, dict[str, float]]] = OrderedDict()
        self._rereads: dict[str, asyncio.Task[None]] = {}
        files = resources.files("moorage.ui")
        self.static = {
            name: (files.joinpath("static", name).read_bytes(), kind)
            for name, kind in STATIC.items()
        }
        # the files' URLs carry their content's hash: cached for good, reloaded on change
        self.static_version = hashlib.sha256(
            b"".join(body for body, _ in self.static.values())
        ).hexdigest()[:12]
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("moorage.ui", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            size=lambda n: "" if n is None else human(n),
            when=when,
            iso=iso,
            short=short,
        )
        self.templates.globals.update(
            base=options.base,
            static=self._static_url,
            url=self._url,
        )

    # -- the application -----------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        router = app.router
        router.add_get("", self.to_catalog, name="ui.root")  # the path without its slash
        router.add_get("/", self.catalog, name="ui.catalog")
        router.add_get("/login", self.login_form, name="ui.login")
        router.add_post("/login", self.login, name="ui.login_post")
        router.add_post("/logout", self.logout, name="ui.logout")
        router.add_get("/static/{file}", self.static_file, name="ui.static")
        # the longer paths first: a repository's name would match all of them
        repo = "/r/{repository:[^{}]+?}"
        router.add_get(repo + "/-/manifest/{reference}", self.manifest, name="ui.manifest")
        delete = router.add_resource(repo + "/-/delete", name="ui.delete")
        delete.add_route("GET", self.confirm_delete)
        delete.add_route("POST", self.delete)
        router.add_get(repo, self.repository, name="ui.repository")
        router.add_route("*", "/{tail:.*}", self.not_found, name="ui.unknown")
        return app

    def _url(self, *parts: str, **query: Any) -> str:
        path = (
            self.options.base
            + "/"
            + "/".join(urllib.parse.quote(part, safe="/:@") for part in parts)
        )
        shown = {key: value for key, value in query.items() if value not in (None, "")}
        return path + ("?" + urllib.parse.urlencode(shown) if shown else "")

    def _static_url(self, name: str) -> str:
        return self._url("static", name, v=self.static_version)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        request["ui_https"] = _https(request)
        session = self.sessions.load(request)
        if session.user is not None and not self.gate.signed_in(session.user):
            session = self.sessions.new(None)  # the user was removed: signed out
        request["ui_session"] = session
        request["user"] = session.user or "-"  # for the access log
        try:
            if request.method == "POST":
                form = await request.post()
                token = form.get(CSRF_FIELD)
                if not session.valid_token(token if isinstance(token, str) else None):
                    raise Forbidden(
                        "the form has expired or did not come from this page: reload and retry"
                    )
            response = await handler(request)
        except web.HTTPException:
            raise
        except TooManyRequests as exc:
            response = self._error(request, exc, "too many failed sign-ins: retry later")
        except RegistryError as exc:
            response = self._error(request, exc, exc.message)
        except Exception:
            log.exception("web UI: unexpected error on %s %s", request.method, request.path)
            response = self.render(
                request, "error.html", {"message": "something went wrong; see the log"}, 500
            )
        session = request["ui_session"]
        if session.fresh and request.match_info.route.name != "ui.static":
            self.sessions.save(request, response, session)
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    def _error(self, request: web.Request, error: RegistryError, message: str) -> web.Response:
        _, status = code_and_status(error)
        response = self.render(request, "error.html", {"message": message}, status)
        response.headers.update(error.headers)
        return response

    def render(
        self, request: web.Request, template: str, context: dict[str, Any], status: int = 200
    ) -> web.Response:
        session: Session = request["ui_session"]
        page = self.templates.get_template(template).render(
            session=session,
            user=session.user,
            csrf_field=CSRF_FIELD,
            sign_in=self.gate.unavailable is None,
            request_path=request.path_qs,
            **context,
        )
        return web.Response(text=page, status=status, content_type="text/html")

    def _redirect(self, location: str) -> web.Response:
        return web.Response(status=303, headers={"Location": location})

    def _to_sign_in(self, request: web.Request) -> web.Response:
        return self._redirect(self._url("login", next=request.path_qs))

    # -- reading ------------------------------------------------------------------------

    def _current_usage(self) -> Usage | None:
        if self.usage is None:
            return None
        if not self.usage.computes:
            self.usage.load()
        return self.usage.current

    async def catalog(self, request: web.Request) -> web.Response:
        user = request["ui_session"].user
        if user is None and not self.gate.anonymous_browsing:
            return self._to_sign_in(request)
        every = await self.registry.repositories()
        visible = self.gate.visible(user, every, self.registry.catalog.changes)
        query = request.query.get("q", "").strip()
        needle = query.lower()
        matching = [name for name in visible if needle in name] if needle else visible
        pages = max(1, math.ceil(len(matching) / CATALOG_PAGE))
        page = min(_page_number(request), pages)
        names = matching[(page - 1) * CATALOG_PAGE : page * CATALOG_PAGE]
        usage = self._current_usage()

        async def row(name: str) -> dict[str, Any] | None:
            repo = self.registry.repository(name)
            tags = await repo.tags.all()
            if not tags and not await repo.exists():
                return None  # deleted since the catalog was last walked
            limit = self.quotas.limit_for(name) if self.quotas is not None else None
            return {
                "name": name,
                "tags": len(tags),
                "usage": usage.of(name) if usage is not None else None,
                "quota": limit.size if limit is not None else None,
            }

        rows = [found for found in await model.gather(row(name) for name in names) if found]
        context = {
            "query": query,
            "rows": rows,
            "page": page,
            "pages": pages,
            "matching": len(matching),
            "visible": len(visible),
            "usage": usage,
            "total": usage.total if usage is not None and len(visible) == len(every) else None,
            "usage_enabled": self.usage is not None,
            "deleted": _deleted_note(request),
        }
        if request.query.get("fragment"):
            return self.render(request, "catalog_results.html", context)
        return self.render(request, "catalog.html", context)

    def _by_version(self, name: str, tags: list[str]) -> list[str]:
        """The tags in version order, kept while the repository's listing is the same list
        (Tags.all keeps one while the tags directory is unchanged)."""
        kept = self._versions.get(name)
        if kept is not None and kept[0] is tags:
            return kept[1]
        ordered = sorted(tags, key=version_key)
        self._versions[name] = (tags, ordered)
        if len(self._versions) > VERSIONS_KEPT:
            self._versions.popitem(last=False)
        return ordered

    async def _push_times(self, repo: Repository, every: list[str]) -> dict[str, float]:
        """The push times of `every` tag the repository has. Reading them costs a stat per tag
        (a walk on object stores), which paging and re-sorting a large repository would
        otherwise pay on every click: they are kept, and once PUSH_TIMES_FRESH seconds old
        read again in the background while the kept ones answer (as the catalog does). A tag
        added since is read at once; a tag pushed again moves once the re-read is done."""
        kept = self._times.get(repo.name)
        if kept is None:
            times = await repo.tags.push_times(every)
            self._times[repo.name] = (time.monotonic(), times)
        else:
            read_at, times = kept
            missing = [tag for tag in every if tag not in times]
            if missing:
                times.update(await repo.tags.push_times(missing))
            if time.monotonic() - read_at > PUSH_TIMES_FRESH and repo.name not in self._rereads:
                self._rereads[repo.name] = asyncio.create_task(self._reread(repo))
        self._times.move_to_end(repo.name)
        if len(self._times) > VERSIONS_KEPT:
            self._times.popitem(last=False)
        return times

    async def _reread(self, repo: Repository) -> None:
        try:
            self._times[repo.name] = (time.monotonic(), await repo.tags.push_times())
        except Exception:
            log.exception("web UI: reading the push times of %s failed", repo.name)
        finally:
            del self._rereads[repo.name]

    def _readable(self, request: web.Request) -> tuple[str | None, Repository]:
        """The visitor and the repository of the path, which they may pull; else NameUnknown
        (a repository one may not see is as one that does not exist)."""
        user = request["ui_session"].user
        name = request.match_info["repository"]
        try:
            check_name(name)
        except NameInvalid:
            raise _Unknown(name) from None
        if not self.gate.may(user, name, PULL):
            if user is None and not self.gate.anonymous_browsing:
                raise _SignInFirst()
            raise _Unknown(name)
        return user, self.registry.repository(name)

    def _may_delete(self, user: str | None, name: str) -> bool:
        return (
            self.options.deletes and not self.options.readonly and self.gate.may(user, name, DELETE)
        )

    def _pull_host(self, request: web.Request) -> tuple[str, bool]:
        """The registry as clients name it (host and port), and whether it is plain HTTP."""
        url = urllib.parse.urlsplit(absolute_url(request, "/"))
        return url.netloc or request.host, url.scheme != "https"

    async def repository(self, request: web.Request) -> web.StreamResponse:
        try:
            user, repo = self._readable(request)
        except _SignInFirst:
            return self._to_sign_in(request)
        if not await repo.exists():
            raise _Unknown(repo.name)
        tags = every = await repo.tags.all()
        query = request.query.get("q", "").strip()
        if query:
            tags = [tag for tag in tags if query.lower() in tag.lower()]
        sort = request.query.get("sort", "pushed")
        if sort not in ("pushed", "name"):
            sort = "pushed"
        default_order = "desc" if sort == "pushed" else "asc"
        order = request.query.get("order", default_order)
        if order not in ("asc", "desc"):
            order = default_order
        if sort == "name":
            ordered = self._by_version(repo.name, tags)
            if order == "desc":
                ordered = ordered[::-1]
        else:
            times = await self._push_times(repo, every)
            ordered = sorted(
                tags, key=lambda tag: (times.get(tag, 0.0), tag), reverse=order == "desc"
            )
        pages = max(1, math.ceil(len(ordered) / TAGS_PAGE))
        page = min(_page_number(request), pages)
        shown = ordered[(page - 1) * TAGS_PAGE : page * TAGS_PAGE]
        pulls: PullTimes | None = None
        if self.options.records_pulls:
            pulls = await pull_times(self.registry.driver, repo.name)
        rows = await model.tag_rows(repo, self.summaries, shown, pulls)
        usage = self._current_usage()
        limit = self.quotas.limit_for(repo.name) if self.quotas is not None else None
        host, plain = self._pull_host(request)
        context = {
            "name": repo.name,
            "rows": rows,
            "count": len(ordered),
            "all_tags": len(every),
            "query": query,
            "sort": sort,
            "order": order,
            "page": page,
            "pages": pages,
            "records_pulls": self.options.records_pulls,
            "usage": usage.of(repo.name) if usage is not None else None,
            "quota": limit.size if limit is not None else None,
            "may_delete": self._may_delete(user, repo.name),
            "host": host,
            "plain": plain,
            "deleted": _deleted_note(request),
        }
        if request.query.get("fragment"):
            return self.render(request, "tags_results.html", context)
        return self.render(request, "repository.html", context)

    async def manifest(self, request: web.Request) -> web.StreamResponse:
        try:
            user, repo = self._readable(request)
        except _SignInFirst:
            return self._to_sign_in(request)
        reference = request.match_info["reference"]
        details = await model.manifest_details(
            repo, self.registry.driver, self.summaries, reference
        )
        host, plain = self._pull_host(request)
        tag = None if Digest.looks_like(reference) else reference
        return self.render(
            request,
            "manifest.html",
            {
                "name": repo.name,
                "tag": tag,
                "details": details,
                "may_delete": self._may_delete(user, repo.name),
                "host": host,
                "plain": plain,
            },
        )

    # -- deleting -----------------------------------------------------------------------

    def _deletable(self, request: web.Request) -> Repository:
        user, repo = self._readable(request)
        if not self.options.deletes or self.options.readonly:
            raise Unsupported(
                "the registry is in read-only mode"
                if self.options.readonly
                else "deletes are disabled on this registry (storage.delete.enabled)"
            )
        if not self.gate.may(user, repo.name, DELETE):
            raise Forbidden(f"you may not delete from {repo.name}")
        return repo

    def _target(self, fields: Any) -> tuple[str, str]:
        """What a delete is of: ("tag", tag), ("digest", digest) or ("repository", name)."""
        if fields.get("tag"):
            return "tag", check_tag(str(fields["tag"]))
        if fields.get("digest"):
            return "digest", str(Digest.parse(str(fields["digest"])))
        return "repository", ""

    async def confirm_delete(self, request: web.Request) -> web.StreamResponse:
        try:
            repo = self._deletable(request)
        except _SignInFirst:
            return self._to_sign_in(request)
        kind, reference = self._target(request.query)
        return self.render(
            request,
            "delete.html",
            {"name": repo.name, "kind": kind, "reference": reference, "mismatch": False},
        )

    async def delete(self, request: web.Request) -> web.StreamResponse:
        try:
            repo = self._deletable(request)
        except _SignInFirst:
            return self._to_sign_in(request)
        form = await request.post()
        kind, reference = self._target(form)
        if kind == "repository":
            if form.get("confirm") != repo.name:
                context = {"name": repo.name, "kind": kind, "reference": "", "mismatch": True}
                return self.render(request, "delete.html", context, 400)
            await repo.delete()
            self._times.pop(repo.name, None)
            log.info("web UI: %s deleted repository %s", request["user"], repo.name)
            return self._redirect(self._url(deleted=repo.name))
        await repo.manifests.delete(reference)
        self._times.pop(repo.name, None)
        log.info("web UI: %s deleted %s %s of %s", request["user"], kind, reference, repo.name)
        return self._redirect(self._url("r", repo.name, deleted=f"{kind} {reference}"))

    # -- signing in ---------------------------------------------------------------------

    def _next(self, value: Any) -> str:
        """Where to go after signing in: a page of the UI, never elsewhere."""
        text = value if isinstance(value, str) else ""
        inside = (
            text.startswith(self.options.base + "/")
            and _VISIBLE.fullmatch(text) is not None
            and "//" not in text
            and "\\" not in text
        )
        return text if inside else self._url()

    async def login_form(self, request: web.Request) -> web.Response:
        context = {
            "next": self._next(request.query.get("next")),
            "failed": False,
            "unavailable": self.gate.unavailable,
            "username": "",
        }
        return self.render(request, "login.html", context)

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        user, password = form.get("username"), form.get("password")
        target = self._next(form.get("next"))
        if (
            self.gate.unavailable is None
            and isinstance(user, str)
            and isinstance(password, str)
            and user
            and await self.gate.sign_in(request, user, password)
        ):
            request["ui_session"] = self.sessions.new(user)
            request["user"] = user
            log.info("web UI: %s signed in", user)
            return self._redirect(target)
        context = {
            "next": target,
            "failed": True,
            "unavailable": self.gate.unavailable,
            "username": user if isinstance(user, str) else "",
        }
        return self.render(request, "login.html", context, 401)

    async def logout(self, request: web.Request) -> web.Response:
        request["ui_session"] = self.sessions.new(None)
        return self._redirect(self._url())

    # -- the rest -----------------------------------------------------------------------

    async def static_file(self, request: web.Request) -> web.Response:
        found = self.static.get(request.match_info["file"])
        if found is None:
            return await self.not_found(request)
        body, kind = found
        return web.Response(
            body=body,
            content_type=kind,
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )

    async def to_catalog(self, request: web.Request) -> web.Response:
        return self._redirect(self._url())

    async def not_found(self, request: web.Request) -> web.Response:
        return self.render(request, "error.html", {"message": "no such page"}, 404)


class _Unknown(NameUnknown):
    """A repository that does not exist or that the visitor may not see."""

    message = "no such repository, or you may not see it"

    def __init__(self, name: str) -> None:
        super().__init__(detail={"name": name})


class _SignInFirst(Exception):
    """An anonymous visitor where only signed-in users see anything."""


_VISIBLE = re.compile(r"[\x21-\x7e]*")  # visible ASCII: what a Location header may carry


def _https(request: web.Request) -> bool:
    """Whether the browser reached the page over HTTPS, itself or through a proxy that says
    so (the session cookie is then Secure)."""
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    forwarded = str(request.forwarded[0].get("proto", "")).lower() if request.forwarded else ""
    return request.secure or "https" in (proto, forwarded)


_NOTE = re.compile(r"(?:(?:tag|digest) )?[A-Za-z0-9._:/-]{1,300}")


def _deleted_note(request: web.Request) -> str:
    """What a delete just removed, from the redirect's query: a name, tag or digest only."""
    note = request.query.get("deleted", "")
    return note if _NOTE.fullmatch(note) else ""
