"""Crash safety: moorage with two workers killed outright (SIGKILL, the supervisor and every
worker) at random moments while clients push, then started again on the same root, round after
round, on the filesystem and on S3.

Pushers (threads, each with its own connections) push images without pause: blobs of a few
bytes to a few MiB, uploaded monolithically (POST ?digest=), in one PUT, in one streamed PATCH
or in chunks (PATCH with Content-Range), one layer the same for every pusher of a repository (the
same digest uploaded at once), then the manifest under a tag of the pusher's own. A step the kill
interrupts is tried again once the server answers: from its start (a new upload session), or, for
half of the sessions, by resuming the session (asking where it stands and sending the rest, or
retrying the final PUT when every byte was acknowledged). What was acknowledged before stays
acknowledged, so a manifest pushed after a restart names blobs acknowledged before it. Any answer
but the expected one (a 500 after a restart, a blob the registry forgot) is recorded and fails
the test.

Afterwards, on a server started once more:
- every acknowledged blob and manifest reads back whole: its digest and its length verified;
- every tag points where its last acknowledged push put it, or, when a push after that one was
  interrupted, at that push's manifest;
- every blob the registry serves (walking the catalog, tags, manifests and their blobs, plus every
  digest a pusher ever tried) has the length its headers claim and hashes to its digest, and a
  HEAD that finds a blob is never followed by a GET that does not.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import requests

from tests.api import OCI_MANIFEST, Client, error_codes, sha256
from tests.integration.s3_support import bucket
from tests.integration.test_workers import alive, nothing_left_behind, processes_of, wait_until
from tests.servers import S3Server, Server, children, free_port, moorage_config, run_moorage

pytestmark = pytest.mark.timeout(300)

MiB = 1024 * 1024
ROUNDS = 4
PUSHERS = 4
KILL_WITHIN = 2.5  # seconds after a round's first acknowledged manifest, drawn at random
REPOSITORIES = ("crash/a", "crash/b", "crash/nested/c")
SIZES = (0, 1, 7, 300, 4096, 65_537, MiB + 3, 3 * MiB + 5, 6 * MiB + 1)
SHARED_LAYER = 2 * MiB + 11  # the layer every pusher of a repository uploads
WAYS = ("monolithic", "put", "streamed", "chunked")
ACCEPT_ANY = {"Accept": "*/*"}
T = TypeVar("T")


class Stopped(Exception):
    """The test is over: the pusher stops where it is."""


class Unexpected(Exception):
    """The registry answered what it must not."""


@dataclass
class Ledger:
    """What the pushers tried and what the registry acknowledged, shared by their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    blobs: dict[tuple[str, str], int] = field(default_factory=dict)  # acknowledged: size
    tried: set[tuple[str, str]] = field(default_factory=set)  # every (repository, digest)
    manifests: dict[tuple[str, str], bytes] = field(default_factory=dict)  # acknowledged
    # (repository, tag) -> what it may point at: the last acknowledged push's digest and those
    # of the pushes interrupted since; None while no push of it was acknowledged (no tag)
    tags: dict[tuple[str, str], set[str | None]] = field(default_factory=dict)
    in_flight: int = 0  # requests sent and not answered yet
    cut: int = 0  # requests in flight when the server was killed
    anomalies: list[str] = field(default_factory=list)

    def try_blob(self, repo: str, digest: str) -> None:
        with self.lock:
            self.tried.add((repo, digest))

    def blob_acknowledged(self, repo: str, digest: str, size: int) -> None:
        with self.lock:
            self.blobs[(repo, digest)] = size

    def try_tag(self, repo: str, tag: str, digest: str) -> None:
        with self.lock:
            self.tags.setdefault((repo, tag), {None}).add(digest)

    def manifest_acknowledged(self, repo: str, tag: str, digest: str, payload: bytes) -> None:
        with self.lock:
            self.manifests[(repo, digest)] = payload
            self.tags[(repo, tag)] = {digest}

    def sending(self, change: int) -> None:
        with self.lock:
            self.in_flight += change

    def anomaly(self, text: str) -> None:
        with self.lock:
            self.anomalies.append(text)


def shared_layer(repo: str) -> bytes:
    return random.Random(repo).randbytes(SHARED_LAYER)


@dataclass
class Session:
    """A pusher's upload session under way."""

    location: str
    resumed: bool  # if interrupted; else the upload starts anew
    complete: bool = False  # every byte acknowledged: only the final PUT is left


class Pusher(threading.Thread):
    def __init__(self, index: int, base: str, ledger: Ledger, stop: threading.Event) -> None:
        super().__init__(name=f"pusher-{index}", daemon=True)
        self.index = index
        self.base = base
        self.ledger = ledger
        self.stop = stop
        self.rng = random.Random()
        self.http = requests.Session()
        self.shared = {repo: shared_layer(repo) for repo in REPOSITORIES}
        self.session: Session | None = None

    def run(self) -> None:
        image = 0
        try:
            while not self.stop.is_set():
                try:
                    self.push_image(image)
                except Unexpected as exc:
                    self.ledger.anomaly(f"{self.name}: {exc}")
                image += 1
        except Stopped:
            pass
        except Exception:
            self.ledger.anomaly(f"{self.name}: {traceback.format_exc()}")
        finally:
            self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = path if path.startswith("http") else self.base + path
        self.ledger.sending(+1)
        try:
            return self.http.request(method, url, timeout=30, allow_redirects=False, **kwargs)
        finally:
            self.ledger.sending(-1)

    def expect(self, response: requests.Response, status: int, what: str) -> requests.Response:
        if response.status_code != status:
            raise Unexpected(
                f"{what}: {response.request.method} {response.url} answered "
                f"{response.status_code}, not {status}: {response.text[:500]}"
            )
        return response

    def until_through(self, step: Callable[[], T]) -> T:
        """Runs the step again, from its start, while it fails on the connection (the server
        was killed, or is not answering yet)."""
        while True:
            if self.stop.is_set():
                raise Stopped
            try:
                return step()
            except requests.RequestException:
                time.sleep(0.05)

    def push_image(self, number: int) -> None:
        repo = self.rng.choice(REPOSITORIES)
        config = json.dumps({"pusher": self.index, "image": number}).encode()
        layers = [self.shared[repo]] + [
            self.rng.randbytes(self.rng.choice(SIZES)) for _ in range(self.rng.randint(1, 2))
        ]
        self.rng.shuffle(layers)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": self.upload(repo, config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": self.upload(repo, layer),
                    "size": len(layer),
                }
                for layer in layers
            ],
        }
        payload = json.dumps(manifest).encode()
        digest = sha256(payload)
        tag = f"p{self.index}-{number % 3}"  # each tag moves, and only this pusher moves it

        def put() -> None:
            response = self.request(
                "PUT",
                f"/v2/{repo}/manifests/{tag}",
                data=payload,
                headers={"Content-Type": OCI_MANIFEST},
            )
            self.expect(response, 201, f"manifest {digest} as {repo}:{tag}")
            if response.headers.get("Docker-Content-Digest") != digest:
                raise Unexpected(f"manifest {digest} acknowledged as {response.headers}")

        self.ledger.try_tag(repo, tag, digest)
        self.until_through(put)
        self.ledger.manifest_acknowledged(repo, tag, digest, payload)

    def upload(self, repo: str, data: bytes) -> str:
        digest = sha256(data)
        self.ledger.try_blob(repo, digest)
        self.session = None
        self.until_through(lambda: self.upload_once(repo, data, digest))
        self.ledger.blob_acknowledged(repo, digest, len(data))
        return digest

    def upload_once(self, repo: str, data: bytes, digest: str) -> None:
        """One attempt; after an interrupted one, its session is resumed if it is to be."""
        what = f"blob {digest} ({len(data)} bytes) in {repo}"
        if self.session and self.session.resumed and self.resume(data, digest, what):
            return
        self.session = None
        uploads = f"/v2/{repo}/blobs/uploads/"
        way = self.rng.choice(WAYS)
        if way == "monolithic":
            done = self.request("POST", uploads, params={"digest": digest}, data=data)
        else:
            location = self.expect(self.request("POST", uploads), 202, what).headers["Location"]
            self.session = Session(location, resumed=self.rng.random() < 0.5)
            if way == "put":
                done = self.request("PUT", location, params={"digest": digest}, data=data)
            else:
                if way == "streamed":
                    cuts = [0, len(data)]
                else:  # up to three chunks; none for an empty blob
                    count = max(0, min(2, len(data) - 1))
                    inner = sorted(self.rng.sample(range(1, len(data)), count))
                    cuts = [0, *inner, len(data)] if data else [0]
                for start, end in itertools.pairwise(cuts):
                    headers = {} if way == "streamed" else {"Content-Range": f"{start}-{end - 1}"}
                    patched = self.request("PATCH", location, data=data[start:end], headers=headers)
                    location = self.expect(patched, 202, what).headers["Location"]
                    self.session.location = location
                self.session.complete = True
                done = self.request("PUT", location, params={"digest": digest})
        self.expect_blob(done, digest, what)

    def resume(self, data: bytes, digest: str, what: str) -> bool:
        """Finishes the interrupted session as a client that resumes does: asks where it stands
        and sends the rest, or, when every byte was acknowledged, sometimes just tries the final
        PUT again. True when the blob is committed; False when the session is gone (committed
        before the kill, or spent by it) and the upload starts anew."""
        session = self.session
        assert session is not None
        asked = not session.complete or self.rng.random() < 0.5
        if asked:
            status = self.request("GET", session.location)
            if status.status_code == 404:
                return False
            end = int(self.expect(status, 204, what).headers["Range"].split("-")[1])
            if end == 0:
                return False  # `0-0` says 0 bytes and 1 byte alike: start anew
            if end >= len(data):
                raise Unexpected(f"{what}: the session holds bytes 0-{end}")
            if end + 1 < len(data):
                patched = self.request(
                    "PATCH",
                    session.location,
                    data=data[end + 1 :],
                    headers={"Content-Range": f"{end + 1}-{len(data) - 1}"},
                )
                session.location = self.expect(patched, 202, what).headers["Location"]
            session.complete = True
        done = self.request("PUT", session.location, params={"digest": digest})
        if done.status_code == 404 and not asked:
            return False
        self.expect_blob(done, digest, what)
        return True

    def expect_blob(self, done: requests.Response, digest: str, what: str) -> None:
        self.expect(done, 201, what)
        if done.headers.get("Docker-Content-Digest") != digest:
            raise Unexpected(f"{what} acknowledged as {done.headers}")


def kill_everything(server: Server, ledger: Ledger) -> None:
    """SIGKILL for the supervisor and each of its workers. The supervisor is stopped first, so
    that it starts no worker in place of one killed, and dies last, so that no worker hears of
    its death (and drains) before being killed itself."""
    supervisor = server.process.pid
    os.kill(supervisor, signal.SIGSTOP)
    workers = children(supervisor)
    assert workers, server.logs()
    ledger.cut += ledger.in_flight
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    os.kill(supervisor, signal.SIGKILL)
    server.process.wait()
    wait_until(lambda: not any(alive(pid) for pid in workers), "every worker gone")


def wait_for_an_image(ledger: Ledger) -> None:
    """Returns once a manifest push is acknowledged after the call."""
    before = len(ledger.manifests)
    wait_until(lambda: len(ledger.manifests) > before, "a manifest acknowledged", timeout=120)


def crash_rounds(workdir: Path, storage: dict[str, Any]) -> Ledger:
    """ROUNDS rounds of pushing and killing on one storage, then a last start on which every
    acknowledged push is checked and everything served is walked; the anomalies found."""
    port = free_port()
    config = moorage_config(None, port, http={"workers": 2, "secret": "crash-tests-secret"})
    config["storage"] = {
        **storage,
        "delete": {"enabled": True},
        "cache": {"blobdescriptor": "inmemory"},
        "redirect": {"disable": True},  # S3 blobs through moorage: its bytes are the ones checked
    }
    ledger = Ledger()
    stop = threading.Event()
    pushers = [Pusher(i, f"http://127.0.0.1:{port}", ledger, stop) for i in range(PUSHERS)]
    with nothing_left_behind(workdir):
        try:
            for number in range(ROUNDS):
                rounddir = workdir / f"round-{number}"
                with run_moorage(rounddir, config, port=port) as server:
                    if number == 0:
                        for pusher in pushers:
                            pusher.start()
                    wait_for_an_image(ledger)
                    time.sleep(random.uniform(0, KILL_WITHIN))
                    kill_everything(server, ledger)
                assert not processes_of(rounddir)
                ledger.anomalies += logged_errors(server, f"round {number}")
        finally:
            stop.set()
            for pusher in pushers:
                pusher.join(60)
        with run_moorage(workdir / "after", config, port=port) as server:
            verify(server.url, ledger)
            ledger.anomalies += logged_errors(server, "after the rounds")
    return ledger


def logged_errors(server: Server, when: str) -> list[str]:
    """The server's log lines at level error or above, and tracebacks."""
    return [
        f"{when}, logged: {line}"
        for line in server.logs().splitlines()
        if line.split()[1:2] in (["error"], ["critical"]) or line.startswith("Traceback")
    ]


def check_blob(
    http: requests.Session, url: str, repo: str, digest: str, size: int | None, *, required: bool
) -> list[str]:
    """What is wrong with the blob as served: a HEAD and a streamed GET that agree, a body of
    the length the headers claim that hashes to the digest. `size`: the length it must have."""
    where = f"{repo}@{digest}"
    path = f"{url}/v2/{repo}/blobs/{digest}"
    head = http.head(path, timeout=30, allow_redirects=False)
    if head.status_code == 404:
        got = http.get(path, timeout=30, allow_redirects=False)
        found = [f"{where}: acknowledged, but HEAD answers 404"] if required else []
        if got.status_code != 404:
            found.append(f"{where}: HEAD answers 404, GET {got.status_code}")
        return found
    if head.status_code != 200:
        return [f"{where}: HEAD answers {head.status_code}"]
    length = int(head.headers["Content-Length"])
    problems = []
    if size is not None and length != size:
        problems.append(f"{where}: HEAD claims {length} bytes, not {size}")
    hasher = hashlib.sha256()
    received = 0
    try:
        with http.get(path, timeout=30, stream=True, allow_redirects=False) as got:
            if got.status_code != 200:
                return [*problems, f"{where}: HEAD answers 200, GET {got.status_code}"]
            if int(got.headers["Content-Length"]) != length:
                problems.append(f"{where}: GET claims {got.headers['Content-Length']} bytes")
            if got.headers.get("Docker-Content-Digest") != digest:
                problems.append(f"{where}: served as {got.headers.get('Docker-Content-Digest')}")
            for chunk in got.iter_content(MiB):
                hasher.update(chunk)
                received += len(chunk)
    except requests.RequestException as exc:
        return [*problems, f"{where}: GET broke off after {received} of {length} bytes: {exc}"]
    if received != length:
        problems.append(f"{where}: {received} bytes served, {length} claimed")
    if f"sha256:{hasher.hexdigest()}" != digest:
        problems.append(f"{where}: served bytes hash to sha256:{hasher.hexdigest()}")
    return problems


def verify(url: str, ledger: Ledger) -> None:
    """Adds to the ledger's anomalies what the registry at `url` serves wrong."""
    problems: list[str] = []
    http = requests.Session()
    for (repo, digest), size in sorted(ledger.blobs.items()):
        problems += check_blob(http, url, repo, digest, size, required=True)
    for (repo, digest), payload in sorted(ledger.manifests.items()):
        got = http.get(f"{url}/v2/{repo}/manifests/{digest}", headers=ACCEPT_ANY, timeout=30)
        if got.status_code != 200 or got.content != payload:
            problems.append(f"{repo}@{digest}: acknowledged manifest answers {got.status_code}")
    for (repo, tag), possible in sorted(ledger.tags.items()):
        got = http.get(f"{url}/v2/{repo}/manifests/{tag}", headers=ACCEPT_ANY, timeout=30)
        pointed = sha256(got.content) if got.status_code == 200 else None
        if got.status_code not in (200, 404) or pointed not in possible:
            problems.append(f"{repo}:{tag} answers {got.status_code} {pointed}, not {possible}")

    # Everything the registry serves, found by walking it.
    catalog = http.get(f"{url}/v2/_catalog", params={"n": 1000}, timeout=30)
    repositories = catalog.json()["repositories"]
    problems += [
        f"{repo} holds acknowledged blobs but is not in the catalog {repositories}"
        for repo in {repo for repo, _ in ledger.blobs}
        if repo not in repositories
    ]
    blobs: dict[tuple[str, str], int] = {}
    for repo in repositories:
        listed = http.get(f"{url}/v2/{repo}/tags/list", timeout=30)
        if listed.status_code == 404 and repo not in {repo for repo, _ in ledger.manifests}:
            continue  # blobs but no manifest yet: no tags, as in distribution
        if listed.status_code != 200:
            problems.append(f"{repo}: tags list answers {listed.status_code}")
            continue
        for tag in listed.json()["tags"] or []:
            got = http.get(f"{url}/v2/{repo}/manifests/{tag}", headers=ACCEPT_ANY, timeout=30)
            if got.status_code == 404 and None in ledger.tags.get((repo, tag), {None}):
                continue  # a tag whose first push was interrupted: listed, never pointed
            digest = got.headers.get("Docker-Content-Digest")
            if got.status_code != 200 or digest != sha256(got.content):
                problems.append(f"{repo}:{tag} answers {got.status_code} as {digest}")
                continue
            manifest = json.loads(got.content)
            for descriptor in [manifest["config"], *manifest["layers"]]:
                blobs[(repo, descriptor["digest"])] = descriptor["size"]
    for (repo, digest), size in sorted(blobs.items() - ledger.blobs.items()):
        problems += check_blob(http, url, repo, digest, size, required=True)
    for repo, digest in sorted(ledger.tried - set(blobs) - set(ledger.blobs)):
        problems += check_blob(http, url, repo, digest, None, required=False)
    http.close()
    for problem in problems:
        ledger.anomaly(problem)


def assert_crash_safe(ledger: Ledger) -> None:
    assert not ledger.anomalies, "\n".join(ledger.anomalies)
    # The test proves something only if pushes got through and kills cut some short.
    assert ledger.cut > 0
    assert len(ledger.manifests) >= ROUNDS


def test_pushes_survive_kills_on_the_filesystem(tmp_path: Path) -> None:
    ledger = crash_rounds(tmp_path, {"filesystem": {"rootdirectory": str(tmp_path / "data")}})
    assert_crash_safe(ledger)


def test_pushes_survive_kills_on_s3(tmp_path: Path, s3_store: S3Server) -> None:
    with bucket(s3_store, f"crash-{uuid.uuid4().hex[:12]}") as name:
        ledger = crash_rounds(tmp_path, {"s3": s3_store.params(name)})
    assert_crash_safe(ledger)


def test_a_session_whose_commit_was_cut_short_is_unknown(tmp_path: Path) -> None:
    """The state a kill leaves when it cuts a commit short after the session's data moved into
    the blob store (and before the link): a retried PUT finds the session spent (404), and the
    upload started anew succeeds."""
    data = os.urandom(300_000)
    digest = sha256(data)
    root = tmp_path / "data"
    with run_moorage(tmp_path / "first", root=root) as first:
        client = Client(first.url)
        location = client.start_upload("cut/app")
        assert client.request("PATCH", location, data=data).status_code == 202
        session = urlsplit(location).path
    upload_id = session.rsplit("/", 1)[1]
    v2 = root / "docker/registry/v2"
    stored = v2 / f"blobs/sha256/{digest[7:9]}/{digest[7:]}/data"
    stored.parent.mkdir(parents=True)
    (v2 / f"repositories/cut/app/_uploads/{upload_id}/data").rename(stored)
    with run_moorage(tmp_path / "second", root=root) as second:
        client = Client(second.url)
        retried = client.request("PUT", session, params={"digest": digest})
        assert retried.status_code == 404, retried.text
        assert error_codes(retried) == ["BLOB_UPLOAD_UNKNOWN"]
        assert client.request("GET", session).status_code == 404
        assert client.request("HEAD", f"/v2/cut/app/blobs/{digest}").status_code == 404
        assert client.push_blob("cut/app", data) == digest
        assert client.request("GET", f"/v2/cut/app/blobs/{digest}").content == data
        assert "Traceback" not in second.logs()
