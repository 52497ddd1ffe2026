"""The `cloudfront` storage middleware on a real S3 store (the session's SeaweedFS): a blob GET
answers 307 to a CloudFront URL signed with a canned policy, which the public key of the test's
own key pair verifies, as distribution 2.8 signs it given the same config; with `ipfilteredby`,
clients in the AWS ranges a local web server publishes (of the configured regions) are sent to
S3's presigned URL instead, as distribution sends them; and `storage.redirect.disable` turns it
off."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.api import Client
from tests.integration.s3_support import bucket
from tests.integration.test_config_sections import file_server, wait_for
from tests.servers import S3Server, free_port, run_moorage, run_reference_registry

pytestmark = [pytest.mark.interop]

BASE = "https://d111111abcdef8.cloudfront.net/"
KEY_PAIR = "K2JCJMDEHXQW5F"
ROOT = "/cdn-root"
DURATION = 90  # seconds: `duration: 90s`


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_file(tmp_path: Path, key: rsa.RSAPrivateKey) -> Path:
    """The private key as CloudFront hands it out: PKCS#1 PEM, which distribution 2.8 reads."""
    path = tmp_path / "cloudfront.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def store(s3_store: S3Server) -> Iterator[str]:
    with bucket(s3_store, "cloudfront") as name:
        yield name


def middleware(key_file: Path) -> dict[str, Any]:
    options = {
        "baseurl": BASE,
        "privatekey": str(key_file),
        "keypairid": KEY_PAIR,
        "duration": f"{DURATION}s",
    }
    return {"storage": [{"name": "cloudfront", "options": options}]}


def moorage_config(
    s3: S3Server, name: str, key_file: Path, **options: str
) -> dict[str, Any]:
    section = middleware(key_file)
    section["storage"][0]["options"].update(options)
    return {
        "version": "0.1",
        "log": {"level": "info"},
        "storage": {"s3": s3.params(name, rootdirectory=ROOT), "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{free_port()}", "secret": "shared-secret"},
        "middleware": section,
    }


def distribution_s3(s3: S3Server, name: str) -> dict[str, Any]:
    """storage.s3 for distribution 2.8's driver: no `forcepathstyle`, v4 signatures."""
    params = s3.params(name, rootdirectory=ROOT)
    del params["forcepathstyle"]
    params["v4auth"] = True
    return params


def verified(location: str, key: rsa.RSAPrivateKey) -> tuple[str, int, list[str]]:
    """The resource a signed URL grants, its expiry and its parameters' names in order, once
    its signature is verified against the canned policy CloudFront rebuilds from them."""
    resource, _, query = location.partition("?")
    params = parse_qsl(query, keep_blank_values=True)
    values = dict(params)
    expires = int(values["Expires"])
    policy = {
        "Statement": [
            {"Resource": resource, "Condition": {"DateLessThan": {"AWS:EpochTime": expires}}}
        ]
    }
    document = json.dumps(policy, separators=(",", ":")).encode()
    signature = base64.b64decode(values["Signature"].translate(str.maketrans("-_~", "+=/")))
    key.public_key().verify(signature, document, padding.PKCS1v15(), hashes.SHA1())
    assert values["Key-Pair-Id"] == KEY_PAIR
    return resource, expires, [name for name, _ in params]


def test_blob_get_redirects_to_a_signed_cloudfront_url_as_distribution_does(
    tmp_path: Path, s3_store: S3Server, store: str, key_file: Path, key: rsa.RSAPrivateKey
) -> None:
    data = b"served by CloudFront from the bucket" * 50
    with run_moorage(tmp_path / "moorage", moorage_config(s3_store, store, key_file)) as server:
        client = Client(server.url)
        digest = client.push_blob("library/cdn", data)
        before = int(time.time())
        ours = client.request("GET", f"/v2/library/cdn/blobs/{digest}")
        after = int(time.time())
    assert ours.status_code == 307, ours.text
    resource, expires, names = verified(ours.headers["Location"], key)
    hexdigest = digest.removeprefix("sha256:")
    blob = f"docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"
    assert resource == f"{BASE}{ROOT.strip('/')}/{blob}"
    assert before + DURATION <= expires <= after + DURATION

    with run_reference_registry(
        tmp_path / "distribution",
        storage={"s3": distribution_s3(s3_store, store)},
        middleware=middleware(key_file),
    ) as reference:
        before = int(time.time())
        theirs = Client(reference.url).request("GET", f"/v2/library/cdn/blobs/{digest}")
        after = int(time.time())
    assert theirs.status_code == 307, theirs.text
    their_resource, their_expires, their_names = verified(theirs.headers["Location"], key)
    assert their_resource == resource
    assert sorted(their_names) == sorted(names) == ["Expires", "Key-Pair-Id", "Signature"]
    assert before + DURATION <= their_expires <= after + DURATION
    assert urlsplit(theirs.headers["Location"])[:3] == urlsplit(ours.headers["Location"])[:3]


def test_storage_redirect_disable_serves_blobs_directly(
    tmp_path: Path, s3_store: S3Server, store: str, key_file: Path
) -> None:
    config = moorage_config(s3_store, store, key_file)
    config["storage"]["redirect"] = {"disable": True}
    with run_moorage(tmp_path, config) as server:
        client = Client(server.url)
        digest = client.push_blob("library/direct", b"straight from moorage")
        response = client.request("GET", f"/v2/library/direct/blobs/{digest}")
    assert (response.status_code, response.content) == (200, b"straight from moorage")


# AWS's ranges as this test publishes them: loopback in us-east-1, TEST-NET-1 and an IPv6
# documentation prefix in eu-west-1. TEST-NET-2 is nobody's.
RANGES = {
    "syncToken": "1",
    "prefixes": [
        {"ip_prefix": "127.0.0.0/8", "region": "us-east-1", "service": "AMAZON"},
        {"ip_prefix": "192.0.2.0/24", "region": "eu-west-1", "service": "AMAZON"},
        {"ip_prefix": "not a network", "region": "eu-west-1", "service": "AMAZON"},
    ],
    "ipv6_prefixes": [
        {"ipv6_prefix": "2001:db8::/32", "region": "eu-west-1", "service": "AMAZON"},
    ],
}
IN_EU = "192.0.2.7"
OUTSIDE = "198.51.100.1"


@pytest.fixture
def ranges(tmp_path: Path) -> Iterator[str]:
    """The URL of an ip-ranges.json on a real local web server."""
    directory = tmp_path / "ranges"
    directory.mkdir()
    (directory / "ip-ranges.json").write_text(json.dumps(RANGES))
    with file_server(directory) as base:
        yield f"{base}/ip-ranges.json"


def fetch(client: Client, digest: str, address: str | None = None) -> str:
    """Where a GET of the blob from `address` (as the trusted loopback proxy reports it, or
    loopback itself) is redirected."""
    headers = {"X-Forwarded-For": address} if address else {}
    response = client.request("GET", f"/v2/library/cdn/blobs/{digest}", headers=headers)
    assert response.status_code == 307, response.text
    return str(response.headers["Location"])


def is_s3(location: str, s3: S3Server) -> bool:
    return location.startswith(s3.endpoint + "/") and "X-Amz-Signature=" in location


def test_ipfilteredby_aws_sends_clients_in_aws_to_s3_as_distribution_does(
    tmp_path: Path,
    s3_store: S3Server,
    store: str,
    key_file: Path,
    key: rsa.RSAPrivateKey,
    ranges: str,
) -> None:
    data = b"fetched from S3 by a client inside AWS" * 20
    config = moorage_config(s3_store, store, key_file, ipfilteredby="aws", iprangesurl=ranges)
    with run_moorage(tmp_path / "moorage", config) as server:
        wait_for(lambda: "AWS address ranges: 2 IPv4 and 1 IPv6" in server.logs(), "loaded")
        client = Client(server.url)
        digest = client.push_blob("library/cdn", data)
        ours = {address: fetch(client, digest, address) for address in (None, IN_EU, OUTSIDE)}
    assert is_s3(ours[None], s3_store) and is_s3(ours[IN_EU], s3_store)
    assert requests.get(ours[None], timeout=30).content == data
    resource, _, _ = verified(ours[OUTSIDE], key)
    assert resource.startswith(BASE)

    options = middleware(key_file)
    options["storage"][0]["options"].update(ipfilteredby="aws", iprangesurl=ranges)
    with run_reference_registry(
        tmp_path / "distribution",
        storage={"s3": distribution_s3(s3_store, store)},
        middleware=options,
    ) as reference:
        client = Client(reference.url)
        theirs = {address: fetch(client, digest, address) for address in (None, OUTSIDE)}
    assert urlsplit(theirs[None])[:3] == urlsplit(ours[None])[:3]
    assert verified(theirs[OUTSIDE], key)[0] == resource


@pytest.mark.parametrize(
    ("regions", "direct"),
    [("eu-west-1, US-WEST-2", {IN_EU}), (" US-EAST-1,us-west-2 ", {None})],
)
def test_ipfilteredby_awsregion_sends_only_the_regions_clients_to_s3(
    tmp_path: Path,
    s3_store: S3Server,
    store: str,
    key_file: Path,
    key: rsa.RSAPrivateKey,
    ranges: str,
    regions: str,
    direct: set[str | None],
) -> None:
    config = moorage_config(
        s3_store,
        store,
        key_file,
        ipfilteredby="awsregion",
        awsregion=regions,
        iprangesurl=ranges,
        updatefrequency="1h",
    )
    with run_moorage(tmp_path, config) as server:
        wait_for(lambda: "IPv6 networks from" in server.logs(), "loaded")
        client = Client(server.url)
        digest = client.push_blob("library/cdn", b"regional")
        for address in (None, IN_EU, OUTSIDE):
            location = fetch(client, digest, address)
            if address in direct:
                assert is_s3(location, s3_store), (address, location)
            else:
                verified(location, key)
