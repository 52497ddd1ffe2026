"""Authentication against real servers and real clients: `auth.htpasswd`, `auth.token` with
tokens minted here by a CA of the test's own, and the built-in token server with its users file
and ACL; skopeo (`--creds`), podman (`login`) and oras-py (`login`) against htpasswd and the
built-in token server; and the reference registry accepting the tokens moorage issues (and
judging hand-made tokens exactly as moorage does)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import jwt
import oras.provider
import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from moorage.auth.tokens import libtrust_key_id
from tests.api import Client, error_codes
from tests.images import make_image
from tests.integration.auth_support import SERVICE, builtin_section, htpasswd_file
from tests.pki import (
    Issued,
    certificate,
    claims,
    hmac_signed,
    mint,
    repo_access,
    tampered,
    unsigned,
)
from tests.servers import Server, moorage_config, run_moorage, run_reference_registry

pytestmark = pytest.mark.timeout(600)

TIMEOUT = 120  # seconds, for any one subprocess
ALL_ACTIONS = ("pull", "push", "delete")
CHALLENGE = re.compile(r'(\w+)="([^"]*)"')
FORM = "application/x-www-form-urlencoded"
_LOGGED_FAILURE = re.compile(r"Traceback|\s(?:ERROR|CRITICAL|error|critical)\s")

PASSWORDS = {
    "alice": "alice-pw",
    "bob": "bob-pw",
    "carol": "carol-pw",
    "dave": "dave-pw",
    "admin": "admin-pw",
}
ACL = {
    "groups": {"devs": ["alice", "bob"]},
    "rules": [
        {"who": ["anonymous"], "repos": ["public/*"], "actions": ["pull"]},
        {"who": ["*"], "repos": ["shared/*"], "actions": ["pull"]},
        {"who": ["group:devs"], "repos": ["team/*"], "actions": ["pull", "push"]},
        {"who": ["carol"], "repos": ["team/*"], "actions": ["pull", "delete"]},
        {"who": ["*"], "repos": ["home/${user}/*"], "actions": ["*"]},
        {"who": ["admin"], "repos": ["*"], "actions": ["*"]},
    ],
}


# helpers


def run(
    args: list[str], *, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    if shutil.which(args[0]) is None and args[0] != sys.executable:
        pytest.fail(f"{args[0]} is missing: apt-get install -y {args[0]}")
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=TIMEOUT, check=False, input=stdin
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited with {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def moorage_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "moorage", *args], check=False, stdin=stdin)


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["skopeo", "--insecure-policy", *args], check=check)


def assert_log_clean(server: Server) -> None:
    logs = server.logs()
    assert not _LOGGED_FAILURE.search(logs), logs


def challenge(response: requests.Response) -> tuple[str, dict[str, str]]:
    """The scheme and parameters of a 401's WWW-Authenticate."""
    assert response.status_code == 401, response.text
    assert error_codes(response) == ["UNAUTHORIZED"]
    value = response.headers["WWW-Authenticate"]
    scheme, _, params = value.partition(" ")
    return scheme, dict(CHALLENGE.findall(params))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


@pytest.fixture
def short_dirs() -> Iterator[Callable[[], Path]]:
    """Short directories for podman's run root (it must be under 50 characters)."""
    made: list[Path] = []

    def make() -> Path:
        made.append(Path(tempfile.mkdtemp(prefix="mr-")))
        return made[-1]

    yield make
    for directory in made:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Podman:
    """podman with storage and an auth file of its own."""

    root: Path
    runroot: Path
    authfile: Path

    def __call__(self, *args: str, check: bool = True, stdin: str | None = None) -> Any:
        command, *rest = args
        return run(
            [
                "podman",
                "--root",
                str(self.root),
                "--runroot",
                str(self.runroot),
                "--storage-driver=vfs",
                "--cgroup-manager=cgroupfs",
                "--events-backend=file",
                command,
                *(["--authfile", str(self.authfile)] if command in _AUTHFILE_COMMANDS else []),
                *rest,
            ],
            check=check,
            stdin=stdin,
        )


_AUTHFILE_COMMANDS = ("login", "logout", "pull", "push")


def make_podman(tmp_path: Path, short_dirs: Callable[[], Path], name: str) -> Podman:
    return Podman(tmp_path / f"{name}-root", short_dirs(), tmp_path / f"{name}-auth.json")


# auth.htpasswd


@pytest.fixture
def htpasswd_server(tmp_path: Path) -> Iterator[Server]:
    users = htpasswd_file(tmp_path / "htpasswd", {"alice": "alice-pw", "bob": "bob-pw"})
    config = moorage_config(
        tmp_path / "data", 0, auth={"htpasswd": {"realm": "test-realm", "path": str(users)}}
    )
    with run_moorage(tmp_path / "moorage", config) as server:
        yield server
        assert_log_clean(server)


def test_htpasswd_anonymous_is_challenged_with_basic(htpasswd_server: Server) -> None:
    for path in ("/v2/", "/v2/_catalog", "/v2/team/app/tags/list", "/v2/team/app/manifests/v1"):
        response = requests.get(htpasswd_server.url + path, timeout=10)
        assert challenge(response) == ("Basic", {"realm": "test-realm"})
        assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    response = requests.post(htpasswd_server.url + "/v2/team/app/blobs/uploads/", timeout=10)
    assert challenge(response)[0] == "Basic"


def test_htpasswd_wrong_password_and_unknown_user_are_refused(htpasswd_server: Server) -> None:
    for credentials in (("alice", "nope"), ("nobody", "alice-pw"), ("alice", "")):
        response = requests.get(f"{htpasswd_server.url}/v2/", auth=credentials, timeout=10)
        assert challenge(response)[0] == "Basic"
    response = requests.get(
        f"{htpasswd_server.url}/v2/", headers={"Authorization": "Basic !!!"}, timeout=10
    )
    assert challenge(response)[0] == "Basic"


def test_htpasswd_signed_in_user_may_do_everything(htpasswd_server: Server) -> None:
    client = Client(htpasswd_server.url)
    client.http.auth = ("alice", "alice-pw")
    assert client.request("GET", "/v2/").status_code == 200
    payload, digest = client.push_image("team/app", "v1")
    assert client.request("GET", "/v2/team/app/manifests/v1").content == payload
    assert client.request("GET", "/v2/_catalog").json() == {"repositories": ["team/app"]}
    assert client.request("DELETE", f"/v2/team/app/manifests/{digest}").status_code == 202


def test_htpasswd_refuses_non_bcrypt_entries_at_start(tmp_path: Path) -> None:
    users = tmp_path / "htpasswd"
    users.write_text("alice:$apr1$salt1234$abcdefghijklmnopqrstuv\n")
    config = moorage_config(tmp_path / "data", 0, auth={"htpasswd": {"path": str(users)}})
    with (
        pytest.raises(RuntimeError, match="server exited") as raised,
        run_moorage(tmp_path / "moorage", config),
    ):
        pass
    assert "non-bcrypt" in str(raised.value) and "htpasswd:1" in str(raised.value)


def test_htpasswd_failed_logins_are_rate_limited_per_user(htpasswd_server: Server) -> None:
    url = f"{htpasswd_server.url}/v2/"
    secret = "guess-number-{}"
    for attempt in range(5):
        response = requests.get(url, auth=("alice", secret.format(attempt)), timeout=10)
        assert response.status_code == 401
    for credentials in (("alice", "wrong"), ("alice", "alice-pw")):
        response = requests.get(url, auth=credentials, timeout=10)
        assert response.status_code == 429, response.text
        assert error_codes(response) == ["TOOMANYREQUESTS"]
        assert 0 < int(response.headers["Retry-After"]) <= 60
    # another user from the same address is not locked out by alice's failures
    assert requests.get(url, auth=("bob", "bob-pw"), timeout=10).status_code == 200
    logs = htpasswd_server.logs()
    assert "failed login for user 'alice' from 127.0.0.1" in logs
    assert "guess-number" not in logs and "alice-pw" not in logs


def test_htpasswd_failed_logins_are_rate_limited_per_address(htpasswd_server: Server) -> None:
    url = f"{htpasswd_server.url}/v2/"
    for attempt in range(20):
        response = requests.get(url, auth=(f"user{attempt}", "x"), timeout=10)
        assert response.status_code == 401
    response = requests.get(url, auth=("bob", "bob-pw"), timeout=10)
    assert response.status_code == 429
    assert error_codes(response) == ["TOOMANYREQUESTS"]
    assert int(response.headers["Retry-After"]) > 0


def test_htpasswd_users_file_is_reloaded_without_restart(tmp_path: Path) -> None:
    users = tmp_path / "htpasswd"
    assert (
        moorage_cli(
            "user", "add", "--users", str(users), "--password-stdin", "alice", stdin="pw-1\n"
        ).returncode
        == 0
    )
    config = moorage_config(tmp_path / "data", 0, auth={"htpasswd": {"path": str(users)}})
    with run_moorage(tmp_path / "moorage", config) as server:
        url = f"{server.url}/v2/"
        assert requests.get(url, auth=("alice", "pw-1"), timeout=10).status_code == 200
        assert requests.get(url, auth=("zoe", "pw-z"), timeout=10).status_code == 401
        result = moorage_cli(
            "user", "add", "--users", str(users), "--password-stdin", "zoe", stdin="pw-z\n"
        )
        assert result.returncode == 0, result.stderr
        eventually(lambda: requests.get(url, auth=("zoe", "pw-z"), timeout=10).status_code == 200)
        result = moorage_cli(
            "user", "passwd", "--users", str(users), "--password-stdin", "alice", stdin="pw-2\n"
        )
        assert result.returncode == 0, result.stderr
        eventually(lambda: requests.get(url, auth=("alice", "pw-2"), timeout=10).status_code == 200)
        assert requests.get(url, auth=("alice", "pw-1"), timeout=10).status_code == 401
        assert moorage_cli("user", "remove", "--users", str(users), "zoe").returncode == 0
        eventually(lambda: requests.get(url, auth=("zoe", "pw-z"), timeout=10).status_code == 401)
        assert_log_clean(server)


def test_skopeo_creds_against_htpasswd(htpasswd_server: Server, tmp_path: Path) -> None:
    image = make_image(tmp_path / "layout", "v1", seed="skopeo-htpasswd")
    dest = f"docker://{htpasswd_server.host}/team/skopeo:v1"
    failed = skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", "alice:wrong", image.ref, dest,
        check=False,
    )  # fmt: skip
    assert failed.returncode != 0
    assert "401" in failed.stderr or "unauthorized" in failed.stderr.lower()
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:alice-pw", image.ref, dest)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", "bob:bob-pw", dest).stdout
    assert raw.encode() == image.manifest
    anonymous = skopeo("inspect", "--raw", "--tls-verify=false", dest, check=False)
    assert anonymous.returncode != 0
    out = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", "--src-creds", "bob:bob-pw", dest, f"oci:{out}:v1")
    assert json.loads((out / "index.json").read_text())["manifests"][0]["digest"] == (
        image.manifest_digest
    )


def test_podman_login_against_htpasswd(
    htpasswd_server: Server, tmp_path: Path, short_dirs: Callable[[], Path]
) -> None:
    image = make_image(tmp_path / "layout", "v1", seed="podman-htpasswd")
    podman = make_podman(tmp_path, short_dirs, "podman")
    host = htpasswd_server.host
    failed = podman(
        "login", "--tls-verify=false", "-u", "alice", "--password-stdin", host,
        check=False, stdin="wrong\n",
    )  # fmt: skip
    assert failed.returncode != 0
    podman(
        "login", "--tls-verify=false", "-u", "alice", "--password-stdin", host, stdin="alice-pw\n"
    )
    assert json.loads(podman.authfile.read_text())["auths"][host]["auth"]
    podman("pull", "--tls-verify=false", image.ref)
    pulled = podman("images", "--format", "{{.ID}}").stdout.split()[0]
    podman("tag", pulled, f"{host}/team/podman:v1")
    podman("push", "--tls-verify=false", f"{host}/team/podman:v1")
    other = make_podman(tmp_path, short_dirs, "other")
    assert other("pull", "--tls-verify=false", f"{host}/team/podman:v1", check=False).returncode
    other("login", "--tls-verify=false", "-u", "bob", "--password-stdin", host, stdin="bob-pw\n")
    other("pull", "--tls-verify=false", f"{host}/team/podman:v1")
    other("logout", host)
    assert other("pull", "--tls-verify=false", f"{host}/team/podman:v1", check=False).returncode


def _oras_push_pull(registry: oras.provider.Registry, host: str, repo: str, tmp_path: Path) -> None:
    payload = tmp_path / "payload.txt"
    payload.write_text(f"oras via {repo}\n")
    target = f"{host}/{repo}:v1"
    response = registry.push(target=target, files=[str(payload)], disable_path_validation=True)
    assert response.status_code == 201, response.text
    out = tmp_path / "oras-out"
    pulled = registry.pull(target=target, outdir=str(out))
    assert [Path(f).read_text() for f in pulled] == [payload.read_text()]


def test_oras_login_against_htpasswd(htpasswd_server: Server, tmp_path: Path) -> None:
    host = htpasswd_server.host
    registry = oras.provider.Registry(hostname=host, insecure=True, auth_backend="basic")
    registry.login("alice", "alice-pw", hostname=host, config_path=str(tmp_path / "oras.json"))
    _oras_push_pull(registry, host, "team/oras", tmp_path)
    assert registry.get_tags(f"{host}/team/oras") == ["v1"]


# auth.token, with tokens minted here


@dataclass
class Ca:
    root: Issued
    intermediate: Issued
    leaf: Issued  # signed by the intermediate
    bundle: Path  # the root, PEM

    def token(self, access: list[dict[str, Any]], **changes: Any) -> str:
        """A token the registry must accept (unless `changes` spoil it): signed by the leaf,
        the chain in x5c."""
        return mint({**claims(ISSUER, SERVICE, access), **changes}, self.leaf.key,
                    x5c=[self.leaf, self.intermediate])  # fmt: skip


ISSUER = "test-issuer"


@pytest.fixture
def ca(tmp_path: Path) -> Ca:
    root = certificate("test root")
    intermediate = certificate("test intermediate", issuer=root)
    leaf = certificate("test token signer", issuer=intermediate, ca=False)
    bundle = tmp_path / "root.pem"
    bundle.write_bytes(root.pem())
    return Ca(root, intermediate, leaf, bundle)


def token_section(ca: Ca, **extra: Any) -> dict[str, Any]:
    return {
        "token": {
            "realm": "https://auth.example/token",
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(ca.bundle),
            **extra,
        }
    }


@pytest.fixture
def token_server(tmp_path: Path, ca: Ca) -> Iterator[Server]:
    config = moorage_config(tmp_path / "data", 0, auth=token_section(ca))
    with run_moorage(tmp_path / "moorage", config) as server:
        yield server
        assert_log_clean(server)


def test_token_challenges_carry_realm_service_and_exact_scope(token_server: Server) -> None:
    url = token_server.url
    base = {"realm": "https://auth.example/token", "service": SERVICE}
    cases = [
        ("GET", "/v2/", {}),
        ("GET", "/v2/_catalog", {"scope": "registry:catalog:*"}),
        ("GET", "/v2/team/app/manifests/v1", {"scope": "repository:team/app:pull"}),
        ("HEAD", "/v2/team/app/blobs/sha256:" + "0" * 64, {"scope": "repository:team/app:pull"}),
        ("GET", "/v2/team/app/tags/list", {"scope": "repository:team/app:pull"}),
        ("PUT", "/v2/team/app/manifests/v1", {"scope": "repository:team/app:pull,push"}),
        ("POST", "/v2/team/app/blobs/uploads/", {"scope": "repository:team/app:pull,push"}),
        ("DELETE", "/v2/team/app/manifests/v1", {"scope": "repository:team/app:delete"}),
        ("DELETE", "/v2/a/b/c/blobs/sha256:" + "0" * 64, {"scope": "repository:a/b/c:delete"}),
    ]
    for method, path, expected in cases:
        response = requests.request(method, url + path, timeout=10)
        if method == "HEAD":
            assert response.status_code == 401
            scheme, params = "Bearer", dict(CHALLENGE.findall(response.headers["WWW-Authenticate"]))
        else:
            scheme, params = challenge(response)
        assert (scheme, params) == ("Bearer", {**base, **expected}), (method, path)


def test_token_access_claims_are_honoured_exactly(token_server: Server, ca: Ca) -> None:
    admin = Client(token_server.url)
    admin.http.headers.update(
        bearer(ca.token([repo_access(r, "*") for r in ("team/app", "team/other")]))
    )
    payload, digest = admin.push_image("team/app", "v1")
    admin.push_image("team/other", "v1", seed="other")

    pull = bearer(ca.token([repo_access("team/app", "pull")]))
    url = token_server.url
    response = requests.get(f"{url}/v2/team/app/manifests/v1", headers=pull, timeout=10)
    assert response.status_code == 200 and response.content == payload
    # a pull token cannot push, delete, or open another repository or the catalog
    refused = [
        ("POST", "/v2/team/app/blobs/uploads/", "repository:team/app:pull,push"),
        ("DELETE", f"/v2/team/app/manifests/{digest}", "repository:team/app:delete"),
        ("GET", "/v2/team/other/manifests/v1", "repository:team/other:pull"),
        ("GET", "/v2/team/app/sub/manifests/v1", "repository:team/app/sub:pull"),
        ("GET", "/v2/_catalog", "registry:catalog:*"),
    ]
    for method, path, scope in refused:
        response = requests.request(method, url + path, headers=pull, timeout=10)
        _scheme, params = challenge(response)
        assert params["scope"] == scope and params["error"] == "insufficient_scope", path
    # a push token (pull,push) cannot delete; a delete token can
    push = bearer(ca.token([repo_access("team/app", "pull", "push")]))
    assert (
        requests.post(f"{url}/v2/team/app/blobs/uploads/", headers=push, timeout=10).status_code
        == 202
    )
    response = requests.delete(f"{url}/v2/team/app/manifests/{digest}", headers=push, timeout=10)
    assert response.status_code == 401
    # push alone (without pull) is not enough to push, as in distribution
    push_only = bearer(ca.token([repo_access("team/app", "push")]))
    response = requests.post(f"{url}/v2/team/app/blobs/uploads/", headers=push_only, timeout=10)
    assert response.status_code == 401
    delete = bearer(ca.token([repo_access("team/app", "delete")]))
    response = requests.delete(f"{url}/v2/team/app/manifests/{digest}", headers=delete, timeout=10)
    assert response.status_code == 202
    catalog = bearer(ca.token([{"type": "registry", "name": "catalog", "actions": ["*"]}]))
    response = requests.get(f"{url}/v2/_catalog", headers=catalog, timeout=10)
    assert response.json() == {"repositories": ["team/app", "team/other"]}
    # any valid token opens the version check; none, an empty one, or another scheme does not
    empty = bearer(ca.token([]))
    assert requests.get(f"{url}/v2/", headers=empty, timeout=10).status_code == 200
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic YTpi"}):
        assert requests.get(f"{url}/v2/", headers=headers, timeout=10).status_code == 401


def forged_tokens(ca: Ca) -> dict[str, str]:
    """Tokens for pull on team/app that a registry trusting `ca` must refuse, by what is wrong."""
    access = [repo_access("team/app", "pull")]
    now = int(time.time())
    foreign_root = certificate("foreign root")
    foreign_leaf = certificate("foreign signer", issuer=foreign_root, ca=False)
    root_kid = libtrust_key_id(ca.root.key.public_key())
    no_ca = certificate("a leaf of the root", issuer=ca.root, ca=False)
    impostor = certificate("signed by a leaf", issuer=no_ca, ca=False)
    return {
        "chain through a certificate that is no CA": mint(
            claims(ISSUER, SERVICE, access), impostor.key, x5c=[impostor, no_ca]
        ),
        "expired": ca.token(access, exp=now - 600, iat=now - 900, nbf=now - 900),
        "not yet valid": ca.token(access, nbf=now + 600),
        "wrong issuer": ca.token(access, iss="someone-else"),
        "wrong audience": ca.token(access, aud="another-service"),
        "tampered": tampered(ca.token(access), access=[repo_access("team/app", "pull", "push"),
                                                       repo_access("team/other", "pull")]),
        "foreign chain": mint(claims(ISSUER, SERVICE, access), foreign_leaf.key,
                              x5c=[foreign_leaf, foreign_root]),
        "foreign key, trusted chain": mint(claims(ISSUER, SERVICE, access), foreign_leaf.key,
                                           x5c=[ca.leaf, ca.intermediate]),
        "foreign key, trusted kid": mint(claims(ISSUER, SERVICE, access), foreign_root.key,
                                         kid=root_kid),
        "chain without its intermediate": mint(claims(ISSUER, SERVICE, access), ca.leaf.key,
                                               x5c=[ca.leaf]),
        "alg none": unsigned(claims(ISSUER, SERVICE, access), x5c=[ca.leaf.der_b64(),
                                                                   ca.intermediate.der_b64()]),
        "HS256 keyed with the root's public key": hmac_signed(
            claims(ISSUER, SERVICE, access),
            ca.root.key.public_key().public_bytes(  # the classic key confusion
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            kid=root_kid,
        ),
    }  # fmt: skip


def valid_tokens(ca: Ca) -> dict[str, str]:
    access = [repo_access("team/app", "pull")]
    return {
        "x5c through an intermediate": ca.token(access),
        "x5c leaf and intermediate and root": mint(
            claims(ISSUER, SERVICE, access), ca.leaf.key, x5c=[ca.leaf, ca.intermediate, ca.root]
        ),
        "kid of the root (libtrust)": mint(
            claims(ISSUER, SERVICE, access),
            ca.root.key,
            kid=libtrust_key_id(ca.root.key.public_key()),
        ),
        "expired within the leeway": ca.token(access, exp=int(time.time()) - 10),
    }


def _pull_status(server: Server, token: str) -> int:
    return requests.get(
        f"{server.url}/v2/team/app/tags/list", headers=bearer(token), timeout=10
    ).status_code


def test_token_expired_tampered_and_foreign_tokens_are_refused(
    token_server: Server, ca: Ca
) -> None:
    for kind, token in forged_tokens(ca).items():
        response = requests.get(
            f"{token_server.url}/v2/team/app/tags/list", headers=bearer(token), timeout=10
        )
        _scheme, params = challenge(response)
        assert params.get("error") == "invalid_token", kind
    for kind, token in valid_tokens(ca).items():
        assert _pull_status(token_server, token) == 404, kind  # NAME_UNKNOWN: past auth


def test_token_signing_algorithms_restrict_what_is_accepted(tmp_path: Path, ca: Ca) -> None:
    config = moorage_config(
        tmp_path / "data", 0, auth=token_section(ca, signingalgorithms=["RS256"])
    )
    with run_moorage(tmp_path / "moorage", config) as server:
        es256 = ca.token([repo_access("team/app", "pull")])
        assert _pull_status(server, es256) == 401
        assert_log_clean(server)


def test_token_kid_via_jwks(tmp_path: Path, ca: Ca) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "signing-key-1", "use": "sig"}]}))
    section = token_section(ca, jwks=str(jwks))
    config = moorage_config(tmp_path / "data", 0, auth=section)
    with run_moorage(tmp_path / "moorage", config) as server:
        access = [repo_access("team/app", "pull")]
        good = mint(claims(ISSUER, SERVICE, access), key, kid="signing-key-1", algorithm="RS256")
        assert _pull_status(server, good) == 404
        unknown = mint(claims(ISSUER, SERVICE, access), key, kid="signing-key-2", algorithm="RS256")
        assert _pull_status(server, unknown) == 401
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = mint(
            claims(ISSUER, SERVICE, access), other, kid="signing-key-1", algorithm="RS256"
        )
        assert _pull_status(server, forged) == 401
        assert _pull_status(server, ca.token(access)) == 404  # the root bundle still counts
        assert_log_clean(server)


def test_token_autoredirect_points_the_realm_at_this_server(tmp_path: Path, ca: Ca) -> None:
    section = token_section(ca, autoredirect=True)
    del section["token"]["realm"]
    config = moorage_config(tmp_path / "data", 0, auth=section)
    with run_moorage(tmp_path / "moorage", config) as server:
        _scheme, params = challenge(requests.get(f"{server.url}/v2/", timeout=10))
        assert params["realm"] == f"{server.url}/auth/token"


# the built-in token server


@dataclass
class Builtin:
    server: Server
    users: Path
    acl: Path
    key: Path

    @property
    def realm(self) -> str:
        return f"{self.server.url}/auth/token"

    def token_response(
        self, user: str | None, *scopes: str, password: str | None = None
    ) -> requests.Response:
        auth = None if user is None else (user, password or PASSWORDS[user])
        return requests.get(
            self.realm,
            params={"service": SERVICE, "scope": list(scopes)},
            auth=auth,
            timeout=30,
        )

    def token(self, user: str | None, *scopes: str) -> str:
        response = self.token_response(user, *scopes)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token"] == body["access_token"]
        return str(body["token"])

    def granted(self, user: str | None, *scopes: str) -> dict[str, list[str]]:
        """What a token for `scopes` grants: repository name -> actions, verified with the
        server's own certificate."""
        certificate = self.key.with_suffix(".crt").read_bytes()
        public = x509.load_pem_x509_certificate(certificate).public_key()
        document = jwt.decode(
            self.token(user, *scopes), public, algorithms=["ES256"], audience=SERVICE,
            issuer="moorage",
        )  # fmt: skip
        return {f"{a['type']}:{a['name']}": sorted(a["actions"]) for a in document["access"]}


def write_builtin_files(directory: Path) -> tuple[Path, Path, Path]:
    users = htpasswd_file(directory / "users", PASSWORDS)
    acl = directory / "acl.yml"
    acl.write_text(yaml.safe_dump(ACL))
    return users, acl, directory / "keys" / "token.key"


@pytest.fixture
def builtin(tmp_path: Path) -> Iterator[Builtin]:
    users, acl, key = write_builtin_files(tmp_path)
    config = moorage_config(tmp_path / "data", 0, auth=builtin_section(users, acl, key))
    with run_moorage(tmp_path / "moorage", config) as server:
        yield Builtin(server, users, acl, key)
        assert_log_clean(server)


class DockerLike:
    """The protocol's client side by hand: a request, and on a Bearer challenge a token from
    the realm for exactly the scope asked (with Basic credentials when signed in), then again."""

    def __init__(self, base: str, credentials: tuple[str, str] | None) -> None:
        self.base = base
        self.credentials = credentials
        self.client = Client(base)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self.client.request(method, path, **kwargs)
        if response.status_code != 401:
            return response
        scheme, params = challenge(response)
        assert scheme == "Bearer"
        answer = requests.get(
            params["realm"],
            params={"service": params["service"], "scope": params.get("scope", "")},
            auth=self.credentials,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        headers = {**kwargs.pop("headers", {}), **bearer(answer.json()["token"])}
        return self.client.request(method, path, headers=headers, **kwargs)


def test_builtin_creates_its_signing_key_and_challenges_with_its_realm(builtin: Builtin) -> None:
    assert builtin.key.stat().st_mode & 0o777 == 0o600
    assert builtin.key.with_suffix(".crt").read_bytes().startswith(b"-----BEGIN CERTIFICATE")
    response = requests.get(f"{builtin.server.url}/v2/team/app/tags/list", timeout=10)
    assert challenge(response) == (
        "Bearer",
        {"realm": builtin.realm, "service": SERVICE, "scope": "repository:team/app:pull"},
    )


@pytest.mark.parametrize(
    ("user", "scope", "granted"),
    [
        # anonymous: only the anonymous rule
        (None, "repository:public/app:pull,push", {"repository:public/app": ["pull"]}),
        (None, "repository:shared/app:pull", {}),
        (None, "repository:team/app:pull", {}),
        # "*": any signed-in user, not anonymous
        ("dave", "repository:shared/app:pull,push", {"repository:shared/app": ["pull"]}),
        # a signed-in user gets at least what anonymous gets
        ("dave", "repository:public/app:pull,push", {"repository:public/app": ["pull"]}),
        # group:NAME
        ("alice", "repository:team/app:*", {"repository:team/app": ["pull", "push"]}),
        ("bob", "repository:team/deep/app:push", {"repository:team/deep/app": ["push"]}),
        ("dave", "repository:team/app:pull", {}),
        # a user name; delete
        ("carol", "repository:team/app:push,delete", {"repository:team/app": ["delete"]}),
        # ${user}, and "*" asked: expanded to what the rule grants
        ("dave", "repository:home/dave/x:*", {"repository:home/dave/x": sorted(ALL_ACTIONS)}),
        ("dave", "repository:home/alice/tool:pull", {}),
        ("admin", "repository:any/thing:*", {"repository:any/thing": sorted(ALL_ACTIONS)}),
        # narrowed to what was asked
        ("admin", "repository:any/thing:pull", {"repository:any/thing": ["pull"]}),
        # nothing matched, nothing granted
        ("alice", "repository:elsewhere:pull", {}),
        # the catalog is granted; its listing is filtered
        ("alice", "registry:catalog:*", {"registry:catalog": ["*"]}),
        # only names the registry accepts are ever granted, whatever the globs would match
        ("admin", "repository:any/../thing:*", {}),
        ("admin", "repository:any/*:pull", {}),
        ("admin", "repository:Any/Thing:pull", {}),
        ("admin", "repository:127.0.0.1:5000/any:pull", {}),
        ("admin", "registry:other:*", {}),
        ("admin", "other:any/thing:pull", {}),
    ],
)  # fmt: skip
def test_builtin_grants_follow_the_acl(
    builtin: Builtin, user: str | None, scope: str, granted: dict[str, list[str]]
) -> None:
    assert builtin.granted(user, scope) == granted


def test_builtin_grants_several_scopes_at_once(builtin: Builtin) -> None:
    granted = builtin.granted(
        "alice", "repository:team/app:pull,push", "repository:shared/x:pull repository:nope:pull"
    )
    assert granted == {"repository:team/app": ["pull", "push"], "repository:shared/x": ["pull"]}


def test_builtin_actions_end_to_end(builtin: Builtin) -> None:
    url = builtin.server.url
    admin = DockerLike(url, ("admin", PASSWORDS["admin"]))
    seeded = {}
    for repo in ("public/app", "shared/app", "team/app", "home/dave/tool"):
        response = admin.request("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": ""})
        assert response.status_code in (202, 400), response.text
        client = Client(url)
        client.http.headers.update(bearer(builtin.token("admin", f"repository:{repo}:*")))
        seeded[repo] = client.push_image(repo, "v1", seed=repo)

    def status(user: str | None, method: str, path: str) -> int:
        credentials = None if user is None else (user, PASSWORDS[user])
        return DockerLike(url, credentials).request(method, path).status_code

    team_digest = seeded["team/app"][1]
    # pull
    assert status(None, "GET", "/v2/public/app/manifests/v1") == 200
    assert status(None, "GET", "/v2/team/app/manifests/v1") == 401
    assert status("dave", "GET", "/v2/shared/app/manifests/v1") == 200
    assert status("alice", "GET", "/v2/team/app/manifests/v1") == 200
    assert status("dave", "GET", "/v2/team/app/manifests/v1") == 401
    # push
    assert status(None, "POST", "/v2/public/app/blobs/uploads/") == 401
    assert status("alice", "POST", "/v2/team/app/blobs/uploads/") == 202
    assert status("carol", "POST", "/v2/team/app/blobs/uploads/") == 401
    assert status("dave", "POST", "/v2/home/dave/new/blobs/uploads/") == 202
    assert status("dave", "POST", "/v2/home/alice/new/blobs/uploads/") == 401
    # delete
    assert status("alice", "DELETE", f"/v2/team/app/manifests/{team_digest}") == 401
    assert status("carol", "DELETE", f"/v2/team/app/manifests/{team_digest}") == 202
    assert (
        status("dave", "DELETE", f"/v2/home/dave/tool/manifests/{seeded['home/dave/tool'][1]}")
        == 202
    )


def test_builtin_catalog_lists_only_what_the_caller_may_pull(builtin: Builtin) -> None:
    url = builtin.server.url
    for repo in ("public/app", "shared/app", "team/app", "home/dave/tool", "home/alice/tool"):
        client = Client(url)
        client.http.headers.update(bearer(builtin.token("admin", f"repository:{repo}:*")))
        client.push_image(repo, "v1", seed=repo)

    def catalog(user: str | None) -> list[str]:
        credentials = None if user is None else (user, PASSWORDS[user])
        response = DockerLike(url, credentials).request("GET", "/v2/_catalog")
        assert response.status_code == 200, response.text
        return list(response.json()["repositories"])

    assert catalog(None) == ["public/app"]
    # signed in, each sees what anonymous sees too
    assert catalog("alice") == ["home/alice/tool", "public/app", "shared/app", "team/app"]
    assert catalog("carol") == ["public/app", "shared/app", "team/app"]
    assert catalog("dave") == ["home/dave/tool", "public/app", "shared/app"]
    assert len(catalog("admin")) == 5


def test_builtin_token_endpoint_refuses_wrong_passwords_and_rate_limits(builtin: Builtin) -> None:
    for password in ("nope-0", "nope-1", "nope-2", "nope-3", "nope-4"):
        response = builtin.token_response("alice", "repository:team/app:pull", password=password)
        assert response.status_code == 401
        assert error_codes(response) == ["UNAUTHORIZED"]
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
    response = builtin.token_response("alice", "repository:team/app:pull")
    assert response.status_code == 429
    assert error_codes(response) == ["TOOMANYREQUESTS"]
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert builtin.token_response("bob", "repository:team/app:pull").status_code == 200
    response = requests.get(
        builtin.realm, params={"service": "other-service"}, auth=("bob", "bob-pw"), timeout=10
    )
    assert response.status_code == 403
    logs = builtin.server.logs()
    assert "failed login for user 'alice'" in logs and "nope-" not in logs


def test_builtin_oauth2_password_and_refresh_token_grants(builtin: Builtin) -> None:
    form = {
        "grant_type": "password",
        "service": SERVICE,
        "client_id": "docker",
        "access_type": "offline",
        "username": "alice",
        "password": PASSWORDS["alice"],
        "scope": "repository:team/app:pull,push",
    }
    response = requests.post(builtin.realm, data=form, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    refresh = body["refresh_token"]
    url = builtin.server.url
    ok = requests.post(
        f"{url}/v2/team/app/blobs/uploads/", headers=bearer(body["access_token"]), timeout=10
    )
    assert ok.status_code == 202
    # the refresh token is no access token
    response = requests.get(f"{url}/v2/team/app/tags/list", headers=bearer(refresh), timeout=10)
    assert response.status_code == 401
    # refresh_token grant
    refreshed = requests.post(
        builtin.realm,
        data={"grant_type": "refresh_token", "service": SERVICE, "client_id": "docker",
              "refresh_token": refresh, "scope": "repository:team/app:pull"},
        timeout=30,
    )  # fmt: skip
    assert refreshed.status_code == 200, refreshed.text
    token = refreshed.json()["access_token"]
    assert (
        requests.get(f"{url}/v2/team/app/tags/list", headers=bearer(token), timeout=10).status_code
        == 404
    )
    # wrong password, a tampered refresh token, an access token as refresh token, no grant
    bad_forms = [
        {**form, "password": "wrong"},
        {"grant_type": "refresh_token", "service": SERVICE, "client_id": "docker",
         "refresh_token": tampered(refresh, sub="admin")},
        {"grant_type": "refresh_token", "service": SERVICE, "client_id": "docker",
         "refresh_token": body["access_token"]},
    ]  # fmt: skip
    for data in bad_forms:
        assert requests.post(builtin.realm, data=data, timeout=30).status_code == 401, data
    response = requests.post(builtin.realm, data={"grant_type": "magic"}, timeout=30)
    assert response.status_code == 400  # OAuth2's unsupported_grant_type
    # The answer's scope is what was granted: alice may not delete in team/.
    asked = {**form, "scope": "repository:team/app:pull,push,delete"}
    assert requests.post(builtin.realm, data=asked, timeout=30).json()["scope"] == (
        "repository:team/app:pull,push"
    )
    without_offline = {k: v for k, v in form.items() if k != "access_type"}
    assert (
        "refresh_token" not in requests.post(builtin.realm, data=without_offline, timeout=30).json()
    )


def test_builtin_token_expiry_and_lifetime(tmp_path: Path) -> None:
    users, acl, key = write_builtin_files(tmp_path)
    auth = builtin_section(users, acl, key, expiration=2)
    config = moorage_config(tmp_path / "data", 0, auth=auth)
    with run_moorage(tmp_path / "moorage", config) as server:
        builtin = Builtin(server, users, acl, key)
        response = builtin.token_response("alice", "repository:team/app:pull")
        assert response.json()["expires_in"] == 2
        document = jwt.decode(response.json()["token"], options={"verify_signature": False})
        assert document["exp"] - document["iat"] == 2
        assert document["iss"] == "moorage" and document["aud"] == SERVICE
        assert document["sub"] == "alice"
        # a token of this server that expired (past the leeway) is refused
        signing = serialization.load_pem_private_key(key.read_bytes(), password=None)
        header = jwt.get_unverified_header(response.json()["token"])
        now = int(time.time())
        expired = jwt.encode(
            {**document, "exp": now - 120, "iat": now - 300, "nbf": now - 300},
            signing,  # type: ignore[arg-type]
            algorithm="ES256",
            headers={"kid": header["kid"], "x5c": header["x5c"]},
        )
        assert _pull_status(server, expired) == 401
        still = jwt.encode(document, signing, algorithm="ES256",  # type: ignore[arg-type]
                           headers={"kid": header["kid"], "x5c": header["x5c"]})  # fmt: skip
        assert _pull_status(server, still) == 404
        assert_log_clean(server)


def test_builtin_key_survives_restart(tmp_path: Path) -> None:
    users, acl, key = write_builtin_files(tmp_path)
    config = moorage_config(tmp_path / "data", 0, auth=builtin_section(users, acl, key))
    with run_moorage(tmp_path / "moorage", config) as server:
        token = Builtin(server, users, acl, key).token("alice", "repository:team/app:pull")
    certificate = key.with_suffix(".crt").read_bytes()
    with run_moorage(tmp_path / "moorage", config) as server:
        assert key.with_suffix(".crt").read_bytes() == certificate
        assert _pull_status(server, token) == 404


def test_builtin_acl_and_users_are_reloaded_without_restart(builtin: Builtin) -> None:
    assert builtin.granted("dave", "repository:team/app:pull") == {}
    changed = json.loads(json.dumps(ACL))
    changed["groups"]["devs"].append("dave")
    builtin.acl.write_text(yaml.safe_dump(changed))
    eventually(
        lambda: (
            builtin.granted("dave", "repository:team/app:pull,push")
            == {"repository:team/app": ["pull", "push"]}
        )
    )
    # a broken edit keeps the previous rules
    builtin.acl.write_text("rules: [\n")
    time.sleep(1.5)
    assert builtin.granted("dave", "repository:team/app:pull") == {"repository:team/app": ["pull"]}
    builtin.acl.write_text(yaml.safe_dump(ACL))
    eventually(lambda: builtin.granted("dave", "repository:team/app:pull") == {})
    # users
    result = moorage_cli(
        "user", "add", "--users", str(builtin.users), "--password-stdin", "erin", stdin="erin-pw\n"
    )
    assert result.returncode == 0, result.stderr
    eventually(
        lambda: (
            builtin.token_response("dave", password="x").status_code == 401
            and requests.get(builtin.realm, auth=("erin", "erin-pw"), timeout=10).status_code == 200
        )
    )
    assert moorage_cli("user", "remove", "--users", str(builtin.users), "erin").returncode == 0
    eventually(
        lambda: requests.get(builtin.realm, auth=("erin", "erin-pw"), timeout=10).status_code == 401
    )
    logs = builtin.server.logs()
    assert "keeping the previous" in logs
    builtin.server.log.write_text("")  # the deliberate broken edit is logged as an error


def test_skopeo_creds_against_builtin(builtin: Builtin, tmp_path: Path) -> None:
    host = builtin.server.host
    image = make_image(tmp_path / "layout", "v1", seed="skopeo-builtin")
    dest = f"docker://{host}/team/skopeo:v1"
    denied = skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", "carol:carol-pw", image.ref, dest,
        check=False,
    )  # fmt: skip
    assert denied.returncode != 0
    wrong = skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", "alice:wrong", image.ref, dest,
        check=False,
    )  # fmt: skip
    assert wrong.returncode != 0
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:alice-pw", image.ref, dest)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", "carol:carol-pw", dest).stdout
    assert raw.encode() == image.manifest
    assert skopeo("inspect", "--raw", "--tls-verify=false", "--creds", "dave:dave-pw", dest,
                  check=False).returncode != 0  # fmt: skip
    tags = skopeo("list-tags", "--tls-verify=false", "--creds", "bob:bob-pw", dest[: -len(":v1")])
    assert json.loads(tags.stdout)["Tags"] == ["v1"]
    skopeo("delete", "--tls-verify=false", "--creds", "carol:carol-pw", dest)
    # anonymous: the public repository only
    public = f"docker://{host}/public/skopeo:v1"
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "admin:admin-pw", image.ref, public)
    assert (
        skopeo("inspect", "--raw", "--tls-verify=false", public).stdout.encode() == image.manifest
    )
    # signing in keeps what anonymous may do: dave has no rule of his own for public/*
    signed_in = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", "dave:dave-pw", public)
    assert signed_in.stdout.encode() == image.manifest


def test_podman_login_against_builtin(
    builtin: Builtin, tmp_path: Path, short_dirs: Callable[[], Path]
) -> None:
    host = builtin.server.host
    image = make_image(tmp_path / "layout", "v1", seed="podman-builtin")
    podman = make_podman(tmp_path, short_dirs, "podman")
    failed = podman(
        "login", "--tls-verify=false", "-u", "bob", "--password-stdin", host,
        check=False, stdin="wrong\n",
    )  # fmt: skip
    assert failed.returncode != 0
    podman("login", "--tls-verify=false", "-u", "bob", "--password-stdin", host, stdin="bob-pw\n")
    podman("pull", "--tls-verify=false", image.ref)
    pulled = podman("images", "--format", "{{.ID}}").stdout.split()[0]
    podman("tag", pulled, f"{host}/team/podman:v1", f"{host}/shared/podman:v1")
    podman("push", "--tls-verify=false", f"{host}/team/podman:v1")
    assert podman("push", "--tls-verify=false", f"{host}/shared/podman:v1", check=False).returncode
    other = make_podman(tmp_path, short_dirs, "other")
    other(
        "login", "--tls-verify=false", "-u", "alice", "--password-stdin", host, stdin="alice-pw\n"
    )
    other("pull", "--tls-verify=false", f"{host}/team/podman:v1")
    third = make_podman(tmp_path, short_dirs, "third")
    third("login", "--tls-verify=false", "-u", "dave", "--password-stdin", host, stdin="dave-pw\n")
    assert third("pull", "--tls-verify=false", f"{host}/team/podman:v1", check=False).returncode


def test_oras_login_against_builtin(builtin: Builtin, tmp_path: Path) -> None:
    host = builtin.server.host
    registry = oras.provider.Registry(hostname=host, insecure=True)
    registry.login("bob", "bob-pw", hostname=host, config_path=str(tmp_path / "oras.json"))
    # oras-py 0.2 keeps the first token it gets and never asks for a wider one: its first
    # request must be one that needs pull and push, or its blob check's pull token sticks.
    upload = f"http://{host}/v2/team/oras/blobs/uploads/"
    assert registry.do_request(upload, "POST").status_code == 202
    _oras_push_pull(registry, host, "team/oras", tmp_path)
    assert registry.get_tags(f"{host}/team/oras") == ["v1"]
    outsider = oras.provider.Registry(hostname=host, insecure=True)
    outsider.login("dave", "dave-pw", hostname=host, config_path=str(tmp_path / "oras2.json"))
    payload = tmp_path / "denied.txt"
    payload.write_text("denied\n")
    assert outsider.do_request(upload, "POST").status_code == 401
    with pytest.raises(ValueError, match="UNAUTHORIZED"):
        outsider.push(target=f"{host}/team/oras:v2", files=[str(payload)],
                      disable_path_validation=True)  # fmt: skip


# the CLI


def test_user_cli_reads_passwords_from_stdin_never_argv(tmp_path: Path) -> None:
    users = tmp_path / "users"
    added = moorage_cli("user", "add", "--users", str(users), "--password-stdin", "alice",
                        stdin="s3cret\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    entry = users.read_text()
    assert entry.startswith("alice:$2") and "s3cret" not in entry
    assert users.stat().st_mode & 0o777 == 0o600
    assert bcrypt.checkpw(b"s3cret", entry.split(":", 1)[1].strip().encode())
    # no option takes a password on the command line
    for command in ("add", "passwd"):
        helptext = moorage_cli("user", command, "--help").stdout
        assert "--password-stdin" in helptext
        assert not re.search(r"--password(?!-stdin)|-p\b", helptext), helptext
    argv = moorage_cli("user", "add", "--users", str(users), "bob", "--password", "x")
    assert argv.returncode != 0 and not users.read_text().count("bob:")
    # errors, each one line and a non-zero exit: an existing user, an empty password, a missing
    # user, no terminal to prompt on, a users file that is a directory
    for failed, says in (
        (moorage_cli("user", "add", "--users", str(users), "--password-stdin", "alice",
                     stdin="x\n"), "exists"),
        (moorage_cli("user", "add", "--users", str(users), "--password-stdin", "bob",
                     stdin="\n"), "empty"),
        (moorage_cli("user", "remove", "--users", str(users), "nobody"), "no user"),
        (moorage_cli("user", "add", "--users", str(users), "bob", stdin=""), "no terminal"),
        (moorage_cli("user", "list", "--users", str(tmp_path)), "Is a directory"),
    ):  # fmt: skip
        assert failed.returncode == 1, failed
        assert len(failed.stderr.splitlines()) == 1 and failed.stderr.startswith("moorage: ")
        assert says in failed.stderr, failed.stderr
    changed = moorage_cli("user", "passwd", "--users", str(users), "--password-stdin", "alice",
                          stdin="n3w\n")  # fmt: skip
    assert changed.returncode == 0
    assert bcrypt.checkpw(b"n3w", users.read_text().split(":", 1)[1].strip().encode())
    listed = moorage_cli("user", "list", "--users", str(users))
    assert listed.stdout.split() == ["alice"]


def test_acl_check_explains_which_rule_decides(tmp_path: Path) -> None:
    acl = tmp_path / "acl.yml"
    acl.write_text(yaml.safe_dump(ACL))

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return moorage_cli("acl", "check", "--acl", str(acl), *args)

    allowed = check("alice", "team/app", "push")
    assert allowed.returncode == 0
    assert "allowed" in allowed.stdout and "rule 2" in allowed.stdout
    assert "group:devs" in allowed.stdout
    denied = check("dave", "team/app", "pull")
    assert denied.returncode == 1 and "denied" in denied.stdout
    anonymous = check("anonymous", "public/x", "pull")
    assert anonymous.returncode == 0 and "rule 0" in anonymous.stdout
    both = check("admin", "home/admin/x", "delete")
    assert "rule 4" in both.stdout and "rule 5" in both.stdout
    assert check("alice", "team/app", "fly").returncode != 0


def test_config_with_builtin_auth_is_checked(tmp_path: Path) -> None:
    users, acl, key = write_builtin_files(tmp_path)
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(moorage_config(
        tmp_path / "data", 5000, auth=builtin_section(users, acl, key)
    )))  # fmt: skip
    listed = moorage_cli("user", "list", "-c", str(config))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == sorted(PASSWORDS)
    assert moorage_cli("acl", "check", "-c", str(config), "alice", "team/a", "pull").returncode == 0
    # a bad ACL fails the start with the file and the problem
    acl.write_text("rules:\n  - who: [x]\n    repos: [y]\n    actions: [write]\n")
    bad = moorage_config(tmp_path / "data", 0, auth=builtin_section(users, acl, key))
    with pytest.raises(RuntimeError, match="unknown") as raised, run_moorage(tmp_path / "m", bad):
        pass
    assert "acl.yml" in str(raised.value)


# the reference registry


def run_distribution_with_token_auth(
    workdir: Path, root: Path, realm: str, issuer: str, bundle: Path
) -> contextlib.AbstractContextManager[Server]:
    """CNCF distribution with `auth.token` (realm, service, issuer, root bundle)."""
    token = {"realm": realm, "service": SERVICE, "issuer": issuer, "rootcertbundle": str(bundle)}
    return run_reference_registry(workdir, root, auth={"token": token})


def test_distribution_accepts_tokens_from_the_builtin_server(
    builtin: Builtin, tmp_path: Path
) -> None:
    bundle = builtin.key.with_suffix(".crt")
    with run_distribution_with_token_auth(
        tmp_path / "distribution", tmp_path / "distribution-data", builtin.realm, "moorage", bundle
    ) as reference:
        host = reference.host
        response = requests.get(f"{reference.url}/v2/team/app/tags/list", timeout=10)
        assert challenge(response)[1] == {
            "realm": builtin.realm, "service": SERVICE, "scope": "repository:team/app:pull",
        }  # fmt: skip
        image = make_image(tmp_path / "layout", "v1", seed="distribution")
        dest = f"docker://{host}/team/app:v1"
        denied = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "dave:dave-pw",
                        image.ref, dest, check=False)  # fmt: skip
        assert denied.returncode != 0
        skopeo("copy", "--dest-tls-verify=false", "--dest-creds", "alice:alice-pw", image.ref, dest)
        raw = skopeo("inspect", "--raw", "--tls-verify=false", "--creds", "bob:bob-pw", dest)
        assert raw.stdout.encode() == image.manifest
        out = tmp_path / "pulled"
        skopeo("copy", "--src-tls-verify=false", "--src-creds", "carol:carol-pw", dest,
               f"oci:{out}:v1")  # fmt: skip
        assert (out / "blobs" / "sha256" / image.manifest_digest.split(":")[1]).exists()
        assert skopeo("inspect", "--raw", "--tls-verify=false", dest, check=False).returncode
        # a pull token cannot push there either, and opens the manifest
        pull = builtin.token("alice", "repository:team/app:pull")
        response = requests.post(
            f"{reference.url}/v2/team/app/blobs/uploads/", headers=bearer(pull), timeout=10
        )
        assert response.status_code == 401
        assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"
        oci = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
        response = requests.get(
            f"{reference.url}/v2/team/app/manifests/v1", headers={**oci, **bearer(pull)}, timeout=10
        )
        assert response.status_code == 200 and response.content == image.manifest
        # the refresh token of a docker-style login is no access token there either
        refresh = requests.post(builtin.realm, data={
            "grant_type": "password", "service": SERVICE, "client_id": "t",
            "access_type": "offline", "username": "alice", "password": "alice-pw",
        }, timeout=30).json()["refresh_token"]  # fmt: skip
        response = requests.get(
            f"{reference.url}/v2/team/app/manifests/v1",
            headers={**oci, **bearer(refresh)},
            timeout=10,
        )
        assert response.status_code == 401


def test_distribution_and_moorage_judge_hand_made_tokens_alike(tmp_path: Path, ca: Ca) -> None:
    """The same tokens, valid and forged, against distribution and moorage trusting the same
    root: both must accept and refuse the same ones (this also cross-checks the libtrust kid)."""
    config = moorage_config(tmp_path / "data", 0, auth=token_section(ca))
    with (
        run_moorage(tmp_path / "moorage", config) as moorage,
        run_distribution_with_token_auth(
            tmp_path / "distribution", tmp_path / "d-data", "https://auth.example/token",
            ISSUER, ca.bundle,
        ) as reference,
    ):  # fmt: skip
        verdicts = {}
        for kind, token in {**valid_tokens(ca), **forged_tokens(ca)}.items():
            verdicts[kind] = (_pull_status(reference, token), _pull_status(moorage, token))
        expected = {kind: (404, 404) for kind in valid_tokens(ca)}
        expected.update({kind: (401, 401) for kind in forged_tokens(ca)})
        assert verdicts == expected
        assert_log_clean(moorage)


# auth.silly, and the auth section's validation


def test_silly_accepts_any_authorization_and_challenges_without(tmp_path: Path) -> None:
    auth = {"silly": {"realm": "https://silly.example/token", "service": "silly"}}
    config = moorage_config(tmp_path / "data", 0, auth=auth)
    with run_moorage(tmp_path / "moorage", config) as server:
        response = requests.post(f"{server.url}/v2/a/b/blobs/uploads/", timeout=10)
        assert challenge(response) == (
            "Bearer",
            {
                "realm": "https://silly.example/token",
                "service": "silly",
                "scope": "repository:a/b:pull,push",
            },
        )
        client = Client(server.url)
        client.http.headers["Authorization"] = "Bearer anything"
        client.push_image("a/b", "v1")
        assert client.request("GET", "/v2/_catalog").json() == {"repositories": ["a/b"]}
        assert_log_clean(server)


# Names a client may put in a path, percent-encoded, that the registry must refuse before
# authorization sees them (and so before any challenge could carry them).
HOSTILE_NAMES = [
    '%22,realm=%22https://evil.example/token%22,x=%22',  # "...: a second realm
    "team/app%00",
    "team/app%0D%0AX-Injected:%201",
    "team/%2E%2E/admin",
    "Team/App",
    "team//app",
    "a" * 300,
]
QUOTED = r'"(?:[^"\\]|\\.)*"'
ONE_CHALLENGE = re.compile(rf"(Basic|Bearer) \w+={QUOTED}(?:,\w+={QUOTED})*")


def parse_challenge(value: str) -> tuple[str, dict[str, str]]:
    """An RFC 7235 challenge: exactly one scheme, each parameter once, quoted pairs undone."""
    assert ONE_CHALLENGE.fullmatch(value), value
    scheme, _, params = value.partition(" ")
    pairs = re.findall(rf"(\w+)=({QUOTED})", params)
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names)), value
    return scheme, {name: re.sub(r"\\(.)", r"\1", quoted[1:-1]) for name, quoted in pairs}


@pytest.mark.parametrize("controller", ["token_server", "builtin", "htpasswd_server"])
def test_names_are_refused_before_authorization(
    controller: str, request: pytest.FixtureRequest
) -> None:
    """A name outside the grammar is NAME_INVALID, whoever asks and however it is encoded:
    it never reaches authorization, so no challenge can carry it (a quote in a name made a
    second realm; a NUL made the answer unwritable, and the connection dropped)."""
    fixture = request.getfixturevalue(controller)
    server: Server = fixture.server if isinstance(fixture, Builtin) else fixture
    for name in HOSTILE_NAMES:
        for method, path in (
            ("GET", f"/v2/{name}/tags/list"),
            ("GET", f"/v2/{name}/manifests/latest"),
            ("HEAD", f"/v2/{name}/manifests/latest"),
            ("POST", f"/v2/{name}/blobs/uploads/"),
            ("DELETE", f"/v2/{name}/blobs/sha256:{'0' * 64}"),
        ):
            response = requests.request(method, f"{server.url}{path}", timeout=10)
            assert response.status_code == 400, (name, method, path, response.headers)
            assert "WWW-Authenticate" not in response.headers
            if method != "HEAD":
                assert error_codes(response) == ["NAME_INVALID"]
                assert "invalid repository name: " in response.json()["errors"][0]["message"]


def test_token_requests_the_http_layer_refuses_get_the_envelope(builtin: Builtin) -> None:
    url = f"{builtin.server.url}/auth/token"
    form = {"grant_type": "password", "username": "alice", "password": "x" * (2 << 20)}
    too_large = requests.post(url, data=form, timeout=30)
    assert too_large.status_code == 413
    assert error_codes(too_large) == ["SIZE_INVALID"]
    malformed = requests.post(
        url,
        data=b"--b\r\nContent-Disposition: form-data\r\n\r\nx",
        headers={"Content-Type": "multipart/form-data; boundary=b"},
        timeout=30,
    )
    assert malformed.status_code == 400
    assert error_codes(malformed) == ["UNSUPPORTED"]
    not_utf8 = requests.post(
        url, data=b"grant_type=password&username=%FF%FE\xff", headers={"Content-Type": FORM},
        timeout=30,
    )  # fmt: skip
    assert not_utf8.status_code in (400, 401)
    assert error_codes(not_utf8)


def test_every_challenge_parameter_is_quoted(tmp_path: Path) -> None:
    """What the config puts in a challenge (realm, service) is a quoted string whatever it
    holds: quotes and backslashes escaped, control characters replaced."""
    realm = 'https://auth.example/token",realm="https://evil.example'
    service = 'svc\\"x\x01'
    for auth in (
        {"silly": {"realm": realm, "service": service}},
        {"htpasswd": {"realm": realm, "path": str(htpasswd_file(tmp_path / "users", {}))}},
    ):
        config = moorage_config(tmp_path / "data", 0, auth=auth)
        with run_moorage(tmp_path / "moorage", config) as server:
            response = requests.get(f"{server.url}/v2/team/app/tags/list", timeout=10)
            assert response.status_code == 401
            scheme, params = parse_challenge(response.headers["WWW-Authenticate"])
            assert params["realm"] == realm
            if scheme == "Bearer":
                assert params == {
                    "realm": realm,
                    "service": 'svc\\"x?',
                    "scope": "repository:team/app:pull",
                }


@pytest.mark.parametrize(
    ("auth", "problem"),
    [
        ({"htpasswd": {"realm": "r"}}, "auth.htpasswd.path"),
        ({"token": {"realm": "r", "service": "s", "issuer": "i"}}, "rootcertbundle or jwks"),
        ({"token": {"service": "s", "issuer": "i", "rootcertbundle": "/x"}}, "auth.token.realm"),
        ({"magic": {}}, "auth.magic"),
        ({"silly": {}, "htpasswd": {"path": "/x"}}, "one access controller"),
        ({"builtin": {"service": "s"}}, "auth.builtin.users"),
    ],
)
def test_bad_auth_sections_fail_the_start(
    tmp_path: Path, auth: dict[str, Any], problem: str
) -> None:
    config = moorage_config(tmp_path / "data", 0, auth=auth)
    with pytest.raises(RuntimeError) as raised, run_moorage(tmp_path / "moorage", config):
        pass
    assert problem in str(raised.value)
