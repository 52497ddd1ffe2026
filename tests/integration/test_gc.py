"""Garbage collection end to end: `moorage garbage-collect` side by side with the reference
registry's (distribution 2.8, `docker-registry garbage-collect`) on copies of one root written by
both registries, each registry serving what the other's collection left; what moorage keeps and
the reference loses (children of indexes, referrers); real clients pushing, collecting and
pulling; and the scheduled collection (`storage.maintenance.gc`) running every second while
several clients push, retag and delete, on the filesystem with two workers and on S3 with two
replicas sharing Redis, after which every acknowledged image is read back byte by byte and no
cache reports a swept blob.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import oras.oci
import oras.provider
import pytest
import requests
import yaml

from tests.api import OCI_INDEX, OCI_MANIFEST, Client, sha256
from tests.images import make_image
from tests.integration.http_support import skopeo
from tests.integration.lifecycle_support import moorage_cli
from tests.integration.s3_support import bucket, list_objects
from tests.servers import (
    RedisServer,
    S3Server,
    Server,
    moorage_config,
    run_moorage,
    run_reference_registry,
)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(600)]

V2 = "docker/registry/v2"
ACCEPT = ", ".join(
    (
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
LAYER_LINK = re.compile(rf"^{V2}/repositories/.+/_layers/sha256/[0-9a-f]{{64}}/link$")
GC_DONE = re.compile(r"garbage collection done: (\d+) manifests, (\d+) blobs")
HTTP_TIMEOUT = 60


# --- running the two collectors -----------------------------------------------------------------


def write_config(path: Path, root: Path, **gc: Any) -> Path:
    """A config on the filesystem root for `moorage garbage-collect` (delay 0: the registry
    is stopped) that distribution reads too."""
    config = moorage_config(root, 0)
    config["storage"]["maintenance"] = {"gc": {"delay": "0s", **gc}}
    path.write_text(yaml.safe_dump(config))
    return path


def reference_config(path: Path, root: Path) -> Path:
    config = {"version": "0.1", "storage": {"filesystem": {"rootdirectory": str(root)}}}
    path.write_text(yaml.safe_dump(config))
    return path


def moorage_gc(config: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return moorage_cli("garbage-collect", str(config), *flags, timeout=300)


def reference_gc(config: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["docker-registry", "garbage-collect", str(config), *flags],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def blob_data(root: Path, digest: str) -> Path:
    hex_ = digest.split(":")[1]
    return root / V2 / "blobs" / "sha256" / hex_[:2] / hex_ / "data"


# --- images of known bytes ----------------------------------------------------------------------


@dataclass
class Image:
    repo: str
    tag: str
    manifest: bytes
    blobs: dict[str, bytes]  # digest -> content, config and layers

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def push(client: Client, repo: str, tag: str, layers: list[bytes], seed: str) -> Image:
    config = json.dumps({"seed": seed, "repo": repo}).encode()
    payload = client.manifest(repo, config, layers)
    response = client.put_manifest(repo, tag, payload)
    assert response.status_code == 201, response.text
    return Image(repo, tag, payload, {sha256(b): b for b in [config, *layers]})


def served(url: str, image: Image) -> None:
    """The image's manifest by tag and every blob, byte for byte."""
    got = requests.get(
        f"{url}/v2/{image.repo}/manifests/{image.tag}",
        headers={"Accept": ACCEPT},
        timeout=HTTP_TIMEOUT,
    )
    assert got.status_code == 200, (image.repo, image.tag, got.text)
    assert got.content == image.manifest, (image.repo, image.tag)
    for digest, content in image.blobs.items():
        blob = requests.get(f"{url}/v2/{image.repo}/blobs/{digest}", timeout=HTTP_TIMEOUT)
        assert blob.status_code == 200, (image.repo, digest, blob.text)
        assert blob.content == content, (image.repo, digest)


def write_tree(tmp_path: Path) -> tuple[Path, list[Image]]:
    """A root both registries wrote: images kept, images deleted through the API, tags moved
    (leaving untagged manifests), blobs pushed and never named, repositories emptied. Returns
    the root and the images still tagged."""
    root = tmp_path / "tree"
    kept: list[Image] = []
    base = b"base layer shared by everyone"
    with run_moorage(tmp_path / "moorage", root=root) as server:
        client = Client(server.url)
        kept.append(push(client, "team/app", "v1", [base, b"app one"], "m1"))
        push(client, "team/app", "v2", [base, b"app two"], "m2")
        kept.append(push(client, "team/app", "v2", [base, b"app two again"], "m2b"))  # moves v2
        client.push_blob("team/app", b"pushed by moorage, never named")
        kept.append(push(client, "team/other", "v1", [base, b"app one"], "o1"))
        gone = push(client, "team/gone", "v1", [base, b"only in gone"], "g1")
        assert client.request("DELETE", f"/v2/team/gone/manifests/{gone.digest}").status_code == 202
    with run_reference_registry(tmp_path / "distribution", root) as server:
        client = Client(server.url, monolithic=False)
        kept.append(push(client, "dist/app", "v1", [base, b"dist one"], "d1"))
        push(client, "dist/app", "v2", [b"dist two"], "d2")
        kept.append(push(client, "dist/app", "v2", [b"dist two again"], "d2b"))
        client.push_blob("dist/app", b"pushed by distribution, never named")
        gone = push(client, "dist/gone", "v1", [b"only in dist gone"], "dg")
        assert client.request("DELETE", f"/v2/dist/gone/manifests/{gone.digest}").status_code == 202
    return root, kept


# --- 1: side by side with the reference ---------------------------------------------------------


def test_moorage_deletes_what_the_reference_deletes_and_each_serves_what_the_other_left(
    tmp_path: Path,
) -> None:
    root, kept = write_tree(tmp_path)
    before = files(root)
    collected: dict[tuple[str, str], Path] = {}
    for flags in ((), ("-m",)):
        name = "".join(flags) or "plain"
        by_reference = tmp_path / f"reference{name}"
        by_moorage = tmp_path / f"moorage{name}"
        shutil.copytree(root, by_reference)
        shutil.copytree(root, by_moorage)
        reference_gc(reference_config(tmp_path / f"ref{name}.yml", by_reference), *flags)
        result = moorage_gc(write_config(tmp_path / f"moorage{name}.yml", by_moorage), *flags)
        assert result.returncode == 0, result.stdout + result.stderr
        by_them, by_us = before - files(by_reference), before - files(by_moorage)
        assert by_them <= by_us, sorted(by_them - by_us)
        # The same blobs, manifests and tag histories; beside them moorage removes only the
        # layer links distribution leaves pointing at what is gone or named by nothing.
        assert {p for p in by_us - by_them if not LAYER_LINK.match(p)} == set()
        assert any("/blobs/" in p for p in by_them)
        if flags:
            assert any("/_manifests/revisions/" in p for p in by_them)
        # every deleted line was printed, and the summary counts them
        swept_blobs = {p for p in by_us if p.endswith("/data")}
        assert len(re.findall(r"^deleted blob ", result.stdout, re.M)) == len(swept_blobs)
        assert f"{len(swept_blobs)} blob" in result.stdout.splitlines()[-1]
        # the emptied repositories are gone from the tree, not only their links
        for gone in ("team/gone", "dist/gone"):
            assert not (by_moorage / V2 / "repositories" / gone).exists()
        assert "removed empty repository dist/gone" in result.stdout
        collected[("reference", name)] = by_reference
        collected[("moorage", name)] = by_moorage

    # After moorage's collection the reference registry serves every kept image from the same
    # root, and after the reference's (without -m) moorage does.
    for name in ("plain", "-m"):
        after_moorage = collected[("moorage", name)]
        with run_reference_registry(tmp_path / f"serve-ref{name}", after_moorage) as s:
            for image in kept:
                served(s.url, image)
            catalog = requests.get(f"{s.url}/v2/_catalog", timeout=HTTP_TIMEOUT).json()
            assert catalog["repositories"] == ["dist/app", "team/app", "team/other"]
    with run_moorage(tmp_path / "serve-moorage", root=collected[("reference", "plain")]) as s:
        for image in kept:
            served(s.url, image)
    fsck = subprocess.run(
        [sys.executable, "-m", "moorage", "fsck", str(tmp_path / "moorage-m.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


# --- 2: what the reference loses ------------------------------------------------------------------


def test_children_of_kept_indexes_and_referrers_of_kept_subjects_survive_delete_untagged(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    config = write_config(tmp_path / "moorage.yml", root)
    with run_moorage(tmp_path / "server", root=root) as server:
        client = Client(server.url)
        amd = push(client, "app", "amd64-build", [b"amd64 layer"], "amd64")
        arm = push(client, "app", "arm64-build", [b"arm64 layer"], "arm64")
        index, index_digest = client.push_index("app", "multi", [amd.manifest, arm.manifest])
        for tag in ("amd64-build", "arm64-build"):  # children reachable by the index alone
            assert client.request("DELETE", f"/v2/app/manifests/{tag}").status_code == 202
        # a signature pushed by digest on the index, and one of the signature (oras-py)
        _, signature = client.push_artifact("app", index, "index signed")
        oras_client = oras.provider.Registry(hostname=server.host, insecure=True)
        subject = oras.oci.Subject.from_manifest(
            oras_client.get_manifest(f"{server.host}/app@{signature}")
        )
        note = tmp_path / "countersignature.txt"
        note.write_text("countersigned\n")
        pushed = oras_client.push(
            target=f"{server.host}/app:countersignature",
            files=[f"{note}:application/vnd.example.note"],
            subject=subject,
            disable_path_validation=True,
            quiet=True,
        )
        countersignature = pushed.headers["Docker-Content-Digest"]
        assert client.request("DELETE", "/v2/app/manifests/countersignature").status_code == 202
        # an image whose tag went, with its own signature: both are garbage
        old = push(client, "app", "old", [b"old layer"], "old")
        _, old_signature = client.push_artifact("app", old.manifest, "old signed")
        assert client.request("DELETE", "/v2/app/manifests/old").status_code == 202

    reference_copy = tmp_path / "reference-copy"
    shutil.copytree(root, reference_copy)
    reference_gc(reference_config(tmp_path / "ref.yml", reference_copy), "-m")
    result = moorage_gc(config, "-m")
    assert result.returncode == 0, result.stdout + result.stderr
    # What the reference deleted: the index's children lost their revisions and layers
    # (distribution #3178), the signature its content.
    revisions = reference_copy / V2 / "repositories" / "app" / "_manifests" / "revisions"
    assert not (revisions / "sha256" / amd.digest.split(":")[1] / "link").exists()
    for lost in (*amd.blobs, signature):
        assert not blob_data(reference_copy, lost).exists()
    removed = set(re.findall(r"^deleted manifest app@(\S+)$", result.stdout, re.M))
    assert removed == {old.digest, old_signature}

    with run_moorage(tmp_path / "after", root=root) as server:
        client = Client(server.url)
        got = client.request("GET", "/v2/app/manifests/multi", headers={"Accept": OCI_INDEX})
        assert got.content == index
        for child in (amd, arm):
            by_digest = client.request(
                "GET", f"/v2/app/manifests/{child.digest}", headers={"Accept": OCI_MANIFEST}
            )
            assert by_digest.content == child.manifest
            for digest, content in child.blobs.items():
                assert client.request("GET", f"/v2/app/blobs/{digest}").content == content
        referrers = client.request("GET", f"/v2/app/referrers/{index_digest}").json()
        assert [m["digest"] for m in referrers["manifests"]] == [signature]
        referrers = client.request("GET", f"/v2/app/referrers/{signature}").json()
        assert [m["digest"] for m in referrers["manifests"]] == [countersignature]
        referrers = client.request("GET", f"/v2/app/referrers/{old.digest}").json()
        assert referrers["manifests"] == []
        assert client.request("GET", f"/v2/app/manifests/{old.digest}").status_code == 404
        # the index's tag goes: on the next collection everything goes, and the repository
        assert client.request("DELETE", "/v2/app/manifests/multi").status_code == 202
    again = moorage_gc(config, "-m")
    assert "removed empty repository app" in again.stdout, again.stdout
    assert not (root / V2 / "repositories" / "app").exists()
    assert not list((root / V2 / "blobs").rglob("data"))


# --- 3: real clients ----------------------------------------------------------------------------


def test_skopeo_push_collect_pull(tmp_path: Path) -> None:
    root = tmp_path / "root"
    config = write_config(tmp_path / "moorage.yml", root)
    shared = {"shared.txt": os.urandom(64 * 1024)}
    keep = make_image(tmp_path / "keep", "v1", [shared, {"keep.txt": b"keep\n"}], seed="keep")
    drop = make_image(tmp_path / "drop", "v1", [shared, {"drop.txt": b"drop\n"}], seed="drop")
    with run_moorage(tmp_path / "server", root=root) as server:
        for image, repo in ((keep, "team/keep"), (drop, "team/drop")):
            skopeo("copy", "--dest-tls-verify=false", image.ref, f"docker://{server.host}/{repo}:v1")
        skopeo("delete", "--tls-verify=false", f"docker://{server.host}/team/drop:v1")
        result = moorage_gc(config)  # while the server runs
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"deleted blob {drop.layer_digests[1]}" in result.stdout
        assert f"deleted blob {keep.layer_digests[0]}" not in result.stdout  # shared
        out = tmp_path / "pulled"
        skopeo(
            "copy",
            "--src-tls-verify=false",
            "--preserve-digests",
            f"docker://{server.host}/team/keep:v1",
            f"oci:{out}:v1",
        )
        for digest in (keep.manifest_digest, keep.config_digest, *keep.layer_digests):
            pulled = out / "blobs" / "sha256" / digest.split(":")[1]
            assert "sha256:" + hashlib.sha256(pulled.read_bytes()).hexdigest() == digest
        failed = skopeo(
            "inspect", "--tls-verify=false", f"docker://{server.host}/team/drop:v1", check=False
        )
        assert failed.returncode != 0


def test_command_line_errors_are_one_line(tmp_path: Path) -> None:
    root = tmp_path / "root"
    config = write_config(tmp_path / "moorage.yml", root)
    lock = root / V2 / "_gc" / "lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as holder:  # as a collection elsewhere holds it
        holder.write("builder-7 pid 4242\n")
        holder.flush()
        fcntl.flock(holder, fcntl.LOCK_EX)
        held = moorage_gc(config)
    assert held.returncode == 1
    assert held.stderr.splitlines() == [
        "moorage garbage-collect: another garbage collection is running on this root "
        "(builder-7 pid 4242)"
    ]
    bad = tmp_path / "bad.yml"
    bad.write_text("version: 0.1\nstorage:\n  filesystem: {}\n  maintenance: {gc: {delay: soon}}\n")
    wrong = moorage_gc(bad)
    assert wrong.returncode == 2
    assert len(wrong.stderr.splitlines()) == 1
    assert wrong.stderr.startswith("moorage garbage-collect: config: storage.maintenance.gc.delay")
    quiet = moorage_gc(config, "-q")
    assert quiet.returncode == 0 and quiet.stdout.splitlines() == [
        "deleted 0 manifests, 0 blobs (0 B), 0 layer links, 0 empty repositories; 0 blobs in use"
    ]


# --- 4: collecting every second while clients push, retag and delete ---------------------------


POOL = [hashlib.sha256(f"pool {n}".encode()).digest() * 512 for n in range(10)]  # 16 KiB each
LIVE = 3  # images each pusher keeps


@dataclass
class Pusher:
    """A client pushing images that share layers with the others' (a HEAD first: a layer the
    registry has is not pushed again, as real clients do), retagging, untagging and deleting
    them. What it was answered success for is what must stay: `acknowledged`."""

    urls: list[str]
    repo: str
    seed: int
    acknowledged: dict[str, Image] = field(default_factory=dict)  # tag -> image
    failures: list[str] = field(default_factory=list)  # retried pushes, and why
    pushes: int = 0
    journal: list[str] = field(default_factory=list)  # what it did: time, step, answer

    def run(self, until: float) -> None:
        rng = random.Random(self.seed)
        http = requests.Session()
        count = 0
        while time.monotonic() < until:
            url = rng.choice(self.urls)
            tags = sorted(self.acknowledged)
            roll = rng.random()
            if tags and roll < 0.15:  # delete an image, every tag on it with it
                image = self.acknowledged[rng.choice(tags)]
                answer = http.delete(f"{url}/v2/{self.repo}/manifests/{image.digest}", timeout=60)
                self.journal.append(f"{time.time():.3f} delete {image.digest} {answer.status_code}")
                assert answer.status_code == 202, answer.text
                for tag in [t for t, i in self.acknowledged.items() if i.digest == image.digest]:
                    del self.acknowledged[tag]
            elif tags and roll < 0.3:  # untag: with delete-untagged its manifest goes next
                tag = rng.choice(tags)
                answer = http.delete(f"{url}/v2/{self.repo}/manifests/{tag}", timeout=60)
                self.journal.append(f"{time.time():.3f} untag {tag} {answer.status_code}")
                assert answer.status_code == 202, answer.text
                del self.acknowledged[tag]
            elif tags and roll < 0.45:  # retag an image already there
                image = self.acknowledged[rng.choice(tags)]
                count += 1
                retagged = Image(self.repo, f"t{count}", image.manifest, image.blobs)
                if self._put_manifest(http, url, retagged):
                    self.acknowledged[retagged.tag] = retagged
            else:
                count += 1
                layers = [rng.choice(POOL), os.urandom(rng.randint(1, 8) * 1024)]
                config = json.dumps({"pusher": self.repo, "n": count}).encode()
                image = self._image(f"t{count}", config, layers)
                for attempt in range(5):
                    if self._push(http, url, image):
                        self.acknowledged[image.tag] = image
                        served(url, image)
                        break
                    self.failures.append(f"attempt {attempt}")
                    url = rng.choice(self.urls)
                self._keep_few(http, url)
            time.sleep(rng.random() * 0.05)

    def _keep_few(self, http: requests.Session, url: str) -> None:
        """Deletes the oldest images beyond LIVE, so that layers of the pool are left named by
        nothing now and then, and collected while other pushes may be about to name them."""
        while len({image.digest for image in self.acknowledged.values()}) > LIVE:
            oldest = next(iter(self.acknowledged.values()))
            answer = http.delete(f"{url}/v2/{self.repo}/manifests/{oldest.digest}", timeout=60)
            self.journal.append(f"{time.time():.3f} delete {oldest.digest} {answer.status_code}")
            assert answer.status_code == 202, answer.text
            for tag in [t for t, i in self.acknowledged.items() if i.digest == oldest.digest]:
                del self.acknowledged[tag]

    def _image(self, tag: str, config: bytes, layers: list[bytes]) -> Image:
        document = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(layer),
                    "size": len(layer),
                }
                for layer in layers
            ],
        }
        blobs = {sha256(b): b for b in [config, *layers]}
        return Image(self.repo, tag, json.dumps(document).encode(), blobs)

    def _push(self, http: requests.Session, url: str, image: Image) -> bool:
        """One push as a client makes it; False when the registry asks for a retry."""
        for digest, content in image.blobs.items():
            head = http.head(f"{url}/v2/{self.repo}/blobs/{digest}", timeout=60)
            if head.status_code == 200:
                continue
            assert head.status_code == 404, head.status_code
            upload = http.post(
                f"{url}/v2/{self.repo}/blobs/uploads/",
                params={"digest": digest},
                data=content,
                timeout=60,
            )
            if upload.status_code == 503:
                self.failures.append(f"upload: {upload.text}")
                return False
            assert upload.status_code == 201, upload.text
        self.pushes += 1
        return self._put_manifest(http, url, image)

    def _put_manifest(self, http: requests.Session, url: str, image: Image) -> bool:
        answer = http.put(
            f"{url}/v2/{self.repo}/manifests/{image.tag}",
            data=image.manifest,
            headers={"Content-Type": OCI_MANIFEST},
            timeout=60,
        )
        step = f"put {image.tag} {image.digest} {answer.status_code}"
        self.journal.append(f"{time.time():.3f} {step}")
        if answer.status_code == 201:
            return True
        codes = [e["code"] for e in answer.json()["errors"]]
        # what a push racing a collection may be answered: the client pushes again
        assert answer.status_code in (400, 503) and codes[0] in (
            "MANIFEST_BLOB_UNKNOWN",
            "UNAVAILABLE",
        ), answer.text
        self.failures.append(f"manifest: {codes[0]}")
        return False


def race(urls: list[str], seconds: float, clients: int = 4) -> list[Pusher]:
    """`clients` pushers on their own threads (and repositories) for `seconds`; fails with the
    first pusher's assertion."""
    pushers = [Pusher(urls, f"race/client{n}", n) for n in range(clients)]
    errors: list[tuple[Pusher, BaseException]] = []

    def work(pusher: Pusher) -> None:
        try:
            pusher.run(time.monotonic() + seconds)
        except BaseException as exc:
            errors.append((pusher, exc))

    threads = [threading.Thread(target=work, args=(p,)) for p in pushers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        pusher, error = errors[0]
        steps = "\n".join(pusher.journal[-30:])
        raise AssertionError(f"{pusher.repo}, last steps:\n{steps}") from error
    return pushers


def collections(servers: list[Server]) -> tuple[int, int]:
    """Scheduled collections done so far, and blobs they deleted, over every log."""
    done = [m for s in servers for m in GC_DONE.findall(s.logs())]
    return len(done), sum(int(blobs) for _, blobs in done)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def swept_and_forgotten(servers: list[Server], blob_gone: Callable[[str], bool]) -> None:
    """An image whose blobs every process has cached, deleted: once collected, no process says
    a blob of it is there, and its emptied repository leaves every catalog."""
    first = Client(servers[0].url)
    image = push(first, "race/forgotten", "v1", [os.urandom(4096)], "forgotten")
    for server in servers:
        for _ in range(8):  # fresh connections: every worker caches
            for digest in image.blobs:
                head = requests.head(
                    f"{server.url}/v2/race/forgotten/blobs/{digest}",
                    headers={"Connection": "close"},
                    timeout=HTTP_TIMEOUT,
                )
                assert head.status_code == 200
    deleted = first.request("DELETE", f"/v2/race/forgotten/manifests/{image.digest}")
    assert deleted.status_code == 202
    wait_for(lambda: all(blob_gone(d) for d in image.blobs), "the collection of the image")
    for server in servers:
        for _ in range(8):
            for digest in image.blobs:
                head = requests.head(
                    f"{server.url}/v2/race/forgotten/blobs/{digest}",
                    headers={"Connection": "close"},
                    timeout=HTTP_TIMEOUT,
                )
                assert head.status_code == 404, (server.host, digest)
        wait_for(
            lambda server=server: "race/forgotten"  # type: ignore[misc]
            not in requests.get(f"{server.url}/v2/_catalog", timeout=HTTP_TIMEOUT).json()[
                "repositories"
            ],
            "the emptied repository to leave the catalog",
        )


def verify_race(pushers: list[Pusher], urls: list[str]) -> None:
    acknowledged = [image for p in pushers for image in p.acknowledged.values()]
    assert sum(p.pushes for p in pushers) > 10 and len(acknowledged) > 5
    for url in urls:
        for image in acknowledged:
            served(url, image)


def gc_section(delay: str) -> dict[str, Any]:
    return {
        "gc": {"enabled": True, "interval": "1s", "delay": delay, "deleteuntagged": True},
    }


def test_collections_every_second_beside_pushes_on_the_filesystem_with_two_workers(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    config = moorage_config(root, 0)
    config["http"]["workers"] = 2
    config["storage"]["cache"] = {"blobdescriptor": "inmemory"}
    config["storage"]["maintenance"] = gc_section("2s")
    config["log"] = {"level": "debug"}
    with run_moorage(tmp_path / "server", config) as server:
        pushers = race([server.url], 20)
        runs, swept = collections([server])
        assert runs >= 10 and swept > 0, (runs, swept)
        verify_race(pushers, [server.url])
        time.sleep(4)  # collections after the pushes keep every acknowledged image
        verify_race(pushers, [server.url])
        swept_and_forgotten([server], lambda digest: not blob_data(root, digest).exists())
    assert "Traceback" not in server.logs()
    (tmp_path / "fsck.yml").write_text(yaml.safe_dump(moorage_config(root, 0)))
    fsck = subprocess.run(
        [sys.executable, "-m", "moorage", "fsck", str(tmp_path / "fsck.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_collections_every_second_beside_pushes_on_s3_with_two_replicas_and_redis(
    tmp_path: Path, s3_store: S3Server, redis_server: RedisServer
) -> None:
    prefix = uuid.uuid4().hex
    with bucket(s3_store, "gc-race") as name:
        config = moorage_config(None, 0, redis={"addr": redis_server.addr, "db": 9})
        config["http"]["secret"] = "one secret for both replicas"
        config["storage"] = {
            "s3": s3_store.params(name, rootdirectory=f"/{prefix}"),
            "delete": {"enabled": True},
            "redirect": {"disable": True},
            "cache": {"blobdescriptor": "redis"},
            "maintenance": gc_section("4s"),
        }
        with contextlib.ExitStack() as stack:
            servers = [
                stack.enter_context(run_moorage(tmp_path / f"replica{n}", config))
                for n in range(2)
            ]
            urls = [s.url for s in servers]
            pushers = race(urls, 20)
            runs, swept = collections(servers)
            assert runs >= 5 and swept > 0, (runs, swept)
            verify_race(pushers, urls)

            def gone(digest: str) -> bool:
                hex_ = digest.split(":")[1]
                key = f"{prefix}/{V2}/blobs/sha256/{hex_[:2]}/{hex_}/data"
                import asyncio

                return not asyncio.run(list_objects(s3_store, name, key))

            swept_and_forgotten(servers, gone)
        for server in servers:
            assert "Traceback" not in server.logs()
