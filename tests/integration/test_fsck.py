"""`moorage fsck` on real roots: trees written by a real moorage and by the reference registry
(distribution 2.8), on the filesystem and on S3 (SeaweedFS), damaged the ways storage gets
damaged; fsck must report each problem with its count and a non-zero exit, write nothing
without --repair, and with it fix what it can so that the registry then serves correctly."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.api import OCI_MANIFEST, Client, RepeatedBody, sha256
from tests.integration.lifecycle_support import moorage_cli
from tests.integration.s3_support import bucket, list_multipart_uploads, s3_client
from tests.servers import (
    RedisServer,
    S3Server,
    moorage_config,
    run_moorage,
    run_reference_registry,
)

V2 = Path("docker/registry/v2")
OLD = b"2001-02-03T04:05:06Z"  # a start long before any purge age
FINDING = re.compile(r"^([a-z]+(?:-[a-z]+)+) (\S+): ")
MiB = 1024 * 1024


# --- running fsck -----------------------------------------------------------------------------


def fsck(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return moorage_cli("fsck", str(config), *args, timeout=300)


def findings(result: subprocess.CompletedProcess[str]) -> Counter[str]:
    """The kinds of the finding lines, counted; checked against the summary's counts."""
    lines = Counter(
        match.group(1) for line in result.stdout.splitlines() if (match := FINDING.match(line))
    )
    summary = re.search(r"^found \d+ problems?: (.*);", result.stdout, re.MULTILINE)
    counted: Counter[str] = Counter()
    if summary:
        for part in summary.group(1).split(", "):
            count, kind = part.split(" ")
            counted[kind] = int(count)
    assert lines == counted, result.stdout
    return lines


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def tree(root: Path) -> dict[str, str]:
    """Every file below the root by its content's digest."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def blob_data(root: Path, digest: str) -> Path:
    algorithm, hex_ = digest.split(":")
    return root / V2 / "blobs" / algorithm / hex_[:2] / hex_ / "data"


def repository(root: Path, name: str) -> Path:
    return root / V2 / "repositories" / name


def upload_id(location: str) -> str:
    return urlsplit(location).path.rstrip("/").rpartition("/")[2]


def referrers(client: Client, name: str, subject: str) -> list[str]:
    response = client.request("GET", f"/v2/{name}/referrers/{subject}")
    assert response.status_code == 200, response.text
    return sorted(entry["digest"] for entry in response.json()["manifests"])


def layer_of(payload: bytes) -> str:
    return str(json.loads(payload)["layers"][0]["digest"])


# --- a moorage root on the filesystem -----------------------------------------------------------


def test_damaged_moorage_root_is_reported_repaired_and_served(tmp_path: Path) -> None:
    root = tmp_path / "data"
    config = write_config(tmp_path / "config.yml", moorage_config(root, 0))
    name = "team/app"
    with run_moorage(tmp_path / "first", yaml.safe_load(config.read_text())) as server:
        client = Client(server.url)
        one, one_digest = client.push_image(name, "v1", seed="one")
        _, two_digest = client.push_image(name, "v2", seed="two")
        three, three_digest = client.push_image(name, "v3", seed="three")
        client.push_index(name, "multi", [three])
        _, signature = client.push_artifact(name, one, "a")
        # sha512 blobs are stored under their sha256: no false alarm for their links
        sha512 = "sha512:" + hashlib.sha512(b"sha512 blob").hexdigest()
        location = client.start_upload(name)
        pushed = client.request("PUT", location, params={"digest": sha512}, data=b"sha512 blob")
        assert pushed.status_code == 201, pushed.text
        abandoned = client.start_upload(name)
        clean = fsck(config)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert "no problems found" in clean.stdout

        # The damage: a layer's content, a manifest's content, an index's child (deleted through
        # the API), a referrers entry dropped and one left for a manifest that never was, and an
        # upload session from long ago.
        blob_data(root, layer_of(one)).unlink()
        blob_data(root, two_digest).unlink()
        assert client.request("DELETE", f"/v2/{name}/manifests/{three_digest}").status_code == 202
        subject_dir = repository(root, name) / "_referrers" / "sha256" / one_digest.split(":")[1]
        shutil.rmtree(subject_dir / "sha256")
        ghost = subject_dir / "sha256" / ("0" * 64) / "link"
        ghost.parent.mkdir(parents=True)
        ghost.write_text("sha256:" + "0" * 64)
        session = repository(root, name) / "_uploads" / upload_id(abandoned)
        (session / "startedat").write_bytes(OLD)

        before = tree(root)
        found = fsck(config)  # while the registry serves: it writes nothing
        assert tree(root) == before
        assert found.returncode == 1, found.stdout + found.stderr
        assert findings(found) == {
            "layer-dangling": 1,
            "blob-missing": 1,
            "revision-dangling": 1,
            "tag-dangling": 1,
            "child-missing": 1,
            "referrer-missing": 1,
            "referrer-stale": 1,
            "upload-abandoned": 1,
        }
        assert f"tag v2 points at manifest {two_digest}, whose content is gone" in found.stdout
        assert "6 can be repaired with --repair" in found.stdout

    repaired = fsck(config, "--repair")
    assert repaired.returncode == 1, repaired.stdout + repaired.stderr
    assert "repaired 6: " in repaired.stdout
    assert "left 2: 1 blob-missing, 1 child-missing" in repaired.stdout
    again = fsck(config)
    assert again.returncode == 1
    assert findings(again) == {"blob-missing": 1, "child-missing": 1}

    with run_moorage(tmp_path / "second", yaml.safe_load(config.read_text())) as server:
        client = Client(server.url)
        assert referrers(client, name, one_digest) == [signature]
        tags = client.request("GET", f"/v2/{name}/tags/list").json()["tags"]
        assert tags == ["multi", "v1"]
        assert not session.exists()
        missing_layer = layer_of(one)
        assert client.request("HEAD", f"/v2/{name}/blobs/{missing_layer}").status_code == 404
        # What was left is mended the way the report says: push the blob and the child again.
        client.push_blob(name, b"layer one")
        assert client.put_manifest(name, three_digest, three).status_code == 201
        assert fsck(config).returncode == 0
        got = client.request("GET", f"/v2/{name}/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert got.content == one
        assert client.request("GET", f"/v2/{name}/blobs/{missing_layer}").content == b"layer one"
        assert client.request("GET", f"/v2/{name}/manifests/{two_digest}").status_code == 404


def test_verify_content_catches_a_flipped_byte(tmp_path: Path) -> None:
    root = tmp_path / "data"
    config = write_config(tmp_path / "config.yml", moorage_config(root, 0))
    layer = os.urandom(3 * MiB + 5)
    with run_moorage(tmp_path / "server", yaml.safe_load(config.read_text())) as server:
        client = Client(server.url)
        payload = client.manifest("app", b'{"seed":"verify"}', [layer])
        assert client.put_manifest("app", "v1", payload).status_code == 201
    verified = fsck(config, "--verify-content")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "checked 1 repository, 1 manifest, 1 tag, 2 layer links" in verified.stdout
    assert "3 blobs verified (3.0 MiB)" in verified.stdout
    assert "verifying content" not in verified.stderr  # stderr is no terminal here

    data = blob_data(root, sha256(layer))
    with open(data, "r+b") as file:
        file.seek(2 * MiB)
        byte = file.read(1)
        file.seek(2 * MiB)
        file.write(bytes([byte[0] ^ 0x01]))
    assert fsck(config).returncode == 0  # the links are all right
    corrupt = fsck(config, "--verify-content")
    assert corrupt.returncode == 1
    assert findings(corrupt) == {"blob-corrupt": 1}
    assert f"the content of {sha256(layer)} hashes to sha256:" in corrupt.stdout
    repaired = fsck(config, "--verify-content", "--repair")
    assert repaired.returncode == 1
    assert "left 1: 1 blob-corrupt" in repaired.stdout
    assert data.exists()  # corrupt content is reported, never deleted

    # On a terminal, the progress of the verification is drawn on stderr.
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "moorage", "fsck", str(config), "--verify-content"],
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal's other end is closed: the process is done
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert process.wait(timeout=60) == 1
    assert process.stdout is not None
    process.stdout.close()
    assert b"\rverifying content: " in shown
    assert b"3.0 MiB of 3.0 MiB (100%)" in shown


# fsck's own peak memory, printed by the process itself when it is done
# The command's own peak (VmHWM): getrusage's ru_maxrss would start from the pytest process's
# peak, which Linux keeps across the exec of a process it spawned.
PEAK = """
import re, sys
from moorage.cli import main
code = main(sys.argv[1:])
status = open("/proc/self/status").read()
print("peak", int(re.search(r"VmHWM:\\s+(\\d+)", status).group(1)) // 1024, file=sys.stderr)
raise SystemExit(code)
"""


def test_verify_content_streams_in_flat_memory(tmp_path: Path) -> None:
    root = tmp_path / "data"
    config = write_config(tmp_path / "config.yml", moorage_config(root, 0))
    block = hashlib.sha256(b"flat").digest() * (MiB // 32)
    expected = hashlib.sha256()
    for _ in range(256):
        expected.update(block)
    digest = f"sha256:{expected.hexdigest()}"
    with run_moorage(tmp_path / "server", yaml.safe_load(config.read_text())) as server:
        location = Client(server.url).start_upload("big")
        pushed = Client(server.url).request(
            "PUT", location, params={"digest": digest}, data=RepeatedBody(block, 256), timeout=600
        )
        assert pushed.status_code == 201, pushed.text
    result = subprocess.run(
        [sys.executable, "-c", PEAK, "fsck", str(config), "--verify-content"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 blob verified (256.0 MiB)" in result.stdout
    peak = int(re.findall(r"^peak (\d+)$", result.stderr, re.MULTILINE)[0])
    assert peak < 150, f"fsck peak RSS {peak} MiB"


def test_usage_config_and_storage_errors_are_one_line(tmp_path: Path) -> None:
    bad = write_config(tmp_path / "bad.yml", {"version": "0.1", "storage": {"filesystm": {}}})
    inmemory = write_config(tmp_path / "mem.yml", moorage_config(None, 0))
    s3 = moorage_config(None, 0)
    s3["storage"] = {
        "s3": {
            "bucket": "nothing",
            "region": "us-east-1",
            "regionendpoint": "http://127.0.0.1:9",  # the discard port: nothing listens
            "accesskey": "a",
            "secretkey": "secret-never-shown",
        }
    }
    unreachable = write_config(tmp_path / "s3.yml", s3)
    for config, expected in (
        (bad, "moorage fsck: config: "),
        (inmemory, "moorage fsck: config: storage.inmemory"),
        (unreachable, "moorage fsck: storage: "),
        (tmp_path / "absent.yml", "moorage fsck: config: "),
    ):
        result = fsck(config)
        assert result.returncode == 2, (config, result.stdout, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("moorage fsck")]
        assert len(errors) == 1 and errors[0].startswith(expected), result.stderr
        assert "secret-never-shown" not in result.stderr
    usage = subprocess.run(
        [sys.executable, "-m", "moorage", "fsck", "--fix"], capture_output=True, text=True
    )
    assert usage.returncode == 2 and "unrecognized arguments: --fix" in usage.stderr


# --- a root distribution wrote -----------------------------------------------------------------


def test_distribution_root_gets_a_referrers_index(tmp_path: Path) -> None:
    """distribution 2.x keeps no referrers index: fsck --repair builds moorage's from the
    manifests, and takes out entries for manifests distribution deleted since."""
    root = tmp_path / "data"
    name = "team/app"
    with run_reference_registry(tmp_path / "distribution", root) as server:
        client = Client(server.url, monolithic=False)
        image, image_digest = client.push_image(name, "v1", seed="d")
        _, kept = client.push_artifact(name, image, "kept")
        _, dropped = client.push_artifact(name, image, "dropped")
        assert client.request("DELETE", f"/v2/{name}/manifests/{dropped}").status_code == 202
        unfinished = client.start_upload(name)
        (repository(root, name) / "_uploads" / upload_id(unfinished) / "startedat").write_bytes(OLD)
        config = next((tmp_path / "distribution").glob("distribution-*.yml"))

        found = fsck(config)  # distribution's own config file
        assert found.returncode == 1, found.stdout + found.stderr
        # what distribution's deletes leave (link directories without their link) is no problem
        assert findings(found) == {"referrer-missing": 1, "upload-abandoned": 1}
        repaired = fsck(config, "--repair")
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert "repaired 2: 1 referrer-missing, 1 upload-abandoned" in repaired.stdout
        assert fsck(config).returncode == 0
        got = client.request("GET", f"/v2/{name}/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert got.content == image  # distribution serves the repaired root as before

    with run_moorage(tmp_path / "moorage", root=root) as server:
        client = Client(server.url)
        assert referrers(client, name, image_digest) == [kept]
        _, later = client.push_artifact(name, image, "later")
        assert referrers(client, name, image_digest) == sorted([kept, later])

    with run_reference_registry(tmp_path / "distribution", root) as server:
        # distribution deletes the referrer and leaves moorage's index as it was
        assert Client(server.url).request("DELETE", f"/v2/{name}/manifests/{later}").status_code
        stale = fsck(config)
        assert findings(stale) == {"referrer-stale": 1}
        assert fsck(config, "--repair").returncode == 0
        assert fsck(config).returncode == 0


# --- S3 ---------------------------------------------------------------------------------------


async def _damage_s3(store: S3Server, name: str, prefix: str, layer: str, config: str) -> None:
    async with s3_client(store) as s3:
        await s3.delete_object(Bucket=name, Key=f"{prefix}/{_blob_key(layer)}")
        key = f"{prefix}/{_blob_key(config)}"
        answer = await s3.get_object(Bucket=name, Key=key)
        async with answer["Body"] as stream:
            content = bytearray(await stream.read())
        content[0] ^= 0x01
        await s3.put_object(Bucket=name, Key=key, Body=bytes(content))


async def _age_sessions(store: S3Server, name: str, prefix: str) -> None:
    async with s3_client(store) as s3:
        listed = await s3.list_objects_v2(Bucket=name, Prefix=prefix)
        for item in listed.get("Contents", []):
            if item["Key"].endswith("/startedat"):
                await s3.put_object(Bucket=name, Key=item["Key"], Body=OLD)


def _blob_key(digest: str) -> str:
    algorithm, hex_ = digest.split(":")
    return f"{V2}/blobs/{algorithm}/{hex_[:2]}/{hex_}/data"


def test_s3_root_checked_and_repaired(tmp_path: Path, s3_store: S3Server) -> None:
    prefix = uuid.uuid4().hex
    with bucket(s3_store, "fsck-tests") as name:
        config_tree = moorage_config(None, 0)
        config_tree["storage"] = {
            "s3": s3_store.params(name, rootdirectory=f"/{prefix}"),
            "delete": {"enabled": True},
            "redirect": {"disable": True},
        }
        config = write_config(tmp_path / "config.yml", config_tree)
        with run_moorage(tmp_path / "server", config_tree) as server:
            client = Client(server.url)
            payload, _ = client.push_image("s3/app", "v1", seed="s3")
            client.push_image("s3/app", "v2", seed="intact")
            location = client.start_upload("s3/app")
            assert client.request("PATCH", location, data=os.urandom(6 * MiB)).status_code == 202
            assert fsck(config, "--verify-content").returncode == 0

            layer = layer_of(payload)
            config_blob = str(json.loads(payload)["config"]["digest"])
            asyncio.run(_damage_s3(s3_store, name, prefix, layer, config_blob))
            asyncio.run(_age_sessions(s3_store, name, prefix))
            assert asyncio.run(list_multipart_uploads(s3_store, name, prefix)) != []
            found = fsck(config, "--verify-content")
            assert found.returncode == 1, found.stdout + found.stderr
            assert findings(found) == {
                "layer-dangling": 1,
                "blob-missing": 1,
                "upload-abandoned": 1,
                "blob-corrupt": 1,
            }
            repaired = fsck(config, "--repair")
            assert repaired.returncode == 1, repaired.stdout + repaired.stderr
            assert "repaired 2: 1 layer-dangling, 1 upload-abandoned" in repaired.stdout
            assert "left 1: 1 blob-missing" in repaired.stdout
            assert asyncio.run(list_multipart_uploads(s3_store, name, prefix)) == []
            assert client.request("HEAD", f"/v2/s3/app/blobs/{layer}").status_code == 404
            assert client.request("GET", location).status_code == 404
            assert client.request("GET", "/v2/s3/app/manifests/v2").status_code == 200


# --- a shared cache -----------------------------------------------------------------------------


def test_repair_keeps_a_shared_cache_true(tmp_path: Path, redis_server: RedisServer) -> None:
    """A repaired dangling layer must read as absent on the running replicas, or clients would
    skip pushing it again: the Redis cache they share forgets it."""
    root = tmp_path / "data"
    config_tree = moorage_config(root, 0, redis={"addr": redis_server.addr, "db": 7})
    config_tree["storage"]["cache"] = {"blobdescriptor": "redis"}
    config = write_config(tmp_path / "config.yml", config_tree)
    with run_moorage(tmp_path / "server", config_tree) as server:
        client = Client(server.url)
        payload, _ = client.push_image("cached", "v1", seed="cached")
        layer = layer_of(payload)
        assert client.request("HEAD", f"/v2/cached/blobs/{layer}").status_code == 200  # cached
        blob_data(root, layer).unlink()
        assert client.request("HEAD", f"/v2/cached/blobs/{layer}").status_code == 200  # stale
        repaired = fsck(config, "--repair")
        assert "repaired 1: 1 layer-dangling" in repaired.stdout, repaired.stdout
        assert client.request("HEAD", f"/v2/cached/blobs/{layer}").status_code == 404
        client.push_blob("cached", b"layer cached")
        assert fsck(config).returncode == 0
