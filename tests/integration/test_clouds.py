"""moorage on Google Cloud Storage and Azure Blob Storage, each on its real emulator
(fake-gcs-server, Azurite): a skopeo round trip, uploads continued by another process, blob
redirects to signed URLs, deletes, flat memory for a large blob, distribution's layout of upload
data, secrets from files, and bad parameters named by `moorage config check`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
import requests
import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from moorage.storage.driver import create
from tests.api import Client, round_trip_big_blob, sha256
from tests.emulators import AzureServer, GcsServer, service_account_key
from tests.integration.http_support import skopeo_round_trip
from tests.servers import free_port, read_back, run_moorage

KiB, MiB = 1024, 1024 * 1024
MASK = "********"
UPLOAD_SESSION = "application/x-docker-upload-session"  # distribution's gcs upload marker


@dataclass
class Cloud:
    """One object store, its emulator and the storage parameters of a fresh root in it."""

    driver: str
    store: GcsServer | AzureServer
    space: str  # bucket or container
    root: str  # rootdirectory, without slashes

    @property
    def params(self) -> dict[str, Any]:
        return self.store.params(self.space, rootdirectory=f"/{self.root}")  # type: ignore[arg-type]

    def config(self, **params: Any) -> dict[str, Any]:
        return {
            "version": "0.1",
            "log": {"level": "info"},
            "storage": {
                self.driver: {**self.params, **params},
                "delete": {"enabled": True},
                "redirect": {"disable": True},
            },
            "http": {"secret": "cloud-tests-shared-secret"},
        }

    def stored(self) -> dict[str, dict[str, Any]]:
        """Every object or blob of the root, by its key below the root."""
        prefix = f"{self.root}/"
        if isinstance(self.store, GcsServer):
            found = self.store.objects(self.space, prefix)
        else:
            found = self.store.blobs(self.space, prefix)
        return {item["name"][len(prefix) :]: item for item in found}


@pytest.fixture(params=["gcs", "azure"])
def cloud(request: pytest.FixtureRequest) -> Iterator[Cloud]:
    if request.param == "gcs":
        gcs: GcsServer = request.getfixturevalue("gcs_store")
        gcs.create_bucket("moorage-tests")
        yield Cloud("gcs", gcs, "moorage-tests", uuid.uuid4().hex)
    else:
        azure: AzureServer = request.getfixturevalue("azure_store")
        azure.create_container("moorage-tests")
        yield Cloud("azure", azure, "moorage-tests", uuid.uuid4().hex)


def test_skopeo_round_trip(tmp_path: Path, cloud: Cloud) -> None:
    """Pushed and pulled back byte for byte, stored in distribution's tree."""
    with run_moorage(tmp_path, cloud.config()) as server:
        skopeo_round_trip(
            tmp_path,
            f"docker://{server.host}/{cloud.driver}/app:v1",
            ["--dest-tls-verify=false"],
            ["--src-tls-verify=false"],
            seed=cloud.driver,
        )
    keys = cloud.stored()
    tag = f"docker/registry/v2/repositories/{cloud.driver}/app/_manifests/tags/v1/current/link"
    assert tag in keys
    blobs = [key for key in keys if key.startswith("docker/registry/v2/blobs/sha256/")]
    assert len(blobs) == 4  # two layers, the config and the manifest
    assert not [key for key in keys if "/_uploads/" in key]


def test_upload_continued_by_another_process(tmp_path: Path, cloud: Cloud) -> None:
    """Chunks straddling GCS's 256 KiB pieces and Azure's 4 MiB blocks; the second process
    continues the running digest from the state the first saved, and the stored bytes."""
    chunks = [300 * KiB, 4 * MiB + 1, 5]
    data = os.urandom(sum(chunks))
    config = cloud.config()
    offset = 0
    with run_moorage(tmp_path / "first", config) as first:
        client = Client(first.url)
        location = client.start_upload(f"{cloud.driver}/app")
        for size in chunks[:2]:
            response = client.request("PATCH", location, data=data[offset : offset + size])
            assert response.status_code == 202, response.text
            offset += size
            location = response.headers["Location"]
    path = urlsplit(location)
    with run_moorage(tmp_path / "second", config) as second:
        client = Client(second.url)
        url = f"{second.url}{path.path}?{path.query}"
        assert client.request("GET", url).headers["Range"] == f"0-{offset - 1}"
        rest = client.request("PATCH", url, data=data[offset:])
        assert rest.status_code == 202, rest.text
        done = client.request("PUT", rest.headers["Location"], params={"digest": sha256(data)})
        assert done.status_code == 201, done.text
        got = client.request("GET", f"/v2/{cloud.driver}/app/blobs/{sha256(data)}")
        assert got.status_code == 200 and got.content == data
        ranged = client.request(
            "GET", f"/v2/{cloud.driver}/app/blobs/{sha256(data)}", headers={"Range": "bytes=7-"}
        )
        assert ranged.status_code == 206 and ranged.content == data[7:]
        assert read_back(second) == []
    for server in (first, second):  # the client libraries log no request of their own
        assert "Request URL" not in server.logs() and "http_logging_policy" not in server.logs()


def test_deletes_catalog_fsck_and_usage(tmp_path: Path, cloud: Cloud) -> None:
    """Deletes and the catalog through the registry; `moorage fsck` and `moorage usage` read
    the same store offline."""
    config = cloud.config()
    config_path = tmp_path / "offline.yml"
    config_path.write_text(yaml.safe_dump(config))
    config_path.chmod(0o600)
    with run_moorage(tmp_path, config) as server:
        client = Client(server.url)
        _, digest = client.push_image("one", "v1")
        client.push_image("two", "v1", seed="two")
        for command in (["fsck"], ["usage", "--json"]):
            done = subprocess.run(
                [sys.executable, "-m", "moorage", *command[:1], str(config_path), *command[1:]],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
        usage = json.loads(done.stdout)
        assert [entry["name"] for entry in usage["repositories"]] == ["one", "two"]
        assert usage["total"] > 0
        assert client.request("GET", "/v2/_catalog").json()["repositories"] == ["one", "two"]
        assert client.request("DELETE", "/v2/one/manifests/v1").status_code == 202
        assert client.request("GET", "/v2/one/tags/list").json()["tags"] == []
        assert client.request("DELETE", f"/v2/one/manifests/{digest}").status_code == 202
        assert client.request("GET", f"/v2/one/manifests/{digest}").status_code == 404
    assert not [key for key in cloud.stored() if "/one/_manifests/tags/v1/" in key]


def test_memory_stays_flat(tmp_path: Path, cloud: Cloud) -> None:
    """A 128 MiB blob pushed in one streamed PUT and pulled back through the registry, with
    the drivers' default piece sizes (16 MiB for GCS)."""
    config = cloud.config(**({"chunksize": 16 * MiB} if cloud.driver == "gcs" else {}))
    with run_moorage(tmp_path, config) as server:
        round_trip_big_blob(server.url, server.process.pid, f"{cloud.driver}/big", 128, b"big")


# Redirects, with the signing secret from a file


def _secret_file(path: Path, content: str) -> Path:
    path.write_text(content)
    path.chmod(0o600)
    return path


def test_blob_get_redirects_to_a_signed_url(tmp_path: Path, cloud: Cloud) -> None:
    """Blob GETs answer 307 to a URL the store serves: a V4-signed GCS URL (checked here
    against the key's public half; the emulator does not check signatures), or an Azure SAS
    URL (Azurite checks it: a changed signature is refused). The signing secret comes from a
    file and shows nowhere."""
    params = cloud.params
    if cloud.driver == "gcs":
        key_path = service_account_key(tmp_path)
        secret = json.loads(key_path.read_text())["private_key"].splitlines()[1]
        params["credentialsfile"] = str(key_path)
    else:
        secret = params.pop("accountkey")
        params["accountkeyfile"] = str(_secret_file(tmp_path / "account-key", secret + "\n"))
    config = cloud.config()
    config["storage"][cloud.driver] = params
    del config["storage"]["redirect"]  # redirects are on by default
    debug = f"127.0.0.1:{free_port()}"
    config["http"]["debug"] = {"addr": debug}
    with run_moorage(tmp_path / "run", config) as server:
        client = Client(server.url)
        payload, _ = client.push_image("signed/app", "v1")
        layer = client.push_blob("signed/app", b"redirected layer")
        response = client.request("GET", f"/v2/signed/app/blobs/{layer}")
        assert response.status_code == 307
        target = response.headers["Location"]
        base = cloud.store.url
        assert target.startswith(base)
        assert requests.get(target, timeout=30).content == b"redirected layer"
        if cloud.driver == "gcs":
            _verify_v4_signature(target, key_path)
        else:
            tampered = target.replace("sig=", "sig=A", 1)
            assert requests.get(tampered, timeout=30).status_code == 403
        # Manifests are never redirected.
        assert client.request("GET", "/v2/signed/app/manifests/v1").content == payload
        shown = requests.get(f"http://{debug}/debug/config", timeout=10).json()
    stored = shown["storage"][cloud.driver]
    assert stored["credentials" if cloud.driver == "gcs" else "accountkey"] == MASK
    for text in (server.logs(), json.dumps(shown)):
        assert secret not in text


def _verify_v4_signature(url: str, key_path: Path) -> None:
    """Checks a GOOG4-RSA-SHA256 signed URL as Google's service does: the canonical request
    rebuilt from the URL, its string to sign verified with the service account's public key."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    signature = bytes.fromhex(dict(query)["X-Goog-Signature"])
    signed = sorted((k, v) for k, v in query if k != "X-Goog-Signature")
    fields = dict(signed)
    assert fields["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert fields["X-Goog-SignedHeaders"] == "host"
    assert int(fields["X-Goog-Expires"]) == 1200
    key = json.loads(key_path.read_text())
    email, scope = fields["X-Goog-Credential"].split("/", 1)
    assert email == key["client_email"]
    canonical_query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in signed)
    canonical = "\n".join(
        ["GET", parts.path, canonical_query, f"host:{parts.netloc}", "", "host", "UNSIGNED-PAYLOAD"]
    )
    to_sign = "\n".join(
        [
            "GOOG4-RSA-SHA256",
            fields["X-Goog-Date"],
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    private = serialization.load_pem_private_key(key["private_key"].encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    private.public_key().verify(signature, to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())


# Distribution's layout of upload data


def test_gcs_upload_data_is_distributions_session_marker(
    tmp_path: Path, gcs_store: GcsServer
) -> None:
    """Between requests, upload data on GCS is what distribution's gcs driver leaves and
    continues: an object of type application/x-docker-upload-session holding the bytes not
    yet in the resumable session (under 256 KiB), with the session's URI and the bytes it
    holds as metadata. When the upload is committed the object is an ordinary one."""
    gcs_store.create_bucket("moorage-tests")
    cloud = Cloud("gcs", gcs_store, "moorage-tests", uuid.uuid4().hex)
    data = os.urandom(600 * KiB)
    with run_moorage(tmp_path, cloud.config()) as server:
        client = Client(server.url)
        location = client.start_upload("layout/app")
        response = client.request("PATCH", location, data=data)
        assert response.status_code == 202, response.text
        (marker,) = [item for key, item in cloud.stored().items() if key.endswith("/data")]
        assert marker["contentType"] == UPLOAD_SESSION
        assert marker["metadata"]["Offset"] == str(512 * KiB)
        assert marker["metadata"]["Session-URI"].startswith(gcs_store.url)
        assert int(marker["size"]) == 88 * KiB
        done = client.request("PUT", response.headers["Location"], params={"digest": sha256(data)})
        assert done.status_code == 201, done.text
    blob = cloud.stored()[
        f"docker/registry/v2/blobs/sha256/{sha256(data)[7:9]}/{sha256(data)[7:]}/data"
    ]
    assert blob["contentType"] == "application/octet-stream"
    assert int(blob["size"]) == len(data)


def test_gcs_continues_a_session_distribution_left(gcs_store: GcsServer) -> None:
    """A session as distribution's gcs driver leaves one (its resumable session fed 256 KiB,
    the marker holding the rest) is continued and finished by moorage's driver."""
    gcs_store.create_bucket("moorage-tests")
    root = uuid.uuid4().hex
    key = f"{root}/up/data"
    first, held, more = os.urandom(256 * KiB), os.urandom(1000), os.urandom(300 * KiB)
    started = requests.post(
        f"{gcs_store.url}/upload/storage/v1/b/moorage-tests/o",
        params={"uploadType": "resumable", "name": key},
        headers={"X-Upload-Content-Type": "application/octet-stream"},
        timeout=30,
    )
    session = started.headers["Location"]
    fed = requests.put(
        session, data=first, headers={"Content-Range": f"bytes 0-{len(first) - 1}/*"}, timeout=30
    )
    assert fed.status_code == 308
    _gcs_marker(gcs_store, key, held, {"Session-URI": session, "Offset": str(len(first))})
    driver = create("gcs", gcs_store.params("moorage-tests", rootdirectory=f"/{root}"))

    async def scenario() -> bytes:
        try:
            assert (await driver.stat("/up/data")).size == len(first) + len(held)
            writer = await driver.writer("/up/data", append=True)
            assert writer.size == len(first) + len(held)
            await writer.write(more)
            await writer.commit()
            return await driver.get_content("/up/data")
        finally:
            await driver.close()

    assert asyncio.run(scenario()) == first + held + more


def _gcs_marker(gcs: GcsServer, key: str, content: bytes, metadata: dict[str, str]) -> None:
    """Writes an upload-session marker object as distribution's driver does (multipart)."""
    boundary = uuid.uuid4().hex
    resource = {"name": key, "contentType": UPLOAD_SESSION, "metadata": metadata}
    body = b"".join(
        [
            f"--{boundary}\r\nContent-Type: application/json\r\n\r\n".encode(),
            json.dumps(resource).encode(),
            f"\r\n--{boundary}\r\nContent-Type: {UPLOAD_SESSION}\r\n\r\n".encode(),
            content,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    response = requests.post(
        f"{gcs.url}/upload/storage/v1/b/moorage-tests/o",
        params={"uploadType": "multipart"},
        data=body,
        headers={"Content-Type": f"multipart/related; boundary={boundary}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def test_azure_upload_data_is_an_append_blob(tmp_path: Path, azure_store: AzureServer) -> None:
    """Upload data on Azure is an append blob holding every byte received, as distribution's
    azure driver writes it and continues it; other files are block blobs."""
    azure_store.create_container("moorage-tests")
    cloud = Cloud("azure", azure_store, "moorage-tests", uuid.uuid4().hex)
    data = os.urandom(5 * MiB)
    with run_moorage(tmp_path, cloud.config()) as server:
        client = Client(server.url)
        location = client.start_upload("layout/app")
        response = client.request("PATCH", location, data=data[: 4 * MiB + 3])
        assert response.status_code == 202, response.text
        (upload,) = [item for key, item in cloud.stored().items() if key.endswith("/data")]
        assert upload["blob_type"] == "AppendBlob"
        assert upload["size"] == 4 * MiB + 3
        (started,) = [item for key, item in cloud.stored().items() if key.endswith("/startedat")]
        assert started["blob_type"] == "BlockBlob"
        rest = client.request("PATCH", response.headers["Location"], data=data[4 * MiB + 3 :])
        done = client.request("PUT", rest.headers["Location"], params={"digest": sha256(data)})
        assert done.status_code == 201, done.text
        assert client.request("GET", f"/v2/layout/app/blobs/{sha256(data)}").content == data


def test_azure_connection_string(azure_store: AzureServer) -> None:
    """moorage's `connectionstring` (Azurite's form here): files, and a SAS redirect URL
    signed with the account key the string holds."""
    azure_store.create_container("moorage-tests")
    driver = create(
        "azure",
        {
            "connectionstring": azure_store.connection_string(),
            "container": "moorage-tests",
            "rootdirectory": uuid.uuid4().hex,
        },
    )

    async def scenario() -> str | None:
        try:
            await driver.put_content("/a/file", b"by connection string")
            assert await driver.get_content("/a/file") == b"by connection string"
            return await driver.redirect_url("/a/file")
        finally:
            await driver.close()

    url = asyncio.run(scenario())
    assert url is not None and url.startswith(azure_store.url)
    assert requests.get(url, timeout=30).content == b"by connection string"


# Parameters


def _check(
    tmp_path: Path, storage: dict[str, Any], *flags: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yml"
    config = {"version": "0.1", "storage": storage, "http": {"secret": "cloud-tests-secret"}}
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return subprocess.run(
        [sys.executable, "-m", "moorage", "config", "check", *flags, str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


AZURE = {"accountname": "a", "accountkey": "k", "container": "c"}


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ({"gcs": {"rootdirectory": "/r"}}, "storage.gcs.bucket: required"),
        ({"gcs": {"bucket": "b", "chunksize": 1000}}, "storage.gcs.chunksize: a positive multiple"),
        ({"gcs": {"bucket": "b", "chunksize": "big"}}, "storage.gcs.chunksize: expected a whole"),
        ({"gcs": {"bucket": "b", "bogus": 1}}, "storage.gcs.bogus: unknown key"),
        ({"gcs": {"bucket": "b", "keyfile": "/no/key.json"}}, "storage.gcs.keyfile: cannot read"),
        ({"gcs": {"bucket": "b", "credentials": "{"}}, "storage.gcs.credentials: not a JSON"),
        (
            {"gcs": {"bucket": "b", "credentials": {"type": "service_account"}}},
            "storage.gcs.credentials: a service account key without client_email",
        ),
        ({"gcs": {"bucket": "b", "serviceurl": "ftp://x"}}, "storage.gcs.serviceurl: expected"),
        ({"azure": {"accountname": "a", "accountkey": "k"}}, "storage.azure.container: required"),
        ({"azure": {"accountname": "a", "container": "c"}}, "storage.azure.accountkey: required"),
        (
            {"azure": {"container": "c", "credentials": {"type": "magic"}}},
            "storage.azure.credentials.type: 'magic'",
        ),
        (
            {"azure": {**AZURE, "credentials": {"type": "client_secret", "clientid": "i"}}},
            "storage.azure.credentials.tenantid: required",
        ),
        (
            {"azure": {**AZURE, "credentials": {"type": "shared_key", "tenant": "t"}}},
            "storage.azure.credentials.tenant: unknown key",
        ),
        ({"azure": {**AZURE, "retry_delay": "soon"}}, "storage.azure.retry_delay: invalid"),
        ({"azure": {**AZURE, "skipverify": "maybe"}}, "storage.azure.skipverify: expected"),
    ],
)
def test_bad_parameters_named(storage: dict[str, Any], expected: str) -> None:
    ((driver, params),) = storage.items()
    with pytest.raises(ValueError) as caught:
        create(driver, params)
    assert str(caught.value).startswith(expected), caught.value


def test_config_check_names_bad_parameters_in_one_line(tmp_path: Path) -> None:
    for storage, expected in [
        ({"gcs": {"bucket": "b", "chunksize": 1000}}, "storage.gcs.chunksize: a positive multiple"),
        ({"azure": {**AZURE, "bogus": 1}}, "storage.azure.bogus: unknown key"),
    ]:
        result = _check(tmp_path, storage)
        assert result.returncode == 1, result.stdout
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"moorage: config: {expected}"), line


def test_distributions_credential_forms_accepted(tmp_path: Path) -> None:
    """Each form distribution 3 takes makes a driver (which connects to nothing yet); `moorage
    config check` accepts the Azure AD one with its secret masked."""
    forms = [
        {"gcs": {"bucket": "b"}},  # Application Default Credentials
        {"gcs": {"bucket": "b", "keyfile": str(service_account_key(tmp_path))}},
        {
            "gcs": {
                "bucket": "b",
                "credentials": json.loads(service_account_key(tmp_path).read_text()),
            }
        },
        {"azure": AZURE},
        {
            "azure": {
                **AZURE,
                "realm": "core.chinacloudapi.cn",
                "credentials": {"type": "shared_key"},
                "max_retries": 3,
                "retry_delay": "250ms",
            }
        },
        {"azure": {"accountname": "a", "container": "c", "credentials": CLIENT_SECRET}},
        {
            "azure": {
                "accountname": "a",
                "container": "c",
                "credentials": {"type": "default_credentials"},
            }
        },
    ]
    for storage in forms:
        ((driver, params),) = storage.items()
        assert create(driver, params).name == driver
    result = _check(tmp_path, forms[-2])
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["storage"]["azure"]["credentials"]["secret"] == MASK
    assert "client-secret-value" not in result.stdout + result.stderr


def test_gcs_keyfile_checked_like_a_secret_file(tmp_path: Path) -> None:
    """A key file others can read is warned about, and refused with --strict-secrets."""
    key = service_account_key(tmp_path)
    key.chmod(0o644)
    storage = {"gcs": {"bucket": "b", "keyfile": str(key)}}
    warned = _check(tmp_path, storage)
    assert warned.returncode == 0, warned.stderr
    assert f"chmod 600 {key}" in warned.stderr
    refused = _check(tmp_path, storage, "--strict-secrets")
    assert refused.returncode == 1
    assert f"chmod 600 {key}" in refused.stderr and "Traceback" not in refused.stderr


CLIENT_SECRET = {
    "type": "client_secret",
    "clientid": "app",
    "tenantid": "tenant",
    "secret": "client-secret-value",
}
