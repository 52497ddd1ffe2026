"""Route-level properties against real moorage processes: generated hostile input on every route
(names, references, digests, ranges, query parameters, manifests, upload state, authorization
headers and tokens), sent byte for byte over raw sockets. After every example the invariants of
tests/integration/properties_support.py hold (no 5xx, errors in the OCI envelope, clean headers
and challenges, nothing created outside the storage root, the process alive), and at the end
both servers still push and pull.

Two servers for the module: one on the filesystem with deletes enabled and a seeded image, and
one with the built-in token server (`auth.builtin`). Requests to the token endpoint with
generated credentials come from rotating loopback addresses, so the per-address limit on failed
logins leaves the final check's own login alone."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from hypothesis import assume, example, given
from hypothesis import strategies as st

from tests.api import EMPTY_CONFIG, OCI_INDEX, OCI_MANIFEST, Client, sha256
from tests.integration.auth_support import SERVICE, builtin_section, htpasswd_file
from tests.integration.properties_support import (
    Response,
    Watched,
    error_codes,
    parse_challenge,
    path,
    query,
)
from tests.servers import moorage_config, run_moorage
from tests.strategies import (
    NAME_GRAMMAR,
    authorization_values,
    content_range_headers,
    descriptors,
    encode,
    field_values,
    fits_header,
    hostile_digests,
    hostile_names,
    hostile_references,
    is_valid_digest,
    manifests,
    mutated,
    numbers,
    range_headers,
    spoiled_manifests,
    valid_digests,
    valid_tags,
)

DEEP = ("l1", "l2", "l3", "l4", "l5", "l6")  # the root lies this deep in the watched directory
ARTIFACT_TYPE = "application/vnd.moorage.props.test"


@dataclass
class Seed:
    """What the plain server holds from the start, and no example deletes."""

    name: str
    tag: str
    manifest: str  # digest
    payload: bytes
    blobs: dict[str, bytes]  # digest -> content (small: Hypothesis prints them on failure)
    referrer: str  # digest of an artifact whose subject is the manifest


@dataclass
class Plain:
    watched: Watched
    seed: Seed


def seed(client: Client) -> Seed:
    name = "props/base"
    config, layer = b'{"props":"seed"}', bytes(range(256)) * 2
    payload = client.manifest(name, config, [layer])
    assert client.put_manifest(name, "v1", payload).status_code == 201
    empty = client.push_blob(name, b"{}")
    artifact = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_CONFIG, "digest": empty, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": sha256(payload), "size": len(payload)},
    }
    referrer = json.dumps(artifact).encode()
    assert client.put_manifest(name, sha256(referrer), referrer).status_code == 201
    blobs = {sha256(data): data for data in (config, layer, b"{}")}
    return Seed(name, "v1", sha256(payload), payload, blobs, sha256(referrer))


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plain]:
    directory = tmp_path_factory.mktemp("plain")
    root = directory.joinpath(*DEEP, "data")
    root.mkdir(parents=True)
    with run_moorage(directory / "moorage", moorage_config(root, 0), cwd=directory) as server:
        seeded = seed(Client(server.url))
        watched = Watched(server, directory, root)
        watched.settle()
        yield Plain(watched, seeded)


# generated pieces of requests: names, digests and references short enough to keep a request
# line under the 8 KB servers commonly read (RFC 9112 section 3 lets them refuse longer ones)

names = hostile_names.filter(lambda text: len(text) <= 400)
digests = hostile_digests.filter(lambda text: len(text) <= 400)
references = hostile_references.filter(lambda text: len(text) <= 400)
query_numbers = numbers().filter(lambda text: len(text) <= 2000)

encode_all = st.booleans()
# HTTP allows any token as a method; these are the ones aiohttp's parser knows
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"])
extra_header_names = st.sampled_from(
    [b"Accept", b"X-Request-Id", b"X-Forwarded-Host", b"X-Forwarded-Proto", b"Forwarded",
     b"If-None-Match", b"Range", b"Content-Type", b"Authorization", b"X-Anything"]
)  # fmt: skip
extra_headers = st.lists(
    st.tuples(extra_header_names, field_values), max_size=3, unique_by=lambda header: header[0]
)
accepts = (
    st.lists(
        st.sampled_from([OCI_MANIFEST, OCI_INDEX, "*/*", "application/json", "text/html"]),
        max_size=3,
    ).map(lambda types: ", ".join(types).encode())
    | field_values
)


def names_for(plain: Plain) -> st.SearchStrategy[str]:
    return st.just(plain.seed.name) | names


def as_bytes(text: str) -> bytes:
    return text.encode("utf-8")


# any path, any method

path_parts = st.lists(
    st.sampled_from(["v2", "_catalog", "blobs", "uploads", "manifests", "tags", "list",
                     "referrers", "..", "props", "base", ""])
    | st.text(max_size=12),
    max_size=7,
)  # fmt: skip


@given(methods, path_parts, encode_all, extra_headers)
def test_any_path_and_method(
    plain: Plain,
    method: str,
    parts: list[str],
    encoded: bool,
    headers: list[tuple[bytes, bytes]],
) -> None:
    plain.watched.exchange(method, b"/" + path(*parts, encode_all=encoded), headers)


# listings


@given(
    st.lists(
        st.tuples(st.sampled_from(["n", "last", "N", "n "]), query_numbers | st.text(max_size=20)),
        max_size=3,
    )
)
def test_catalog_pagination(plain: Plain, params: list[tuple[str, str]]) -> None:
    response = plain.watched.exchange("GET", b"/v2/_catalog" + query(params))
    if response.status == 200:
        repositories = response.json()["repositories"]
        assert repositories == sorted(repositories)
        last = next((value for key, value in params if key == "last"), None)
        assert not last or all(name > last for name in repositories)
    else:
        assert error_codes(response) == ["PAGINATION_NUMBER_INVALID"], response.body


@given(
    st.data(),
    encode_all,
    st.lists(st.tuples(st.sampled_from(["n", "last"]), query_numbers | st.text(max_size=20)),
             max_size=3),
)  # fmt: skip
def test_tags_list(
    plain: Plain, data: st.DataObject, encoded: bool, params: list[tuple[str, str]]
) -> None:
    name = data.draw(names_for(plain), label="name")
    target = path("v2", name, "tags", "list", encode_all=encoded) + query(params)
    response = plain.watched.exchange("GET", b"/" + target)
    if response.status == 200:
        body = response.json()
        assert isinstance(body, dict) and body["name"] == name and isinstance(body["tags"], list)


@given(st.data(), encode_all, st.none() | st.text(max_size=40) | st.just(ARTIFACT_TYPE))
def test_referrers(
    plain: Plain, data: st.DataObject, encoded: bool, artifact_type: str | None
) -> None:
    name = data.draw(names_for(plain), label="name")
    digest = data.draw(st.just(plain.seed.manifest) | digests, label="digest")
    params = [("artifactType", artifact_type)] if artifact_type is not None else []
    target = path("v2", name, "referrers", digest, encode_all=encoded) + query(params)
    response = plain.watched.exchange("GET", b"/" + target)
    if response.status == 200:
        assert response.header("Content-Type") == OCI_INDEX
        index = response.json()
        assert isinstance(index, dict) and index["mediaType"] == OCI_INDEX
        # A filter the server applied is announced; one it does not announce was not applied.
        filtered = response.header("OCI-Filters-Applied") == "artifactType"
        assert artifact_type is not None or not filtered
        if (name, digest) == (plain.seed.name, plain.seed.manifest):
            kept = not filtered or artifact_type == ARTIFACT_TYPE
            assert [d["digest"] for d in index["manifests"]] == (
                [plain.seed.referrer] if kept else []
            ), (artifact_type, response.headers)


# manifests


@given(st.data(), st.sampled_from(["GET", "HEAD", "DELETE"]), encode_all, st.none() | accepts)
def test_manifest_get_head_delete(
    plain: Plain, data: st.DataObject, method: str, encoded: bool, accept: bytes | None
) -> None:
    name = data.draw(names_for(plain), label="name")
    reference = data.draw(
        st.sampled_from([plain.seed.tag, plain.seed.manifest]) | references,
        label="reference",
    )
    assume(not (method == "DELETE" and name == plain.seed.name))
    headers = [(b"Accept", accept)] if accept is not None else []
    target = path("v2", name, "manifests", reference, encode_all=encoded)
    response = plain.watched.exchange(method, b"/" + target, headers)
    seeded = name == plain.seed.name and reference in (plain.seed.tag, plain.seed.manifest)
    if seeded and accept is None:
        assert response.status == 200
        assert response.header("Docker-Content-Digest") == plain.seed.manifest
        assert response.body == (plain.seed.payload if method == "GET" else b"")


@given(st.data(), encode_all)
def test_manifest_put(plain: Plain, data: st.DataObject, encoded: bool) -> None:
    name = data.draw(st.just(plain.seed.name) | st.just("props/put") | names, "name")
    seeded = st.sampled_from(
        [{"mediaType": "application/octet-stream", "digest": d, "size": len(c)}
         for d, c in plain.seed.blobs.items()]
    )  # fmt: skip
    document, media_type = data.draw(manifests(seeded | descriptors()), label="manifest")
    content_type = data.draw(st.sampled_from([media_type, None]) | field_values, "content type")
    body = data.draw(
        st.just(encode(document)) | spoiled_manifests(document) | st.binary(max_size=200),
        label="body",
    )
    reference = data.draw(
        valid_tags | st.just(sha256(body)) | valid_digests() | references, "reference"
    )
    assume(not (name == plain.seed.name and reference == plain.seed.tag))
    headers = []
    if content_type is not None:
        headers.append((b"Content-Type", as_bytes(content_type) if isinstance(content_type, str)
                        else content_type))  # fmt: skip
    target = path("v2", name, "manifests", reference, encode_all=encoded)
    response = plain.watched.exchange("PUT", b"/" + target, headers, body)
    if response.status == 201:
        digest = response.header("Docker-Content-Digest") or ""
        algorithm, _, hexed = digest.partition(":")
        assert is_valid_digest(digest) and hexed == hashlib.new(algorithm, body).hexdigest()
        assert (response.header("Location") or "").endswith(f"/manifests/{digest}")


# blobs


@given(
    st.data(),
    st.sampled_from(["GET", "HEAD"]),
    encode_all,
    st.none() | range_headers(),
    st.none() | field_values | st.just(b"*"),
)
def test_blob_get_and_head(
    plain: Plain,
    data: st.DataObject,
    method: str,
    encoded: bool,
    range_header: str | None,
    if_none_match: bytes | None,
) -> None:
    name = data.draw(names_for(plain), label="name")
    digest = data.draw(st.sampled_from(sorted(plain.seed.blobs)) | digests, "digest")
    if digest in plain.seed.blobs and data.draw(st.booleans(), label="matching etag"):
        if_none_match = b'W/"x", "' + digest.encode() + b'"'
    headers = []
    if range_header is not None:
        headers.append((b"Range", as_bytes(range_header)))
    if if_none_match is not None:
        headers.append((b"If-None-Match", if_none_match))
    target = path("v2", name, "blobs", digest, encode_all=encoded)
    response = plain.watched.exchange(method, b"/" + target, headers)
    if name != plain.seed.name or digest not in plain.seed.blobs:
        return
    content = plain.seed.blobs[digest]
    if if_none_match is not None and f'"{digest}"' in if_none_match.decode("latin-1"):
        assert response.status == 304
        return
    if response.status == 206:
        served = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", response.header("Content-Range") or "")
        assert served is not None, response.headers
        first, last, size = map(int, served.groups())
        assert size == len(content) and first <= last < size
        assert method == "HEAD" or response.body == content[first : last + 1]
    elif response.status == 200:
        assert method == "HEAD" or response.body == content
    else:
        assert response.status == 416, response.status
        assert method == "HEAD" or error_codes(response) == ["RANGE_INVALID"]


@given(st.data(), encode_all)
def test_blob_delete(plain: Plain, data: st.DataObject, encoded: bool) -> None:
    name = data.draw(st.just("props/scratch") | names, label="name")
    digest = data.draw(st.sampled_from(sorted(plain.seed.blobs)) | digests, "digest")
    assume(name != plain.seed.name)
    plain.watched.exchange("DELETE", b"/" + path("v2", name, "blobs", digest, encode_all=encoded))


@given(st.sampled_from(["blob", "manifest"]), st.integers(2, 6), st.binary(min_size=1, max_size=64))
def test_concurrent_deletes_of_one_thing_give_one_202_and_404s(
    plain: Plain, kind: str, count: int, content: bytes
) -> None:
    client = Client(plain.watched.server.url)
    name = "props/deletes"
    if kind == "blob":
        target = path("v2", name, "blobs", client.push_blob(name, content))
    else:
        payload = client.manifest(name, b'{"c":"' + content.hex().encode() + b'"}', [content])
        assert client.put_manifest(name, sha256(payload), payload).status_code == 201
        target = path("v2", name, "manifests", sha256(payload))
    answers: list[Response] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(count)

    def delete() -> None:
        barrier.wait()
        try:
            answers.append(plain.watched.exchange_now("DELETE", b"/" + target))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=delete) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    assert sorted(a.status for a in answers) == [202] + [404] * (count - 1), [
        (a.status, a.body[:200]) for a in answers
    ]


# uploads


@given(
    st.data(),
    encode_all,
    st.lists(
        st.sampled_from(["digest", "mount", "from", "digest-algorithm"]), unique=True, max_size=4
    ),
    st.binary(max_size=64),
)
def test_upload_start(
    plain: Plain, data: st.DataObject, encoded: bool, keys: list[str], body: bytes
) -> None:
    name = data.draw(st.just("props/uploads") | names, label="name")
    values = {
        "digest": st.just(sha256(body)) | digests,
        "mount": st.sampled_from(sorted(plain.seed.blobs)) | digests,
        "from": st.just(plain.seed.name) | names,
        "digest-algorithm": st.sampled_from(["sha256", "sha512", "sha384", "md5", ""])
        | st.text(max_size=10),
    }
    params = [(key, data.draw(values[key], label=key)) for key in keys]
    target = path("v2", name, "blobs", "uploads", encode_all=encoded) + b"/" + query(params)
    response = plain.watched.exchange("POST", b"/" + target, [], body)
    if response.status == 201:
        digest = response.header("Docker-Content-Digest")
        assert digest is not None and (response.header("Location") or "").endswith(digest)
    elif response.status == 202:
        assert "_state=" in (response.header("Location") or "")
        assert response.header("Docker-Upload-UUID")


def start_session(plain: Plain) -> tuple[str, str]:
    """A fresh upload session in props/uploads: its id and signed state."""
    response = plain.watched.exchange("POST", b"/v2/props/uploads/blobs/uploads/")
    assert response.status == 202
    location = urlsplit(response.header("Location") or "")
    state = dict(part.split("=", 1) for part in location.query.split("&"))["_state"]
    return location.path.rsplit("/", 1)[1], state


@given(
    st.data(),
    st.sampled_from(["PATCH", "PUT", "GET", "DELETE"]),
    st.none() | content_range_headers(),
    st.binary(max_size=64),
)
def test_upload_session(
    plain: Plain, data: st.DataObject, method: str, content_range: str | None, body: bytes
) -> None:
    upload_id, state = start_session(plain)
    upload_id = data.draw(st.just(upload_id) | mutated(st.just(upload_id)), label="upload id")
    state_param = data.draw(
        st.sampled_from([state, None]) | mutated(st.just(state)) | st.text(max_size=40), "state"
    )
    params = [("_state", state_param)] if state_param is not None else []
    if method == "PUT":
        digest = data.draw(st.just(sha256(body)) | digests | st.none(), label="digest")
        params += [("digest", digest)] if digest is not None else []
    headers = [(b"Content-Range", as_bytes(content_range))] if content_range is not None else []
    sent = body if method in ("PATCH", "PUT") else b""
    target = path("v2", "props/uploads", "blobs", "uploads", upload_id) + query(params)
    response = plain.watched.exchange(method, b"/" + target, headers, sent)
    if response.status == 416:
        # the chunk was refused and the session left as it was, for the client to resume
        assert error_codes(response) == ["BLOB_UPLOAD_INVALID"]
        status = plain.watched.exchange("GET", b"/" + target.split(b"?")[0] + query(params[:1]))
        assert status.status == 204 and status.header("Range") == "0-0"


# under the built-in token server


USERS = {"alice": "alice-pw", "keeper": "keeper-pw"}  # keeper: only the final check signs in
ACL = {
    "rules": [
        {"who": ["anonymous"], "repos": ["public/*"], "actions": ["pull"]},
        {"who": ["*"], "repos": ["*"], "actions": ["*"]},
    ]
}
SOURCES = itertools.cycle(f"127.0.{third}.{fourth}" for third in (2, 3) for fourth in range(1, 255))


@dataclass
class Authed:
    watched: Watched
    tokens: list[str]  # genuine tokens for a few scopes, for the strategies to spoil
    refresh: str  # a genuine refresh token

    @property
    def url(self) -> str:
        return self.watched.server.url


@pytest.fixture(scope="module")
def authed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authed]:
    directory = tmp_path_factory.mktemp("authed")
    root = directory.joinpath(*DEEP, "data")
    root.mkdir(parents=True)
    users = htpasswd_file(directory / "users", USERS)
    acl = directory / "acl.yml"
    acl.write_text(yaml.safe_dump(ACL))
    auth = builtin_section(users, acl, directory / "keys" / "token.key")
    config = moorage_config(root, 0, auth=auth)
    with run_moorage(directory / "moorage", config, cwd=directory) as server:
        realm = f"{server.url}/auth/token"
        tokens = [
            requests.get(realm, params={"scope": scope}, auth=("alice", "alice-pw"),
                         timeout=30).json()["token"]
            for scope in ("repository:props/a:pull,push", "registry:catalog:*", "")
        ]  # fmt: skip
        refresh = requests.post(
            realm,
            data={"grant_type": "password", "username": "alice", "password": "alice-pw",
                  "service": SERVICE, "access_type": "offline"},
            timeout=30,
        ).json()["refresh_token"]  # fmt: skip
        watched = Watched(server, directory, root)
        watched.settle()
        yield Authed(watched, tokens, refresh)


routes = st.sampled_from(
    [
        ("GET", "v2/_catalog"), ("GET", "v2/{name}/tags/list"), ("GET", "v2/{name}/manifests/v1"),
        ("HEAD", "v2/{name}/manifests/v1"), ("PUT", "v2/{name}/manifests/v1"),
        ("DELETE", "v2/{name}/manifests/v1"), ("GET", "v2/{name}/blobs/{digest}"),
        ("DELETE", "v2/{name}/blobs/{digest}"), ("POST", "v2/{name}/blobs/uploads/"),
        ("PATCH", "v2/{name}/blobs/uploads/x"), ("GET", "v2/{name}/referrers/{digest}"),
        ("GET", "v2/"), ("GET", "v2/_moorage/usage"),
    ]
)  # fmt: skip


def under_auth(authed: Authed, route: tuple[str, str], name: str, encoded: bool,
               authorization: bytes | None) -> Response:  # fmt: skip
    """Sends `route` for the repository `name`; a 401 must carry exactly one challenge whose
    realm is the token endpoint and whose scope names the repository as sent, inside its
    quotes."""
    method, template = route
    before, has_name, after = template.partition("{name}")
    target = before.encode() + (path(name, encode_all=encoded) if has_name else b"")
    target += after.replace("{digest}", "sha256:" + "0" * 64).encode()
    headers = [(b"Authorization", authorization)] if authorization is not None else []
    response = authed.watched.exchange(method, b"/" + target, headers)
    challenge = response.header("WWW-Authenticate")
    if challenge is not None:
        scheme, params = parse_challenge(challenge)
        assert scheme == "Bearer" and params["realm"] == f"{authed.url}/auth/token"
        assert params["service"] == SERVICE
        if has_name and "scope" in params:
            kind, _, rest = params["scope"].partition(":")
            as_sent = name.encode().decode("latin-1")  # header values are read as latin-1
            assert (kind, rest.rpartition(":")[0]) == ("repository", as_sent), params
    return response


@given(routes, st.just("props/a") | st.just("public/x") | names, encode_all)
@example(("GET", "v2/{name}/tags/list"), 'a",realm="https://evil.example', False)
@example(("GET", "v2/{name}/tags/list"), "a\x00b", False)
def test_names_under_token_auth(
    authed: Authed, route: tuple[str, str], name: str, encoded: bool
) -> None:
    """Whatever the name, an anonymous request is answered (never dropped), with a well-formed
    challenge or an error."""
    under_auth(authed, route, name, encoded, None)


@given(routes, encode_all, authorization_values())
@example(("GET", "v2/"), False, b"Bearer \x80")
def test_credentials_under_token_auth(
    authed: Authed, route: tuple[str, str], encoded: bool, authorization: bytes
) -> None:
    """Whatever the Authorization header (Basic, other schemes, garbage, bytes that are not
    UTF-8), the answer is well-formed."""
    under_auth(authed, route, "props/a", encoded, authorization)


@given(st.data(), routes, encode_all)
def test_spoiled_tokens_under_token_auth(
    authed: Authed, data: st.DataObject, route: tuple[str, str], encoded: bool
) -> None:
    """Genuine tokens of the server, spoiled, under any scheme: the answer is well-formed."""
    token = data.draw(
        st.sampled_from(authed.tokens) | mutated(st.sampled_from(authed.tokens)).filter(fits_header)
    )
    scheme = data.draw(st.sampled_from([b"Bearer ", b"bearer  ", b"Basic ", b"Bearer"]))
    under_auth(authed, route, "props/a", encoded, scheme + token.encode())


token_params = st.lists(
    st.tuples(
        st.sampled_from(["scope", "service", "account", "client_id", "offline_token"]),
        st.one_of(
            st.just(SERVICE),
            st.builds("repository:{}:{}".format, names,
                      st.sampled_from(["pull", "push,pull", "*", "delete", ""])),
            st.just("registry:catalog:*"),
            st.text(max_size=30),
        ),
    ),
    max_size=4,
)  # fmt: skip


def assert_granted_names_valid(response: Response) -> None:
    """A token answer grants repository actions only for names the registry accepts."""
    answer = response.json()
    assert isinstance(answer, dict)
    payload = answer["access_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for entry in claims["access"]:
        if entry["type"] == "repository":
            assert re.fullmatch(NAME_GRAMMAR, entry["name"]) and len(entry["name"]) <= 255, (
                f"a token for a name the registry refuses: {entry}"
            )


@given(token_params, st.none() | authorization_values())
@example([], b"Basic \x80")
def test_token_endpoint_get(
    authed: Authed, params: list[tuple[str, str]], authorization: bytes | None
) -> None:
    headers = [(b"Authorization", authorization)] if authorization is not None else []
    response = authed.watched.exchange(
        "GET", b"/auth/token" + query(params), headers, source=next(SOURCES)
    )
    if response.status == 200:
        assert_granted_names_valid(response)


@given(
    st.data(),
    token_params,
    st.sampled_from(["password", "refresh_token", "client_credentials", ""]),
    st.sampled_from([b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x",
                     b"application/json"]) | field_values,
)  # fmt: skip
def test_token_endpoint_post(
    authed: Authed,
    data: st.DataObject,
    params: list[tuple[str, str]],
    grant_type: str,
    content_type: bytes,
) -> None:
    fields = [*params, ("grant_type", grant_type)]
    if grant_type == "password":
        fields += [
            ("username", data.draw(st.sampled_from(["alice", "nobody"]) | st.text(max_size=12))),
            ("password", data.draw(st.just("alice-pw") | st.text(max_size=12))),
        ]
    elif grant_type == "refresh_token":
        token = data.draw(st.just(authed.refresh) | mutated(st.just(authed.refresh))
                          | st.sampled_from(authed.tokens) | st.text(max_size=40))  # fmt: skip
        fields.append(("refresh_token", token))
    if data.draw(st.booleans(), label="offline"):
        fields.append(("access_type", "offline"))
    body = data.draw(st.just(query(fields)[1:]) | st.binary(max_size=100), label="body")
    response = authed.watched.exchange(
        "POST", b"/auth/token", [(b"Content-Type", content_type)], body, source=next(SOURCES)
    )
    if response.status == 200:
        assert_granted_names_valid(response)


# still serving


def test_both_servers_still_push_and_pull(plain: Plain, authed: Authed) -> None:
    """Run last: after every example above, each server is alive and serves a normal push and
    pull, and nothing was ever created outside its storage root."""
    client = Client(plain.watched.server.url)
    payload, digest = client.push_image("props/final", "v1", seed="final")
    pulled = client.request("GET", "/v2/props/final/manifests/v1")
    assert pulled.status_code == 200 and pulled.content == payload
    plain.watched.assert_contained()

    answer = requests.get(
        f"{authed.url}/auth/token",
        params={"service": SERVICE, "scope": "repository:props/final:pull,push"},
        auth=("keeper", USERS["keeper"]),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    client = Client(authed.url)
    client.http.headers["Authorization"] = f"Bearer {answer.json()['token']}"
    payload, digest = client.push_image("props/final", "v1", seed="final")
    pulled = client.request("GET", f"/v2/props/final/manifests/{digest}")
    assert pulled.status_code == 200 and pulled.content == payload
    authed.watched.assert_contained()
