"""The workloads of the issue, each run on both registries in the same run: several rounds,
alternating which registry goes first, one figure per registry per round.

Blob traffic goes through bench/client.py in a process of its own (sendfile out, 1 MiB reads
in); small requests through wrk (GET) and hey (HEAD, which wrk cannot do); skopeo is timed
around its whole command.

The same workloads run on the filesystem driver (WORKLOADS) or on S3 (S3_WORKLOADS: both
registries on one SeaweedFS, each in a bucket of its own), where pulls are measured twice:
redirected to a presigned URL (both registries' default) and proxied through the registry.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tests.integration.notifications_support import endpoint, run_receiver
from tests.servers import S3Server, Server, children

from bench import fixtures
from bench import gc as gc_tree
from bench.fixtures import BlobFile, S3Tree, Tree
from bench.registries import (
    KINDS,
    MOORAGE,
    REFERENCE,
    PeakMemory,
    Root,
    cpu_seconds,
    memory,
    run_registry,
)
from bench.report import (
    Results,
    Target,
    at_least,
    first_at_most,
    moorage_at_most,
    moorage_below,
)
from moorage.ui.pages import CATALOG_PAGE

MIB = 1 << 20
ACCEPT = ", ".join([
    fixtures.DOCKER_MANIFEST,
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
])
BLOB_REPO = "bench/blobs"
MANIFEST_REPO = "bench/manifest"
TAGS_REPO = "bench/tags"


@dataclass(frozen=True)
class Scale:
    blobs: tuple[tuple[str, int], ...]  # (label, size) of the pushed and pulled blobs
    warm_blob: int  # an untimed push of this size first, on every fresh server
    chunk: int  # PATCH size of the chunked push
    pull_clients: tuple[int, ...]
    connections: tuple[int, ...]  # manifest GET/HEAD concurrency
    load_seconds: int  # per wrk/hey run
    notification_pairs: int  # of short loads (with endpoints, without) per round and load
    skopeo_layers: int
    skopeo_layer_size: int
    tags: int
    repos: tuple[int, int]  # catalog sizes: the small one shows whether page time depends on it
    first_page: int  # n of the catalog's first page
    page: int  # n of the full walk
    listing_requests: int  # per round, at most...
    listing_seconds: float  # ...or for this long (at least 3 requests)
    warm_memory: int  # bytes written and deleted before any timing (see fixtures.warm_memory)
    gc_repos: int  # repositories of the garbage collection's root (11 blobs each)


FULL = Scale(
    blobs=(("256MiB", 256 * MIB), ("1GiB", 1024 * MIB)),
    warm_blob=32 * MIB,
    chunk=5 * MIB,
    pull_clients=(1, 8),
    connections=(32, 128),
    load_seconds=5,
    notification_pairs=16,
    skopeo_layers=5,
    skopeo_layer_size=40_000_000,
    tags=5000,
    repos=(1000, 10000),
    first_page=100,
    page=1000,
    listing_requests=300,
    listing_seconds=3.0,
    warm_memory=6 * 1024 * MIB,
    gc_repos=10_000,
)
SMOKE = Scale(
    blobs=(("2MiB", 2 * MIB), ("6MiB", 6 * MIB)),
    warm_blob=MIB,
    chunk=MIB,
    pull_clients=(1, 8),
    connections=(32, 128),
    load_seconds=1,
    notification_pairs=2,
    skopeo_layers=5,
    skopeo_layer_size=20_000,
    tags=50,
    repos=(20, 200),
    first_page=10,
    page=50,
    listing_requests=20,
    listing_seconds=0.3,
    warm_memory=0,
    gc_repos=20,
)
# On S3 every byte also crosses SeaweedFS on the same machine: smaller blobs.
FULL_S3 = replace(FULL, blobs=(("64MiB", 64 * MIB), ("256MiB", 256 * MIB)))
SMOKE_S3 = SMOKE


class Bench:
    """What every workload shares: the scale, the rounds, the fixtures, the results."""

    def __init__(
        self,
        scale: Scale,
        rounds: int,
        workdir: Path,
        results: Results,
        profile: Path | None,
        s3: S3Server | None = None,
    ) -> None:
        self.scale = scale
        self.rounds = rounds
        self.workdir = workdir
        self.results = results
        self.profile = profile
        self.s3 = s3  # S3 mode: both registries on this store, a bucket each
        self.profiles: dict[str, list[Path]] = {}
        self._blobs: list[BlobFile] | None = None
        self._warm: BlobFile | None = None
        self._roots: dict[str, dict[str, Root]] = {}
        self._prefixes = 0

    # -- running --------------------------------------------------------------------------

    def order(self, round_: int) -> tuple[str, ...]:
        """Both registries, the first one alternating from round to round."""
        return KINDS if round_ % 2 == 0 else tuple(reversed(KINDS))

    @contextlib.contextmanager
    def server(
        self,
        kind: str,
        root: Root,
        workload: str,
        redirect: bool = True,
        workers: int | str = "auto",
        secret: str = "",
        proxy: str | None = None,
        sections: dict[str, Any] | None = None,
    ) -> Iterator[Server]:
        profile = None
        if self.profile is not None and kind == MOORAGE:
            files = self.profiles.setdefault(workload, [])
            profile = self.profile / f"profile-{workload}-{len(files)}.txt"
            files.append(profile)
        with run_registry(
            kind, self.workdir / "logs", root, profile, redirect, workers, secret, proxy, sections
        ) as server:
            yield server

    def client(self, **request: Any) -> dict[str, Any]:
        """Runs one bench/client.py operation in a process of its own."""
        done = subprocess.run(
            [sys.executable, "-m", "bench.client", json.dumps(request)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"bench client {request.get('op')} failed:\n{done.stderr}")
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def bucket(self, kind: str) -> str:
        return f"bench-{kind}"

    def fresh_root(self, name: str, kind: str) -> Root:
        """An empty root for `kind`: a new directory, or a new rootdirectory in its bucket."""
        if self.s3 is not None:
            self._prefixes += 1
            self.s3.create_bucket(self.bucket(kind))
            return Root(s3=self.s3, bucket=self.bucket(kind), prefix=f"/{name}-{self._prefixes}")
        root = self.workdir / "roots" / name
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        return Root(path=root)

    def drop_root(self, root: Root) -> None:
        """Frees a root after use (on S3 its objects stay until SeaweedFS stops: deleting
        them would not give the space back before a vacuum)."""
        if root.path is not None:
            shutil.rmtree(root.path)

    def shared_root(self, name: str, write: Callable[[Tree], None]) -> dict[str, Root]:
        """A root both registries serve, made once by `write`: on the filesystem one directory
        for both (read-only workloads), on S3 the same objects written to each one's bucket."""
        if name not in self._roots:
            if self.s3 is None:
                root = self.fresh_root(name, MOORAGE)
                assert root.path is not None
                write(Tree(root.path))
                self._roots[name] = {kind: root for kind in KINDS}
            else:
                roots = {kind: self.fresh_root(name, kind) for kind in KINDS}
                for root in roots.values():
                    tree = S3Tree(root)
                    write(tree)
                    tree.upload()
                self._roots[name] = roots
        return self._roots[name]

    # -- fixtures, made on first use --------------------------------------------------------

    @property
    def blobs(self) -> list[BlobFile]:
        if self._blobs is None:
            directory = self.workdir / "blobs"
            self._blobs = [
                fixtures.blob_file(directory, label, size, seed)
                for seed, (label, size) in enumerate(self.scale.blobs, start=1)
            ]
            self._warm = fixtures.blob_file(directory, "warm", self.scale.warm_blob, 99)
            fixtures.warm_memory(self.workdir, self.scale.warm_memory)
        return self._blobs

    @property
    def warm(self) -> BlobFile:
        self.blobs  # noqa: B018 (made together)
        assert self._warm is not None
        return self._warm

    def read_root(self) -> dict[str, Root]:
        """The root the read workloads share (both registries serve it at once, read-only):
        the blobs to pull, a small image to GET by tag, a repository with many tags."""

        def write(tree: Tree) -> None:
            for blob in [*self.blobs, self.warm]:
                tree.blob(blob.digest, source=blob.path)
                tree.layer_link(BLOB_REPO, blob.digest)
            fixtures.write_image(tree, [MANIFEST_REPO], ["latest"])
            tags = [f"v{i:05d}" for i in range(self.scale.tags)]
            fixtures.write_image(tree, [TAGS_REPO], tags, seed="tags")

        return self.shared_root("read", write)

    def ui_root(self) -> dict[str, Root]:
        """What the web UI's pages are measured on: the catalog's repositories, a repository
        with many tags and a small image to GET by tag (no blobs to pull)."""

        def write(tree: Tree) -> None:
            fixtures.write_image(tree, fixtures.catalog_names(self.scale.repos[1]), ["latest"])
            tags = [f"v{i:05d}" for i in range(self.scale.tags)]
            fixtures.write_image(tree, [TAGS_REPO], tags, seed="tags")
            fixtures.write_image(tree, [MANIFEST_REPO], ["latest"])

        return self.shared_root("ui", write)

    def catalog_root(self, count: int) -> dict[str, Root]:
        def write(tree: Tree) -> None:
            fixtures.write_image(tree, fixtures.catalog_names(count), ["latest"])

        return self.shared_root(f"catalog-{count}", write)


# -- blob pushes ----------------------------------------------------------------------------


def _push(bench: Bench, workload: str, chunk: int, target: Target) -> None:
    metrics = {b.label: bench.results.metric(workload, b.label, "MB/s", True, target)
               for b in bench.blobs}
    for round_ in range(bench.rounds):
        for kind in bench.order(round_):
            root = bench.fresh_root(f"{workload}-{kind}", kind)
            with bench.server(kind, root, workload) as server:
                warm = bench.warm
                bench.client(op="push", base=server.url, repo="bench/warm", file=str(warm.path),
                             digest=warm.digest, chunk=chunk)
                for blob in bench.blobs:
                    out = bench.client(op="push", base=server.url, repo="bench/push",
                                       file=str(blob.path), digest=blob.digest, chunk=chunk)
                    metrics[blob.label].add(kind, out["bytes"] / out["seconds"] / 1e6)
            bench.drop_root(root)


def push_monolithic(bench: Bench) -> None:
    """POST, then PUT ?digest= with the whole blob, on a fresh server and empty root per round
    (so every push stores a new blob)."""
    _push(bench, "push-monolithic", 0, at_least(3))


def push_chunked(bench: Bench) -> None:
    """POST, PATCH after PATCH of 5 MiB with Content-Range, then an empty PUT ?digest=."""
    _push(bench, "push-chunked", bench.scale.chunk, at_least(2.5))


REPLICA_SECRET = "bench-replicas-share-this-secret"
REPLICAS = "two replicas, alternating"


def push_chunked_reconnect(bench: Bench) -> None:
    """The chunked push with every request (the POST, each 5 MiB PATCH, the PUT) on a new
    connection, as clients that open one per request do and as connection pools spread
    concurrent layer pushes: on moorage with one worker and with `workers: auto` (the kernel
    hands each connection to either worker, so the session moves between them), both against
    one reference process; and on two replicas of each registry serving one root (moorage: one
    worker each) with one http.secret, the requests alternating between them. For the largest
    blob, also the time of the finishing PUT, where a registry without the running digest
    reads the stored bytes back."""
    workload = "push-chunked-reconnect"
    chunk = bench.scale.chunk
    single = (("one worker", 1), ("workers: auto", "auto"))
    setups = [*(label for label, _ in single), REPLICAS]
    largest = bench.blobs[-1]
    metrics = {
        (blob.label, setup): bench.results.metric(
            workload, f"{blob.label}, {setup}", "MB/s", True, at_least(2.5)
        )
        for blob in bench.blobs
        for setup in setups
    }
    puts = {
        setup: bench.results.metric(
            workload, f"{largest.label}, {setup}: the finishing PUT", "ms", False
        )
        for setup in setups
    }

    def push(servers: list[Server], repo: str) -> dict[str, dict[str, Any]]:
        """Each blob's push, after an untimed one, requests going to `servers` in turn."""
        first, others = servers[0].url, [server.url for server in servers[1:]]
        warm = bench.warm
        bench.client(op="push", base=first, repo="bench/warm", file=str(warm.path),
                     digest=warm.digest, chunk=chunk, reconnect=True, others=others)
        return {
            blob.label: bench.client(op="push", base=first, repo=repo, file=str(blob.path),
                                     digest=blob.digest, chunk=chunk, reconnect=True,
                                     others=others)
            for blob in bench.blobs
        }

    def record(kind: str, setup: str, pushes: dict[str, dict[str, Any]]) -> None:
        for label, out in pushes.items():
            metrics[(label, setup)].add(kind, out["bytes"] / out["seconds"] / 1e6)
        puts[setup].add(kind, pushes[largest.label]["put_seconds"] * 1000)

    for round_ in range(bench.rounds):
        for kind in bench.order(round_):
            # moorage with each `workers`; the reference, one process, stands against both.
            for setup, workers in single if kind == MOORAGE else single[:1]:
                root = bench.fresh_root(f"{workload}-{kind}", kind)
                with bench.server(kind, root, workload, workers=workers) as server:
                    pushes = push([server], "bench/push")
                for each in [setup] if kind == MOORAGE else [label for label, _ in single]:
                    record(kind, each, pushes)
                bench.drop_root(root)
            root = bench.fresh_root(f"{workload}-{kind}-replicas", kind)
            with (
                bench.server(kind, root, workload, workers=1, secret=REPLICA_SECRET) as first,
                bench.server(kind, root, workload, workers=1, secret=REPLICA_SECRET) as second,
            ):
                record(kind, REPLICAS, push([first, second], "bench/replicas"))
            bench.drop_root(root)


# -- blob pulls -----------------------------------------------------------------------------


@contextlib.contextmanager
def both(
    bench: Bench, roots: dict[str, Root], workload: str, redirect: bool = True
) -> Iterator[dict[str, Server]]:
    with bench.server(MOORAGE, roots[MOORAGE], workload, redirect) as moorage, \
            bench.server(REFERENCE, roots[REFERENCE], workload, redirect) as reference:
        yield {MOORAGE: moorage, REFERENCE: reference}


def _pull(bench: Bench, workload: str, redirect: bool | None, target: Target | None) -> None:
    """GET of a whole blob by 1 and by 8 concurrent clients; MB/s summed over the clients.
    `redirect` (S3): True, the registries redirect and the client follows to the presigned
    URL; False, they proxy the bytes; None (filesystem): they serve them."""
    metrics = {
        (blob.label, n): bench.results.metric(
            workload, f"{blob.label}, {n} client{'s' if n > 1 else ''}", "MB/s", True, target
        )
        for blob in bench.blobs
        for n in bench.scale.pull_clients
    }
    redirects = None
    if redirect:  # what the registry itself does when it redirects: the 307 alone
        redirects = bench.results.metric(
            workload, "GET answered by a 307 (not followed), 32 connections", "req/s")
    follow = bool(redirect)
    with both(bench, bench.read_root(), workload, redirect is not False) as servers:
        for server in servers.values():  # untimed: first requests, the blob's pages
            bench.client(op="pull", base=server.url, repo=BLOB_REPO, digest=bench.warm.digest,
                         size=bench.warm.size, clients=2, redirect=follow)
        for round_ in range(bench.rounds):
            for kind in bench.order(round_):
                for blob in bench.blobs:
                    for n in bench.scale.pull_clients:
                        out = bench.client(op="pull", base=servers[kind].url, repo=BLOB_REPO,
                                           digest=blob.digest, size=blob.size, clients=n,
                                           redirect=follow)
                        metrics[(blob.label, n)].add(kind, out["bytes"] / out["seconds"] / 1e6)
                if redirects is not None:
                    url = f"{servers[kind].url}/v2/{BLOB_REPO}/blobs/{bench.blobs[-1].digest}"
                    redirects.add(kind, wrk_get(url, 32, bench.scale.load_seconds))


def pull(bench: Bench) -> None:
    """GET of a whole blob by 1 and by 8 concurrent clients; MB/s summed over the clients."""
    _pull(bench, "pull", None, at_least(1.1))


def pull_redirect(bench: Bench) -> None:
    """S3: the registry answers 307 to a presigned URL of the store, the client follows it;
    the bytes come from SeaweedFS, so the ratio shows the cost of the redirect alone."""
    _pull(bench, "pull-redirect", True, None)


def pull_proxied(bench: Bench) -> None:
    """S3 with `storage.redirect.disable: true` on both: the registry streams the object."""
    _pull(bench, "pull-proxied", False, at_least(1.1))


# -- manifests ------------------------------------------------------------------------------


def _requests_per_second(output: str, tool: str) -> float:
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None:
        raise RuntimeError(f"{tool}: no Requests/sec in its output:\n{output}")
    return float(match.group(1))


def wrk_get(url: str, connections: int, seconds: int) -> float:
    return _wrk(url, connections, seconds)[0]


def _wrk(url: str, connections: int, seconds: int) -> tuple[float, int]:
    """Requests a second, and requests made."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-H", f"Accept: {ACCEPT}", url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    for problem in ("Non-2xx or 3xx responses", "Socket errors"):
        if problem in output:
            raise RuntimeError(f"wrk against {url}: {problem}:\n{output}")
    made = re.search(r"(\d+) requests in", output)
    if made is None:
        raise RuntimeError(f"wrk: no request count in its output:\n{output}")
    return _requests_per_second(output, "wrk"), int(made.group(1))


def hey_head(url: str, connections: int, seconds: int) -> float:
    command = ["hey", "-z", f"{seconds}s", "-c", str(connections), "-m", "HEAD",
               "-H", f"Accept: {ACCEPT}", url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    statuses = re.findall(r"\[(\d+)\]\s+\d+ responses", output)
    if not statuses or set(statuses) != {"200"} or "Error distribution" in output:
        raise RuntimeError(f"hey against {url}: not only 200s:\n{output}")
    return _requests_per_second(output, "hey")


def manifest(bench: Bench) -> None:
    """GET (wrk) and HEAD (hey) of a manifest by tag at 32 and 128 connections."""
    seconds = bench.scale.load_seconds
    runs: list[tuple[str, int, Callable[[str, int, int], float]]] = [
        (method, n, tool)
        for n in bench.scale.connections
        for method, tool in (("GET", wrk_get), ("HEAD", hey_head))
    ]
    metrics = {
        (method, n): bench.results.metric(
            "manifest", f"{method} by tag, {n} connections", "req/s", True, at_least(10)
        )
        for method, n, _ in runs
    }
    with both(bench, bench.read_root(), "manifest") as servers:
        urls = {k: f"{s.url}/v2/{MANIFEST_REPO}/manifests/latest" for k, s in servers.items()}
        for url in urls.values():  # untimed warm-up
            wrk_get(url, 32, 1)
        for round_ in range(bench.rounds):
            for kind in bench.order(round_):
                for method, n, tool in runs:
                    metrics[(method, n)].add(kind, tool(urls[kind], n, seconds))


def _worker_cpu(pid: int) -> float:
    """CPU seconds the server's workers have used (its processes at nice 0: the notifier runs
    below them). On a machine shared with other work this says more about the request path's
    cost than req/s, which the other work's share moves."""
    total = 0
    for each in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[16]) == 0:  # nice
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


NOTIFICATION_SECONDS = 1  # seconds of each of the notifications workload's short loads


def notifications(bench: Bench) -> None:
    """The manifest workload on moorage with two notification endpoints (both on a local
    receiver) against the same moorage without any: what spooling a pull event per request
    costs the request path. Both columns are moorage: "moorage" with the endpoints, "reference"
    without. For each load, a round starts both servers afresh and runs notification_pairs
    pairs of short loads, one server's right after the other's (which one first alternates);
    the server not under load is stopped (SIGSTOP, every process of it), so each runs alone,
    and the notifier delivers only while its own server is under load, as it would in one
    long load. The ratio is the median of the pairs' ratios: on a shared machine, what its
    speed does from one second to the next is larger than the difference measured, and pairs
    a second apart, many of them, leave it out. Delivery runs at a lower priority and lags
    under the load; how many events it had delivered by the end of each round is in the
    JSON's meta."""
    seconds = min(bench.scale.load_seconds, NOTIFICATION_SECONDS)
    runs: list[tuple[str, int, Callable[[str, int, int], float]]] = [
        (method, n, tool)
        for n in bench.scale.connections
        for method, tool in (("GET", wrk_get), ("HEAD", hey_head))
    ]
    metrics = {
        (method, n): bench.results.metric(
            "notifications",
            f"{method} by tag, {n} connections: 2 endpoints (m) / none (r)",
            "req/s",
            True,
            at_least(0.9),
            paired=True,
        )
        for method, n, _ in runs
    }
    cpu = {
        (method, n): bench.results.metric(
            "notifications",
            f"{method} by tag, {n} connections: workers' CPU per request, 2 endpoints / none",
            "us",
            False,
            paired=True,
        )
        for method, n, _ in runs
    }
    delivery: list[dict[str, float]] = bench.results.meta.setdefault("notifications", [])
    root = bench.read_root()[MOORAGE]
    spool = bench.workdir / "notifications-spool"
    with run_receiver(keep=False) as receiver:
        sections = {"notifications": {
            "endpoints": [endpoint("one", receiver, "/one"), endpoint("two", receiver, "/two")],
            "spool": {"directory": str(spool)},
        }}
        for _round in range(bench.rounds):
            for method, n, tool in runs:
                shutil.rmtree(spool, ignore_errors=True)
                with contextlib.ExitStack() as stack:
                    servers = {
                        kind: stack.enter_context(
                            bench.server(MOORAGE, root, "notifications", sections=extra)
                        )
                        for kind, extra in ((MOORAGE, sections), (REFERENCE, None))
                    }
                    urls = {
                        kind: f"{server.url}/v2/{MANIFEST_REPO}/manifests/latest"
                        for kind, server in servers.items()
                    }
                    for kind in servers:  # untimed warm-up, each alone
                        with _alone(servers, kind):
                            wrk_get(urls[kind], 32, 1)
                    made = delivered = 0
                    for pair in range(bench.scale.notification_pairs):
                        for kind in bench.order(pair):
                            with _alone(servers, kind):
                                pid = servers[kind].process.pid
                                before, used = receiver.counted, _worker_cpu(pid)
                                rate = tool(urls[kind], n, seconds)
                                used = _worker_cpu(pid) - used
                            metrics[(method, n)].add(kind, rate)
                            cpu[(method, n)].add(kind, used / (rate * seconds) * 1e6)
                            if kind == MOORAGE:
                                made += int(rate * seconds) * 2
                                delivered += receiver.counted - before
                    if made:  # how far delivery kept up
                        delivery.append({"made": made, "delivered": delivered})
                shutil.rmtree(spool, ignore_errors=True)


@contextlib.contextmanager
def _alone(servers: dict[str, Server], kind: str) -> Iterator[None]:
    """The other servers stopped (every process of each) while `kind`'s runs."""
    stopped = [server for other, server in servers.items() if other != kind]
    for server in stopped:
        _signal(server, signal.SIGSTOP)
    try:
        yield
    finally:
        for server in stopped:
            _signal(server, signal.SIGCONT)


def _signal(server: Server, number: int) -> None:
    """Sends the signal to the server's processes, its supervisor first when stopping, last
    when continuing (so that it never runs while its workers are stopped)."""
    pids = [server.process.pid, *children(server.process.pid)]
    for pid in pids if number == signal.SIGSTOP else reversed(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)


# -- a whole image with skopeo --------------------------------------------------------------


def skopeo(bench: Bench) -> None:
    """`skopeo copy` of an OCI layout (5 gzip layers) to the registry, then back to a fresh
    layout; MB/s of the image's blobs over the command's whole wall time."""
    scale = bench.scale
    layout = bench.workdir / "oci-layout"
    if layout.exists():
        shutil.rmtree(layout)
    image, total = fixtures.oci_layout(layout, scale.skopeo_layers, scale.skopeo_layer_size)
    megabytes = total / 1e6
    name = f"{scale.skopeo_layers} layers, {megabytes:.3g} MB"
    push_metric = bench.results.metric("skopeo", f"push {name}", "MB/s")
    pull_metric = bench.results.metric("skopeo", f"pull {name}", "MB/s")
    for round_ in range(bench.rounds):
        for kind in bench.order(round_):
            root = bench.fresh_root(f"skopeo-{kind}", kind)
            pulled = bench.workdir / f"skopeo-pulled-{kind}"
            with bench.server(kind, root, "skopeo") as server:
                remote = f"docker://{server.host}/bench/skopeo:latest"
                push_metric.add(kind, megabytes / _timed_skopeo(
                    "--dest-tls-verify=false", image.ref, remote))
                pull_metric.add(kind, megabytes / _timed_skopeo(
                    "--src-tls-verify=false", remote, f"oci:{pulled}:bench"))
            shutil.rmtree(pulled, ignore_errors=True)
            bench.drop_root(root)


def _timed_skopeo(tls: str, source: str, destination: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        ["skopeo", "copy", "--quiet", "--retry-times", "0", tls, source, destination],
        capture_output=True, text=True, check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"skopeo copy {source} {destination}:\n{done.stderr}")
    return seconds


# -- listings -------------------------------------------------------------------------------


def _median_rate(bench: Bench, server: Server, path: str, cold: bool = False) -> float:
    """Requests per second of one client sending `path` again and again: 1 / median latency
    (`cold`: the very first request only)."""
    scale = bench.scale
    out = bench.client(
        op="latencies", base=server.url, path=path, accept="",
        min_requests=1 if cold else 3,
        max_requests=1 if cold else scale.listing_requests,
        max_seconds=0 if cold else scale.listing_seconds,
    )
    latencies: list[float] = sorted(out["latencies"])
    return 1 / latencies[len(latencies) // 2]


def tags(bench: Bench) -> None:
    """`/v2/<name>/tags/list` of a repository with 5,000 tags, one client."""
    metric = bench.results.metric(
        "tags", f"list of {bench.scale.tags:,} tags", "req/s", True, at_least(5)
    )
    path = f"/v2/{TAGS_REPO}/tags/list"
    with both(bench, bench.read_root(), "tags") as servers:
        for server in servers.values():  # untimed warm-up
            _median_rate(bench, server, path, cold=True)
        for round_ in range(bench.rounds):
            for kind in bench.order(round_):
                metric.add(kind, _median_rate(bench, servers[kind], path))


def catalog(bench: Bench) -> None:
    """`/v2/_catalog`: the first page (cold, right after start, and warm) and a full walk with
    n=1000 at 10,000 repositories; the first page again at 1,000 repositories, to show whether
    a page's time depends on the registry's size."""
    scale = bench.scale
    small, large = scale.repos
    first = f"/v2/_catalog?n={scale.first_page}"
    results = bench.results
    cold = results.metric("catalog", f"first page n={scale.first_page}, {large:,} repos, "
                          "first request after start", "req/s")
    page_large = results.metric(
        "catalog", f"first page n={scale.first_page}, {large:,} repos", "req/s", True,
        at_least(5))
    walk = results.metric(
        "catalog", f"full walk n={scale.page}, {large:,} repos", "repos/s", True, at_least(5))
    page_small = results.metric("catalog", f"first page n={scale.first_page}, {small:,} repos",
                                "req/s")
    dependence = results.metric(
        "catalog", f"page time at {large:,} / at {small:,} repos", "x", False,
        moorage_at_most(1.5, "x"))
    large_roots, small_roots = bench.catalog_root(large), bench.catalog_root(small)
    for round_ in range(bench.rounds):
        for kind in bench.order(round_):
            with bench.server(kind, large_roots[kind], "catalog") as server:
                cold.add(kind, _median_rate(bench, server, first, cold=True))
                page_large.add(kind, _median_rate(bench, server, first))
                out = bench.client(op="walk", base=server.url, path=f"/v2/_catalog?n={scale.page}",
                                   max_walks=5, max_seconds=scale.listing_seconds)
                if out["items"] != large:
                    raise RuntimeError(f"{kind}: the catalog walk listed {out['items']} of {large}")
                walk.add(kind, large / sorted(out["walks"])[len(out["walks"]) // 2])
            with bench.server(kind, small_roots[kind], "catalog") as server:
                _median_rate(bench, server, first, cold=True)
                page_small.add(kind, _median_rate(bench, server, first))
            dependence.add(kind, page_small.samples[kind][-1] / page_large.samples[kind][-1])


# -- the web UI ---------------------------------------------------------------------------

UI_ON, UI_OFF = "ui enabled", "ui disabled"
UI_PAGE, API = "ui page", "api"
CATALOG_ROWS = CATALOG_PAGE
PAGE_BUDGET_MS = 100.0  # a page's server time at the largest sizes: a click answered at once


def _median_ms(bench: Bench, server: Server, path: str) -> float:
    return 1000 / _median_rate(bench, server, path)


def ui(bench: Bench) -> None:
    """The web UI (moorage only): the manifest GET with the UI enabled and disabled (the pages
    must cost the API nothing), and each page's time against the API request that lists the
    same things: the catalog at 10,000 repositories, a repository with 5,000 tags (by push
    time and by version), a search as it is typed, a manifest."""
    scale = bench.scale
    large = scale.repos[1]
    results = bench.results
    manifest_get = results.metric(
        "ui", f"manifest GET by tag, {scale.connections[0]} connections", "req/s", True,
        kinds=(UI_ON, UI_OFF))
    # the steadier figure on a shared machine: what a request costs the server, whatever else
    # runs beside it
    manifest_cpu = results.metric(
        "ui", f"server CPU per manifest GET, {scale.connections[0]} connections", "µs", False,
        Target("ratio <= 1.05", lambda m: m.ratio() is not None and m.ratio() <= 1.05),
        kinds=(UI_ON, UI_OFF))
    budget = first_at_most(PAGE_BUDGET_MS, "ms", UI_PAGE)
    pages = [
        (f"catalog page ({CATALOG_ROWS} with sizes, tags), {large:,} repos",
         "/ui/", f"/v2/_catalog?n={CATALOG_ROWS}"),
        (f"catalog search as typed, {large:,} repos",
         f"/ui/?q=repo{large // 2:05d}&fragment=1", f"/v2/_catalog?n={CATALOG_ROWS}"),
        (f"tags page by push time, {scale.tags:,} tags", f"/ui/r/{TAGS_REPO}",
         f"/v2/{TAGS_REPO}/tags/list"),
        (f"tags page by version, {scale.tags:,} tags", f"/ui/r/{TAGS_REPO}?sort=name",
         f"/v2/{TAGS_REPO}/tags/list"),
        ("manifest page (config, layers, referrers)", f"/ui/r/{MANIFEST_REPO}/-/manifest/latest",
         f"/v2/{MANIFEST_REPO}/manifests/latest"),
    ]
    page_metrics = [
        (results.metric("ui", name, "ms", False, budget, kinds=(UI_PAGE, API)), page, api)
        for name, page, api in pages
    ]
    first_view = results.metric(
        "ui", f"tags page by push time, {scale.tags:,} tags, first view (every push time read)",
        "ms", False, budget, kinds=(UI_PAGE, API))
    roots = bench.ui_root()
    for round_ in range(bench.rounds):
        settings = (True, False) if round_ % 2 == 0 else (False, True)
        for enabled in settings:
            variant = None if enabled else {"ui": {"enabled": False}}
            with bench.server(MOORAGE, roots[MOORAGE], "ui", sections=variant) as server:
                url = f"{server.url}/v2/{MANIFEST_REPO}/manifests/latest"
                wrk_get(url, scale.connections[0], 1)  # untimed warm-up
                used = cpu_seconds(server.process.pid)
                rate, made = _wrk(url, scale.connections[0], scale.load_seconds)
                used = cpu_seconds(server.process.pid) - used
                setup = UI_ON if enabled else UI_OFF
                manifest_get.add(setup, rate)
                manifest_cpu.add(setup, used / made * 1e6)
                if not enabled:
                    continue
                # the repository's first view by push time reads every tag's (a stat each);
                # later ones use what was read, read again in the background (ui/pages.py)
                _median_rate(bench, server, pages[3][1], cold=True)  # templates, summaries
                page, api = pages[2][1], pages[2][2]
                first_view.add(UI_PAGE, 1000 / _median_rate(bench, server, page, cold=True))
                first_view.add(API, _median_ms(bench, server, api))
                for metric, page, api in page_metrics:
                    _median_rate(bench, server, page, cold=True)  # untimed warm-up
                    _median_rate(bench, server, api, cold=True)
                    metric.add(UI_PAGE, _median_ms(bench, server, page))
                    metric.add(API, _median_ms(bench, server, api))

# -- pull-through cache ---------------------------------------------------------------------


def _upstream_gets(upstream: Server, digest: str) -> int:
    """The blob GETs the upstream (the reference registry) answered, from its access log."""
    line = re.compile(rf'"GET /v2/{BLOB_REPO}/blobs/{re.escape(digest)} HTTP/[0-9.]+" 200 ')
    return len(line.findall(upstream.logs()))


def proxy(bench: Bench) -> None:
    """Both registries as pull-through caches (distribution's `proxy.remoteurl`) of one
    upstream, the reference registry serving the read root, each cache on a fresh root per
    round: a blob's first pull by 1 client (fetched upstream, stored and streamed at once), its
    cached pulls by 1 and 8 clients, and the first pull of a blob by 8 clients at once (MB/s
    summed, and how many times the upstream was asked for it); peak memory over first pulls."""
    results = bench.results
    scale = bench.scale
    first = {b.label: results.metric("proxy", f"first pull {b.label}, 1 client", "MB/s")
             for b in bench.blobs}
    cached = {
        (b.label, n): results.metric(
            "proxy", f"cached pull {b.label}, {n} client{'s' if n > 1 else ''}", "MB/s")
        for b in bench.blobs
        for n in scale.pull_clients
    }
    crowd = max(scale.pull_clients)
    together = {b.label: results.metric("proxy", f"first pull {b.label}, {crowd} clients at once",
                                        "MB/s") for b in bench.blobs}
    fetches = {b.label: results.metric(
        "proxy", f"upstream GETs of {b.label} for {crowd} clients at once", "GETs", False)
        for b in bench.blobs}
    peak = results.metric("proxy", "peak Pss over the first pulls", "MB", False)
    upstream_root = bench.read_root()[REFERENCE]
    with run_registry(REFERENCE, bench.workdir / "upstream", upstream_root) as upstream:
        for round_ in range(bench.rounds):
            for kind in bench.order(round_):
                root = bench.fresh_root(f"proxy-{kind}", kind)
                with bench.server(kind, root, "proxy", proxy=upstream.url) as server:
                    bench.client(op="pull", base=server.url, repo=BLOB_REPO,  # untimed
                                 digest=bench.warm.digest, size=bench.warm.size, clients=1)
                    with PeakMemory(server.process.pid) as peaked:
                        for blob in bench.blobs:
                            out = bench.client(op="pull", base=server.url, repo=BLOB_REPO,
                                               digest=blob.digest, size=blob.size, clients=1)
                            first[blob.label].add(kind, out["bytes"] / out["seconds"] / 1e6)
                    peak.add(kind, peaked.peak)
                    for blob in bench.blobs:
                        for n in scale.pull_clients:
                            out = bench.client(op="pull", base=server.url, repo=BLOB_REPO,
                                               digest=blob.digest, size=blob.size, clients=n)
                            cached[(blob.label, n)].add(kind, out["bytes"] / out["seconds"] / 1e6)
                bench.drop_root(root)
                root = bench.fresh_root(f"proxy-{kind}", kind)
                with bench.server(kind, root, "proxy", proxy=upstream.url) as server:
                    bench.client(op="pull", base=server.url, repo=BLOB_REPO,  # untimed
                                 digest=bench.warm.digest, size=bench.warm.size, clients=1)
                    for blob in bench.blobs:
                        before = _upstream_gets(upstream, blob.digest)
                        out = bench.client(op="pull", base=server.url, repo=BLOB_REPO,
                                           digest=blob.digest, size=blob.size, clients=crowd)
                        together[blob.label].add(kind, out["bytes"] / out["seconds"] / 1e6)
                        fetches[blob.label].add(kind, _upstream_gets(upstream, blob.digest)
                                                - before)
                bench.drop_root(root)


# -- memory ---------------------------------------------------------------------------------


def rss(bench: Bench) -> None:
    """Peak memory of the server (Pss summed over its processes: registries.memory) over a push
    (monolithic and chunked) and a pull (1 and 8 clients) of one blob, on a server started
    for that blob alone."""
    results = bench.results
    idle = results.metric("rss", "after start (Pss)", "MB", False)
    peaks = {
        blob.label: results.metric(
            "rss", f"peak Pss, {blob.label} push+pull", "MB", False,
            moorage_below(150, "MB") if blob is bench.blobs[-1] else None)
        for blob in bench.blobs
    }
    smallest, largest = bench.blobs[0], bench.blobs[-1]
    growth = results.metric("rss", f"peak at {largest.label} / at {smallest.label}", "x", False,
                            moorage_at_most(1.2, "x"))
    for round_ in range(bench.rounds):
        for kind in bench.order(round_):
            for blob in bench.blobs:
                root = bench.fresh_root(f"rss-{kind}", kind)
                # On S3 with the blob proxied: the registry streams every byte both ways.
                with bench.server(kind, root, "rss", redirect=False) as server:
                    pid = server.process.pid
                    if blob is smallest:
                        idle.add(kind, memory(pid))
                    pushes = (("bench/mono", 0), ("bench/chunked", bench.scale.chunk))
                    with PeakMemory(pid) as peak:
                        for repo, chunk in pushes:
                            bench.client(op="push", base=server.url, repo=repo,
                                         file=str(blob.path), digest=blob.digest, chunk=chunk)
                        for n in bench.scale.pull_clients:
                            bench.client(op="pull", base=server.url, repo="bench/mono",
                                         digest=blob.digest, size=blob.size, clients=n)
                    peaks[blob.label].add(kind, peak.peak)
                bench.drop_root(root)
            growth.add(kind, peaks[largest.label].samples[kind][-1]
                       / peaks[smallest.label].samples[kind][-1])


# -- garbage collection -----------------------------------------------------------------------


def gc(bench: Bench) -> None:
    """`garbage-collect` (without -m) of one root by both registries, each on a fresh copy of
    it (bench/gc.py): blobs examined per second over the whole command, its CPU time and peak
    memory; and the peak on a root a tenth the size, to show whether memory grows with the
    registry. Both must delete exactly the garbage."""
    scale, results = bench.scale, bench.results
    directory = bench.workdir / "gc"
    large = gc_tree.write_tree(directory / "tree", scale.gc_repos)
    label = f"{large.repositories:,} repos, {large.blobs:,} blobs ({large.garbage:,} garbage)"
    speed = results.metric("gc", f"collection of {label}", "blobs/s", True, at_least(5))
    seconds = results.metric("gc", "time", "s", False)
    cpu = results.metric("gc", "CPU time (user + system)", "s", False)
    peak = results.metric("gc", "peak memory (RSS)", "MB", False)
    for round_ in range(bench.rounds):
        for kind in bench.order(round_):
            root = gc_tree.copy_tree(large, directory / "copy")
            run = gc_tree.collect(kind, root, directory)
            deleted = gc_tree.deleted_blobs(root, large)
            if deleted != large.garbage:
                raise RuntimeError(f"{kind} deleted {deleted} blobs, not {large.garbage}")
            speed.add(kind, large.blobs / run.seconds)
            seconds.add(kind, run.seconds)
            cpu.add(kind, run.cpu)
            peak.add(kind, run.peak_mb)
    small = gc_tree.write_tree(directory / "small", max(scale.gc_repos // 10, 2))
    growth = results.metric(
        "gc", f"peak memory at {large.repositories:,} / at {small.repositories:,} repos", "x",
        False, moorage_at_most(1.5, "x"))
    for kind in KINDS:
        run = gc_tree.collect(kind, gc_tree.copy_tree(small, directory / "copy"), directory)
        growth.add(kind, peak.median(kind) / run.peak_mb)
    shutil.rmtree(directory)


WORKLOADS: dict[str, Callable[[Bench], None]] = {
    "push-monolithic": push_monolithic,
    "push-chunked": push_chunked,
    "push-chunked-reconnect": push_chunked_reconnect,
    "pull": pull,
    "manifest": manifest,
    "notifications": notifications,
    "skopeo": skopeo,
    "tags": tags,
    "catalog": catalog,
    "rss": rss,
    "ui": ui,
    "proxy": proxy,
    "gc": gc,
}
S3_WORKLOADS: dict[str, Callable[[Bench], None]] = {
    "push-monolithic": push_monolithic,
    "push-chunked": push_chunked,
    "push-chunked-reconnect": push_chunked_reconnect,
    "pull-redirect": pull_redirect,
    "pull-proxied": pull_proxied,
    "manifest": manifest,
    "tags": tags,
    "rss": rss,
}
