"""The `cloudfront` storage middleware on a real S3 store (the session's SeaweedFS): a blob GET
answers 307 to a CloudFront URL signed with a canned policy, which the public key of the test's
own key pair verifies, as distribution 2.8 signs it given the same config; and
`storage.redirect.disable` turns it off."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.api import Client
from tests.integration.s3_support import bucket
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


def moorage_config(s3: S3Server, name: str, key_file: Path) -> dict[str, Any]:
    return {
        "version": "0.1",
        "log": {"level": "info"},
        "storage": {"s3": s3.params(name, rootdirectory=ROOT), "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{free_port()}", "secret": "shared-secret"},
        "middleware": middleware(key_file),
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
