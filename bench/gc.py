"""The garbage collection workload: `moorage garbage-collect` against the reference's
`docker-registry garbage-collect`, each on a copy of one registry root, without `-m` (the mode in
which both delete the same blobs).

The root is written directly in distribution's layout, as a registry of CI pushes leaves it:
in every repository two tagged images and one whose tag moved on (each a config, a layer of its
own and one of 100 base layers shared across repositories) and two blobs pushed and never named.
At 10,000 repositories that is 110,100 blobs, 20,000 of them garbage; every file is dated two
days back, so moorage's `delay` (1h) spares nothing. The copies are hard links of the pristine
tree (neither collector writes a file in place), synced before each run. Both collectors are
timed around the whole command (start-up included) with their CPU time and peak memory (the
kernel's count for that process); the run over a tree ten times smaller shows whether memory
grows with the registry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.fixtures import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, catalog_names
from bench.registries import MOORAGE

V2 = "docker/registry/v2"
BASE_LAYERS = 100
AGE = 2 * 86400  # seconds: how old every file of the tree is made


@dataclass(frozen=True)
class Tree:
    root: Path
    repositories: int
    blobs: int
    garbage: int  # blobs neither collector may keep


class Writer:
    """Writes files of the layout with as few system calls as it takes: directories made once,
    each file opened, written, dated and closed."""

    def __init__(self, root: Path) -> None:
        self.v2 = f"{root}/{V2}"
        self.made: set[str] = set()
        self.when = time.time() - AGE

    def file(self, path: str, content: bytes) -> None:
        directory = path.rpartition("/")[0]
        if directory not in self.made:
            os.makedirs(directory, exist_ok=True)
            self.made.add(directory)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, content)
            os.utime(fd, (self.when, self.when))
        finally:
            os.close(fd)

    def blob(self, content: bytes) -> str:
        hex_ = hashlib.sha256(content).hexdigest()
        self.file(f"{self.v2}/blobs/sha256/{hex_[:2]}/{hex_}/data", content)
        return f"sha256:{hex_}"

    def link(self, repo: str, relative: str, digest: str) -> None:
        self.file(f"{self.v2}/repositories/{repo}/{relative}/link", digest.encode())

    def layer(self, repo: str, digest: str) -> None:
        self.link(repo, f"_layers/sha256/{digest[7:]}", digest)

    def image(self, repo: str, seed: str, base: tuple[bytes, str]) -> str:
        config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
        own = f"layer of {seed}\n".encode() * 4
        config_digest, own_digest = self.blob(config), self.blob(own)
        for digest in (config_digest, own_digest, base[1]):
            self.layer(repo, digest)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": {"mediaType": DOCKER_CONFIG, "size": len(config),
                           "digest": config_digest},
                "layers": [
                    {"mediaType": DOCKER_LAYER, "size": len(base[0]), "digest": base[1]},
                    {"mediaType": DOCKER_LAYER, "size": len(own), "digest": own_digest},
                ],
            },
            indent=3,
        ).encode()
        digest = self.blob(manifest)
        self.link(repo, f"_manifests/revisions/sha256/{digest[7:]}", digest)
        return digest

    def tag(self, repo: str, tag: str, digest: str) -> None:
        self.link(repo, f"_manifests/tags/{tag}/current", digest)
        self.link(repo, f"_manifests/tags/{tag}/index/sha256/{digest[7:]}", digest)


def write_tree(root: Path, repositories: int) -> Tree:
    if root.exists():
        shutil.rmtree(root)
    writer = Writer(root)
    bases = []
    for n in range(min(BASE_LAYERS, repositories)):
        content = f"base layer {n}\n".encode() * 64
        bases.append((content, writer.blob(content)))
    for i, repo in enumerate(catalog_names(repositories)):
        base = bases[i % len(bases)]
        old = writer.image(repo, f"{repo} 1", base)
        writer.tag(repo, "stable", writer.image(repo, f"{repo} 2", base))
        writer.tag(repo, "latest", old)
        writer.tag(repo, "latest", writer.image(repo, f"{repo} 3", base))  # the tag moves on
        for k in range(2):
            writer.layer(repo, writer.blob(f"never named {repo} {k}\n".encode()))
    return Tree(root, repositories, len(bases) + 11 * repositories, 2 * repositories)


def copy_tree(tree: Tree, destination: Path) -> Path:
    """A hard-linked copy of the tree, synced to disk."""
    if destination.exists():
        shutil.rmtree(destination)
    subprocess.run(["cp", "-al", str(tree.root), str(destination)], check=True)
    os.sync()
    return destination


@dataclass(frozen=True)
class Run:
    seconds: float  # wall time of the whole command
    cpu: float  # user and system seconds
    peak_mb: float  # peak resident memory
    output: str


def collect(kind: str, root: Path, workdir: Path) -> Run:
    """One collection by `kind` of the root, as a command."""
    workdir.mkdir(parents=True, exist_ok=True)
    storage: dict[str, object] = {"filesystem": {"rootdirectory": str(root)}}
    if kind == MOORAGE:
        storage["maintenance"] = {"gc": {"delay": "1h"}}
        command = [sys.executable, "-m", "moorage", "garbage-collect", "--quiet"]
    else:
        command = ["docker-registry", "garbage-collect"]
    config = {"version": "0.1", "storage": storage}
    path = workdir / f"gc-{kind}.yml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    output = workdir / f"gc-{kind}.out"
    measured = workdir / f"gc-{kind}.json"
    with open(output, "wb") as out:
        launched = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, str(measured), *command,
                                   str(path)], stdout=out, stderr=subprocess.STDOUT, env=env)
    text = output.read_text(errors="replace")
    if launched.returncode != 0:
        raise RuntimeError(f"{kind} garbage-collect exited {launched.returncode}:\n{text[-3000:]}")
    seconds, cpu, peak_kb = json.loads(measured.read_text())
    return Run(seconds, cpu, peak_kb / 1024, text)


# Runs the command and writes [seconds, CPU seconds, peak RSS in KiB] to argv[1]. The kernel's
# peak for a process starts from its parent's size at the fork (exec keeps the larger one), so
# the collector is started from this small interpreter (-S: no site), not from the harness,
# whose size (the tree's writer) would otherwise be every collector's peak.
LAUNCHER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
process = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(process.pid, 0)
seconds = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    json.dump([seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss], out)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def deleted_blobs(root: Path, tree: Tree) -> int:
    return tree.blobs - sum(1 for _ in (root / V2 / "blobs").glob("sha256/*/*/data"))
