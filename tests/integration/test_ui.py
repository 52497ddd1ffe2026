"""The web UI in a real browser (Debian's chromium, driven by Playwright) against real servers:
signing in with the built-in token server's users and ACL and with htpasswd, browsing, searching
as one types, paging, sorting tags by version and by date, usage per repository and in total, a
multi-arch image with its configuration and its referrers, deleting (a tag, a manifest, a
repository) as an allowed user and failing to as another, read-only mode and disabled deletes,
the UI moved and turned off, an external token issuer, http.prefix behind nginx, CORS from
another origin, the keyboard, a phone's width, light and dark, and axe-core's accessibility rules
on every page. Screenshots go to the test's directory, kept when a test fails, or to the
directory MOORAGE_UI_SCREENSHOTS names."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from playwright.sync_api import expect

from moorage.sizes import human
from tests.api import OCI_INDEX, OCI_MANIFEST, Client, sha256
from tests.integration.auth_support import SERVICE, builtin_section, htpasswd_file
from tests.integration.browser_support import accessibility_violations, launch
from tests.integration.replicas_support import run_nginx
from tests.pki import certificate
from tests.servers import Server, free_port, moorage_config, run_moorage

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "seeder": "seeder-pw"}
ACL = {
    "rules": [
        {"who": ["seeder"], "repos": ["*"], "actions": ["*"]},
        {"who": ["alice"], "repos": ["team/*"], "actions": ["*"]},
        {"who": ["bob"], "repos": ["team/*"], "actions": ["pull"]},
        {"who": ["anonymous"], "repos": ["public/*"], "actions": ["pull"]},
    ]
}
DAY = 86400.0
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM = "application/spdx+json"
WAIT = 20.0  # seconds for what the server does on its own (a pull time written)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium for every test here (see launch: not one for the whole run)."""
    yield from launch()


@dataclass
class Registry:
    server: Server
    artifacts: Path  # screenshots, kept with the test's directory

    @property
    def url(self) -> str:
        return self.server.url


def token(url: str, user: str, *scopes: str) -> str:
    answer = requests.get(
        f"{url}/auth/token",
        params=[("service", SERVICE), *(("scope", scope) for scope in scopes)],
        auth=(user, PASSWORDS[user]),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["token"])


def client(url: str, *names: str) -> Client:
    """An API client holding the seeder's token for `names`."""
    api = Client(url)
    scopes = [f"repository:{name}:pull,push,delete" for name in names]
    api.http.headers["Authorization"] = f"Bearer {token(url, 'seeder', *scopes)}"
    return api


def image_config(architecture: str, variant: str = "") -> bytes:
    return json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            **({"variant": variant} if variant else {}),
            "created": "2026-11-01T10:00:00Z",
            "config": {
                "Entrypoint": ["/usr/bin/server"],
                "Cmd": ["--port", "8080"],
                "Env": ["PATH=/usr/bin", "MODE=production"],
                "Labels": {"org.opencontainers.image.title": "multi"},
                "ExposedPorts": {"8080/tcp": {}},
                "WorkingDir": "/srv",
            },
            "history": [
                {"created_by": "ADD rootfs.tar /", "created": "2026-11-01T09:00:00Z"},
                {"created_by": 'CMD ["--port" "8080"]', "empty_layer": True},
            ],
        }
    ).encode()


def artifact(api: Client, name: str, artifact_type: str, subject: bytes, body: bytes) -> bytes:
    payload = api.manifest(
        name,
        b"{}",
        [body],
        config_type="application/vnd.oci.empty.v1+json",
        extra={
            "artifactType": artifact_type,
            "subject": {"mediaType": json.loads(subject)["mediaType"],
                        "digest": sha256(subject), "size": len(subject)},
        },
    )  # fmt: skip
    assert api.put_manifest(name, sha256(payload), payload).status_code == 201
    return payload


def seed(url: str, root: Path) -> None:
    """team/app (tags pushed out of version order), team/multi (two platforms, signed, with an
    SBOM that is signed too), public/tool, other/secret."""
    api = client(url, "team/app", "team/multi", "public/tool", "other/secret")
    for age, tag in ((3, "v1.10"), (2, "v1.2"), (1, "v1.9")):
        api.push_image("team/app", tag, seed=tag)
        link = root / "docker/registry/v2/repositories/team/app/_manifests/tags" / tag
        when = time.time() - age * DAY
        os.utime(link / "current/link", (when, when))
    children = []
    for architecture, variant in (("amd64", ""), ("arm64", "v8")):
        payload = api.manifest("team/multi", image_config(architecture, variant),
                               [f"layer {architecture}".encode() * 100])  # fmt: skip
        assert api.put_manifest("team/multi", sha256(payload), payload).status_code == 201
        platform = {"os": "linux", "architecture": architecture}
        if variant:
            platform["variant"] = variant
        children.append(
            {"mediaType": OCI_MANIFEST, "digest": sha256(payload), "size": len(payload),
             "platform": platform}
        )  # fmt: skip
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
    assert api.put_manifest("team/multi", "latest", index.encode(), OCI_INDEX).status_code == 201
    artifact(api, "team/multi", SIGNATURE, index.encode(), b"signature of the index")
    sbom = artifact(api, "team/multi", SBOM, index.encode(), b'{"spdxVersion":"SPDX-2.3"}')
    artifact(api, "team/multi", SIGNATURE, sbom, b"signature of the SBOM")
    api.push_image("public/tool", "1.0", seed="tool")
    api.push_image("other/secret", "1", seed="secret")


@pytest.fixture(scope="module")
def acl_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """moorage with the built-in token server, pull times recorded each second (as the web UI
    has them recorded, without retention policies), usage computed every second."""
    workdir = tmp_path_factory.mktemp("ui-acl")
    users = htpasswd_file(workdir / "users", PASSWORDS)
    acl = workdir / "acl.yml"
    acl.write_text(yaml.safe_dump(ACL))
    config = moorage_config(workdir / "data", 0, auth=builtin_section(users, acl, workdir / "key"))
    config["storage"]["maintenance"] = {
        "usage": {"interval": "1s"},
        "retention": {"pullinterval": "1s"},
    }
    config["http"] = {"secret": "a shared secret for the sessions"}
    with run_moorage(workdir, config) as server:
        seed(server.url, workdir / "data")
        # in the test's directory (kept when a test fails), or where the variable says
        artifacts = Path(os.environ.get("MOORAGE_UI_SCREENSHOTS") or workdir / "screenshots")
        artifacts.mkdir(parents=True, exist_ok=True)
        yield Registry(server, artifacts)


def new_page(browser: Any, scheme: str = "light", **options: Any) -> Any:
    options = {"viewport": {"width": 1200, "height": 900}, **options}
    context = browser.new_context(color_scheme=scheme, **options)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.problems = []  # what the console says went wrong: a CSP refusal, a failed script
    page.on("console", lambda message: message.type == "error" and page.problems.append(
        message.text))  # fmt: skip
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    return page


def sign_in(page: Any, url: str, user: str, password: str | None = None) -> None:
    page.goto(f"{url}/ui/login")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password or PASSWORDS[user])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/ui/$"))
    assert page.get_by_text(f"Signed in as {user}").is_visible()


def shot(page: Any, registry: Registry, name: str) -> Path:
    path = registry.artifacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def accessible(page: Any) -> None:
    violations = accessibility_violations(page)
    assert not violations, "\n".join(violations)


def column_is(page: Any, column: int, texts: list[str]) -> None:
    """The table's column reads `texts`, once the page the last click asked for is there."""
    expect(page.locator(f"table.listing tbody tr > :nth-child({column})")).to_have_text(texts)


def cell_texts(page: Any, column: int) -> list[str]:
    return [text.strip() for text in page.locator(f"table.listing tbody tr > :nth-child({column})")
            .all_inner_texts()]  # fmt: skip


def test_browse_search_sort_and_a_multi_arch_image(browser: Any, acl_registry: Registry) -> None:
    url = acl_registry.url
    for scheme in ("light", "dark"):
        page = new_page(browser, scheme)
        sign_in(page, url, "alice")

        # the catalog: what alice may pull, with sizes once usage is computed
        names = cell_texts(page, 1)
        assert names == ["public/tool", "team/app", "team/multi"]
        deadline = time.monotonic() + WAIT
        while "B" not in cell_texts(page, 3)[1] and time.monotonic() < deadline:
            time.sleep(0.5)
            page.reload()
        assert cell_texts(page, 3)[1].endswith("B")  # team/app's size
        accessible(page)
        shot(page, acl_registry, f"catalog-{scheme}")

        # search as one types: the results change without a page load, the address follows
        page.get_by_label("Search repositories").press_sequentially("mul", delay=30)
        column_is(page, 1, ["team/multi"])  # "mu" already narrows to it: wait for "mul"'s URL
        expect(page).to_have_url(re.compile(r".*/ui/\?q=mul$"))

        # tags: by push time (newest first) by default, by version on a click, and back
        page.goto(f"{url}/ui/r/team/app")
        column_is(page, 1, ["v1.9", "v1.2", "v1.10"])
        page.get_by_role("link", name="Tag, sort by version").click()
        column_is(page, 1, ["v1.2", "v1.9", "v1.10"])
        page.get_by_role("link", name="Tag, sort by version").click()
        column_is(page, 1, ["v1.10", "v1.9", "v1.2"])
        page.get_by_role("link", name="Pushed, sort by push time").click()
        column_is(page, 1, ["v1.9", "v1.2", "v1.10"])
        pushed = cell_texts(page, 5)
        assert pushed[2] == time.strftime("%Y-%m-%d", time.gmtime(time.time() - 3 * DAY)) + \
            pushed[2][10:]  # fmt: skip
        accessible(page)
        shot(page, acl_registry, f"tags-{scheme}")

        # the multi-arch image: its platforms, then one platform's configuration
        page.goto(f"{url}/ui/r/team/multi/-/manifest/latest")
        assert page.get_by_role("heading", name="team/multi:latest").is_visible()
        platforms = page.locator("section", has=page.get_by_role("heading", name="Platforms"))
        assert platforms.locator("tbody th").all_inner_texts() == ["linux/amd64", "linux/arm64/v8"]
        assert "docker pull 127.0.0.1:" in page.locator("#pull-docker").inner_text()
        # the referrers tree: the index's signature and SBOM, and the SBOM's own signature
        referrers = page.locator("section", has=page.get_by_role("heading", name="Referrers"))
        assert referrers.get_by_role("heading", name=SBOM).is_visible()
        assert referrers.get_by_role("heading", name=SIGNATURE).is_visible()
        assert referrers.locator("li li").count() == 1  # the signature of the SBOM
        accessible(page)
        shot(page, acl_registry, f"manifest-{scheme}")
        platforms.get_by_role("link").last.click()
        expect(page.get_by_role("heading", name="Configuration")).to_be_visible()
        config = page.locator("section", has=page.get_by_role("heading", name="Configuration"))
        text = config.inner_text()
        for expected in ('["/usr/bin/server"]', '["--port", "8080"]', "MODE=production",
                         "8080/tcp", "org.opencontainers.image.title=multi", "linux/arm64/v8"):
            assert expected in text, text  # fmt: skip
        history = page.locator("ol.history li").all_inner_texts()
        assert "ADD rootfs.tar /" in history[0]
        assert len(page.locator("section", has=page.get_by_role("heading", name="Layers"))
                   .locator("tbody tr").all()) == 1  # fmt: skip
        accessible(page)
        assert page.problems == [], page.problems
        page.context.close()


def test_last_pull_times_appear_once_recorded(browser: Any, acl_registry: Registry) -> None:
    url = acl_registry.url
    bearer = token(url, "alice", "repository:team/app:pull")
    pulled = requests.get(
        f"{url}/v2/team/app/manifests/v1.2",
        headers={"Authorization": f"Bearer {bearer}", "Accept": OCI_MANIFEST},
        timeout=30,
    )
    assert pulled.status_code == 200
    page = new_page(browser)
    sign_in(page, url, "alice")
    page.goto(f"{url}/ui/r/team/app?sort=name")
    deadline = time.monotonic() + WAIT
    while cell_texts(page, 6)[0] == "never" and time.monotonic() < deadline:
        time.sleep(0.5)
        page.reload()
    assert cell_texts(page, 1) == ["v1.2", "v1.9", "v1.10"]
    last_pulled = cell_texts(page, 6)
    assert last_pulled[0].startswith(time.strftime("%Y-%m-%d", time.gmtime()))
    assert last_pulled[1:] == ["never", "never"]
    page.context.close()


def test_usage_per_repository_and_in_total(browser: Any, acl_registry: Registry) -> None:
    """The catalog's sizes are the usage route's; the registry's total only for a user who sees
    every repository (it tells of the others)."""
    url = acl_registry.url
    bearer = token(url, "seeder", "registry:catalog:*")
    usage = requests.get(f"{url}/v2/_moorage/usage", timeout=30,
                         headers={"Authorization": f"Bearer {bearer}"})  # fmt: skip
    deadline = time.monotonic() + WAIT
    while usage.status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.5)
        usage = requests.get(usage.url, headers=usage.request.headers, timeout=30)
    assert usage.status_code == 200, usage.text
    figures = usage.json()
    page = new_page(browser)
    sign_in(page, url, "seeder")
    summary = page.locator("p.summary").inner_text()
    assert f"4 repositories · {human(figures['total'])} stored" in summary, summary
    sizes = dict(zip(cell_texts(page, 1), cell_texts(page, 3), strict=True))
    assert sizes == {each["name"]: human(each["total"]) for each in figures["repositories"]}
    alice = new_page(browser)
    sign_in(alice, url, "alice")
    assert "stored" not in alice.locator("p.summary").inner_text()
    page.context.close()
    alice.context.close()


def test_anonymous_visitors_see_what_anonymous_may_pull(
    browser: Any, acl_registry: Registry
) -> None:
    url = acl_registry.url
    page = new_page(browser)
    page.goto(f"{url}/ui/")
    assert cell_texts(page, 1) == ["public/tool"]
    assert page.get_by_role("link", name="Sign in").is_visible()
    assert page.goto(f"{url}/ui/r/team/app").status == 404
    assert page.goto(f"{url}/ui/r/public/tool").status == 200
    page.problems.clear()  # the 404 above
    assert page.get_by_text("Delete").count() == 0
    page.goto(f"{url}/ui/login")
    accessible(page)
    page.context.close()


def test_deleting_as_an_allowed_user_and_failing_to_as_another(
    browser: Any, acl_registry: Registry
) -> None:
    url = acl_registry.url
    api = client(url, "team/app", "team/multi")

    # bob may pull team/* but not delete: no delete buttons, and a forged form is refused
    bob = new_page(browser)
    sign_in(bob, url, "bob")
    bob.goto(f"{url}/ui/r/team/app")
    assert bob.get_by_text("Delete").count() == 0
    assert bob.goto(f"{url}/ui/r/team/app/-/delete?tag=v1.9").status == 403
    bob.problems.clear()  # the browser reports the 403 it was sent to
    csrf = bob.evaluate("document.querySelector('input[name=csrf]').value")
    refused = bob.request.post(f"{url}/ui/r/team/app/-/delete",
                               form={"csrf": csrf, "tag": "v1.9"})  # fmt: skip
    assert refused.status == 403
    assert "v1.9" in api.request("GET", "/v2/team/app/tags/list").json()["tags"]
    # a form that did not come from the UI (no or another session's token) is refused too
    alice = new_page(browser)
    sign_in(alice, url, "alice")
    forged = alice.request.post(f"{url}/ui/r/team/app/-/delete",
                                form={"csrf": csrf, "tag": "v1.9"})  # fmt: skip
    assert forged.status == 403
    assert "v1.9" in api.request("GET", "/v2/team/app/tags/list").json()["tags"]

    # alice deletes a tag, after confirming
    alice.goto(f"{url}/ui/r/team/app")
    alice.get_by_role("link", name="Delete tag v1.9").click()
    expect(alice.get_by_role("heading", name="Delete the tag v1.9?")).to_be_visible()
    accessible(alice)
    shot(alice, acl_registry, "delete-light")
    alice.get_by_role("button", name="Delete").click()
    alice.wait_for_url(re.compile(r"/ui/r/team/app\?deleted="))
    assert alice.get_by_role("status").first.inner_text() == "Deleted tag v1.9."
    column_is(alice, 1, ["v1.2", "v1.10"])
    assert api.request("GET", "/v2/team/app/tags/list").json()["tags"] == ["v1.10", "v1.2"]

    # a manifest by digest, from its page: its tag goes with it
    alice.goto(f"{url}/ui/r/team/app/-/manifest/v1.10")
    digest = alice.locator("dl.facts code").first.inner_text()
    alice.get_by_role("link", name="Delete the manifest and its tags…").click()
    expect(alice.get_by_role("heading", name="Delete a manifest?")).to_be_visible()
    alice.get_by_role("button", name="Delete").click()
    alice.wait_for_url(re.compile(r"/ui/r/team/app\?deleted="))
    assert alice.get_by_role("status").first.inner_text() == f"Deleted digest {digest}."
    column_is(alice, 1, ["v1.2"])
    assert api.request("GET", "/v2/team/app/tags/list").json()["tags"] == ["v1.2"]
    gone = api.request("GET", f"/v2/team/app/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
    assert gone.status_code == 404

    # and the whole repository, once its name is typed
    alice.get_by_role("link", name="Delete the repository team/app…").click()
    alice.get_by_label("Type the repository's name to confirm").fill("team/ap")
    alice.get_by_role("button", name="Delete").click()
    assert alice.get_by_role("alert").inner_text().startswith("That is not the repository's")
    alice.problems.clear()  # the browser reports the 400 of the mistyped name
    alice.get_by_label("Type the repository's name to confirm").fill("team/app")
    alice.get_by_role("button", name="Delete").click()
    alice.wait_for_url(re.compile(r"/ui/\?deleted=team%2Fapp$"))
    assert alice.get_by_role("status").first.inner_text() == "Deleted repository team/app."
    column_is(alice, 1, ["public/tool", "team/multi"])
    gone = api.request("GET", "/v2/team/app/tags/list")
    assert gone.status_code == 404 and gone.json()["errors"][0]["code"] == "NAME_UNKNOWN"
    catalog = requests.get(
        f"{url}/v2/_catalog",
        headers={"Authorization": f"Bearer {token(url, 'seeder', 'registry:catalog:*')}"},
        timeout=30,
    )
    assert catalog.json()["repositories"] == ["other/secret", "public/tool", "team/multi"]
    assert bob.problems == [] and alice.problems == []
    bob.context.close()
    alice.context.close()


def test_sessions_are_signed_httponly_and_the_pages_allow_no_inline_code(
    acl_registry: Registry,
) -> None:
    url = acl_registry.url
    http = requests.Session()
    page = http.get(f"{url}/ui/login", timeout=30)
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/ui/" in cookie
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)  # no inline script
    assert not re.search(r"\sstyle=|<style|\son[a-z]+=", page.text)  # nor style nor handler
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    # after signing in, back to a page of the UI, never elsewhere
    signed_in = http.post(f"{url}/ui/login", allow_redirects=False, timeout=30,
                          data={"csrf": csrf[1], "username": "alice", "password": "alice-pw",
                                "next": "/ui//evil.example/"})  # fmt: skip
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/ui/"
    assert "Secure" not in signed_in.headers["Set-Cookie"]  # plain HTTP here
    # the UI's path without its slash leads to it
    bare = requests.get(f"{url}/ui", allow_redirects=False, timeout=30)
    assert bare.status_code == 303 and bare.headers["Location"] == "/ui/"
    # a cookie altered by the client is not a session: signed out
    session = http.cookies["moorage_ui"]
    http.cookies.set("moorage_ui", session[:-2] + ("AA" if session[-2:] != "AA" else "BB"),
                     path="/ui/")  # fmt: skip
    assert "Signed in as" not in http.get(f"{url}/ui/", timeout=30).text
    # no token, no write: a POST without the form's token changes nothing
    refused = requests.post(f"{url}/ui/login", data={"username": "alice", "password": "alice-pw"},
                            allow_redirects=False, timeout=30)  # fmt: skip
    assert refused.status_code == 403


def test_keyboard_and_a_phone(browser: Any, acl_registry: Registry) -> None:
    url = acl_registry.url
    page = new_page(browser, "dark", viewport={"width": 390, "height": 844}, has_touch=True)
    sign_in(page, url, "alice")
    # the first Tab reaches the skip link, which moves to the content
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    # "/" focuses the search field
    page.locator("h1").click()
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    for path in ("/ui/", "/ui/r/team/multi", "/ui/r/team/multi/-/manifest/latest"):
        page.goto(url + path)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
    shot(page, acl_registry, "manifest-phone-dark")
    page.context.close()


def test_sign_in_with_htpasswd_under_a_prefix_behind_nginx(
    browser: Any, tmp_path: Path
) -> None:
    users = htpasswd_file(tmp_path / "users", {"admin": "admin-pw"})
    config = moorage_config(tmp_path / "data", 0, auth={"htpasswd": {"realm": "r",
                            "path": str(users)}})  # fmt: skip
    config["http"] = {"prefix": "/registry/"}
    with run_moorage(tmp_path, config) as server:
        line = next(ln for ln in server.logs().splitlines() if "moorage listening on" in ln)
        assert f"web UI at {server.url}/registry/ui/" in line
        api = Client(f"{server.url}/registry")
        api.http.auth = ("admin", "admin-pw")
        api.push_image("team/web", "1.0", seed="web")
        with run_nginx(tmp_path / "nginx", [server.host]) as proxy:
            page = new_page(browser)
            # nothing without signing in
            page.goto(f"http://{proxy}/registry/ui/r/team/web")
            assert "/registry/ui/login?next=" in page.url
            page.get_by_label("User name").fill("admin")
            page.get_by_label("Password").fill("wrong")
            page.get_by_role("button", name="Sign in").click()
            assert page.get_by_role("alert").inner_text() == "Wrong user name or password."
            page.problems.clear()  # the browser reports the 401 of the wrong password
            page.get_by_label("Password").fill("admin-pw")
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"http://{proxy}/registry/ui/r/team/web")  # back where it was
            column_is(page, 1, ["1.0"])
            # the pull command names the registry as the browser reached it
            assert page.locator("#pull-docker").inner_text() == f"docker pull {proxy}/team/web:1.0"
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url(re.compile(r"/registry/ui/login"))
            assert page.problems == [], page.problems
            page.context.close()


@pytest.mark.parametrize("setting", ["readonly", "deletes disabled"])
def test_read_only_mode_and_disabled_deletes_show_no_delete(
    browser: Any, tmp_path: Path, setting: str
) -> None:
    root = tmp_path / "data"
    with run_moorage(tmp_path / "writable", moorage_config(root, 0)) as server:
        Client(server.url).push_image("team/app", "1.0")
    config = moorage_config(root, 0)
    if setting == "readonly":
        config["storage"]["maintenance"] = {"readonly": {"enabled": True}}
    else:
        config["storage"]["delete"] = {"enabled": False}
    with run_moorage(tmp_path / "served", config) as server:
        page = new_page(browser)
        for path in ("/ui/r/team/app", "/ui/r/team/app/-/manifest/1.0"):
            page.goto(server.url + path)
            assert page.get_by_text("Delete").count() == 0, path
        assert page.goto(f"{server.url}/ui/r/team/app/-/delete?tag=1.0").status == 405
        assert not page.get_by_role("link", name="Sign in").count()  # no auth: no sign-in
        page.context.close()


def test_the_catalog_in_pages(browser: Any, tmp_path: Path) -> None:
    """More repositories than a page holds: the pager walks them; a search narrows them."""
    with run_moorage(tmp_path, moorage_config(tmp_path / "data", 0)) as server:
        api = Client(server.url)
        names = [f"app-{number:02d}" for number in range(53)]
        for name in names:
            api.push_image(name, "1", seed=name)
        page = new_page(browser)
        page.goto(f"{server.url}/ui/")
        assert cell_texts(page, 1) == names[:50]
        pager = page.get_by_role("navigation", name="Repository pages")
        assert "Page 1 of 2" in pager.inner_text()
        pager.get_by_role("link", name="Next").click()
        column_is(page, 1, names[50:])
        expect(page).to_have_url(re.compile(r".*/ui/\?page=2$"))
        accessible(page)
        page.get_by_role("navigation", name="Repository pages").get_by_role(
            "link", name="Previous"
        ).click()
        column_is(page, 1, names[:50])
        page.get_by_label("Search repositories").press_sequentially("app-5", delay=30)
        column_is(page, 1, ["app-50", "app-51", "app-52"])
        assert page.get_by_role("navigation", name="Repository pages").count() == 0
        assert page.problems == [], page.problems
        page.context.close()


def test_the_ui_moved_or_turned_off(tmp_path: Path) -> None:
    """`ui.path` moves the pages (and the start-up line says where); `ui.enabled: false` leaves
    the API alone on its listener."""
    moved = moorage_config(tmp_path / "data", 0)
    moved["ui"] = {"path": "/browse/registry"}
    with run_moorage(tmp_path / "moved", moved) as server:
        Client(server.url).push_image("team/app", "1.0")
        assert f"web UI at {server.url}/browse/registry/" in server.logs()
        page = requests.get(f"{server.url}/browse/registry/r/team/app", timeout=30)
        assert page.status_code == 200 and ">1.0</a>" in page.text
        assert requests.get(f"{server.url}/ui/", timeout=30).status_code == 404
    off = moorage_config(tmp_path / "data", 0)
    off["ui"] = {"enabled": False}
    with run_moorage(tmp_path / "off", off) as server:
        assert "web UI" not in server.logs()
        assert requests.get(f"{server.url}/ui/", timeout=30).status_code == 404
        assert requests.get(f"{server.url}/v2/team/app/tags/list", timeout=30).json() == {
            "name": "team/app",
            "tags": ["1.0"],
        }


def test_an_external_token_issuer_offers_no_sign_in(tmp_path: Path) -> None:
    bundle = tmp_path / "root.pem"
    bundle.write_bytes(certificate("external root").pem())
    auth = {"token": {"realm": "https://auth.example/token", "service": SERVICE,
                      "issuer": "elsewhere", "rootcertbundle": str(bundle)}}  # fmt: skip
    with run_moorage(tmp_path, moorage_config(tmp_path / "data", 0, auth=auth)) as server:
        catalog = requests.get(f"{server.url}/ui/", allow_redirects=False, timeout=30)
        assert catalog.status_code == 303 and "/ui/login" in catalog.headers["Location"]
        login = requests.get(f"{server.url}/ui/login", timeout=30)
        assert "external token server (auth.token)" in login.text
        assert 'name="password"' not in login.text


@contextlib.contextmanager
def external_page(port: int) -> Iterator[str]:
    """A web server on loopback serving one empty page: an external UI's origin."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>another registry UI</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("allowed_by", ["ui.cors", "http.headers"])
def test_cors_preflights_from_an_allowed_origin_pass_without_credentials(
    browser: Any, tmp_path: Path, allowed_by: str
) -> None:
    """An external UI's page (served from another port, so another origin) calls the API with
    credentials: the preflight passes, the answer is readable; another origin's
    preflight meets the 401 as before. The origin is allowed by moorage's setting or, as
    distribution users do, by an Access-Control-Allow-Origin header in http.headers."""
    users = htpasswd_file(tmp_path / "users", {"admin": "admin-pw"})
    config = moorage_config(tmp_path / "data", 0, auth={"htpasswd": {"realm": "r",
                            "path": str(users)}})  # fmt: skip
    # another port on loopback: another origin, in the registry's own address space (a public
    # origin calling a loopback address meets the browser's private network checks besides)
    port = free_port()
    origin = f"http://localhost:{port}"
    if allowed_by == "ui.cors":
        config["ui"] = {"cors": {"origins": [origin]}}
    else:
        config["http"] = {"headers": {"Access-Control-Allow-Origin": [origin]}}
    with run_moorage(tmp_path, config) as server:
        api = Client(server.url)
        api.http.auth = ("admin", "admin-pw")
        api.push_image("team/app", "1.0")
        for asking, expected in ((origin, 204), ("http://evil.example", 401)):
            preflight = requests.options(
                f"{server.url}/v2/_catalog",
                headers={"Origin": asking, "Access-Control-Request-Method": "GET",
                         "Access-Control-Request-Headers": "authorization"},
                timeout=30,
            )  # fmt: skip
            assert preflight.status_code == expected, preflight.text
        # http.headers go on every answer (as in distribution); the other origin is never named
        assert preflight.headers.get("Access-Control-Allow-Origin") in (None, origin)

        page = new_page(browser)
        with external_page(port) as address:
            assert address == origin
            page.goto(f"{origin}/")
            basic = base64.b64encode(b"admin:admin-pw").decode()
            answer = page.evaluate(
                """async ([url, basic]) => {
                    const response = await fetch(url, {headers: {Authorization: "Basic " + basic}});
                    return [response.status, await response.json(),
                            response.headers.get("Docker-Distribution-API-Version")];
                }""",
                [f"{server.url}/v2/_catalog", basic],
            )
            assert answer == [200, {"repositories": ["team/app"]}, "registry/2.0"]
        page.context.close()
