"""Storage middleware, distribution's `middleware.storage`: what changes the URL a blob GET
redirects to. `redirect` sends every blob to `baseurl` followed by the blob's storage path
(a CDN or web server in front of the same files); `cloudfront` sends it to a CloudFront URL
signed for `duration`, `baseurl` followed by the blob's S3 object key; `rewrite` changes the
scheme, host or path prefix of the URL before it. Entries apply in order, each over the one
before."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlencode, urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from moorage.durations import seconds

# A storage path to the URL a client may fetch it from, or None to serve it through moorage.
Redirector = Callable[[str], Awaitable[str | None]]
DEFAULT_CLOUDFRONT_DURATION = 20 * 60
# CloudFront's base64: the three characters a URL would escape, replaced.
_CLOUDFRONT_BASE64 = str.maketrans("+=/", "-_~")


@runtime_checkable
class S3BucketKeyer(Protocol):
    """A driver whose paths are objects of an S3 bucket, which a CloudFront distribution
    serves (distribution's interface of the same name)."""

    def s3_bucket_key(self, path: str) -> str:
        """The object key of a storage path."""


def redirect(base: str) -> Redirector:
    parts = urlsplit(base)
    prefix = parts.path.rstrip("/")

    async def url(path: str) -> str | None:
        return urlunsplit((parts.scheme, parts.netloc, prefix + path, "", ""))

    return url


def signed_url(resource: str, key: rsa.RSAPrivateKey, keypairid: str, expires: int) -> str:
    """`resource` signed with CloudFront's canned policy: readable until `expires` (a Unix
    time), by anyone who has the URL."""
    policy = {
        "Statement": [
            {"Resource": resource, "Condition": {"DateLessThan": {"AWS:EpochTime": expires}}}
        ]
    }
    document = json.dumps(policy, separators=(",", ":")).encode()
    signature = key.sign(document, padding.PKCS1v15(), hashes.SHA1())
    encoded = base64.b64encode(signature).decode().translate(_CLOUDFRONT_BASE64)
    query = urlencode({"Expires": expires, "Signature": encoded, "Key-Pair-Id": keypairid})
    return f"{resource}{'&' if '?' in resource else '?'}{query}"


def cloudfront(
    keyer: S3BucketKeyer, base: str, key: rsa.RSAPrivateKey, keypairid: str, duration: float
) -> Redirector:
    if "://" not in base:
        base = "https://" + base
    base = base if base.endswith("/") else base + "/"

    async def url(path: str) -> str | None:
        expires = int(time.time() + duration)
        return signed_url(base + keyer.s3_bucket_key(path), key, keypairid, expires)

    return url


def private_key(path: str, where: str) -> rsa.RSAPrivateKey:
    """The RSA key of a CloudFront key pair, from a PEM file (a secret file: the config loader
    checked who else may read it)."""
    try:
        with open(path, "rb") as file:
            pem = file.read()
    except OSError as exc:
        raise ValueError(f"{where}: cannot read {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{where}: {path} holds no unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{where}: {path} holds no RSA key (CloudFront signs with RSA)")
    return key


def rewrite(inner: Redirector, scheme: str, host: str, trim: str) -> Redirector:
    async def url(path: str) -> str | None:
        signed = await inner(path)
        if signed is None:
            return None
        parts = urlsplit(signed)
        return urlunsplit(
            (
                scheme or parts.scheme,
                host or parts.netloc,
                parts.path.removeprefix(trim) if trim else parts.path,
                parts.query,
                parts.fragment,
            )
        )

    return url


def chain(
    driver: Redirector,
    entries: Iterable[tuple[str, Mapping[str, Any]]],
    storage: object,
) -> Redirector:
    """The driver's redirector under the configured (name, options) entries, validated by the
    config schema; `storage` is the driver (CloudFront needs an S3BucketKeyer). Raises
    ValueError naming the key when an entry cannot work (a key file unreadable)."""
    current = driver
    for index, (name, options) in enumerate(entries):
        where = f"middleware.storage.{index}"
        if name == "redirect":
            current = redirect(str(options["baseurl"]))
        elif name == "cloudfront":
            if not isinstance(storage, S3BucketKeyer):
                raise ValueError(
                    f"{where}: cloudfront signs S3 object keys and the storage driver is not "
                    "s3 (distribution ignores it there, with a warning at each blob GET)"
                )
            key = private_key(str(options["privatekey"]), f"{where}.options.privatekey")
            duration = options.get("duration")
            current = cloudfront(
                storage,
                str(options["baseurl"]),
                key,
                str(options["keypairid"]),
                DEFAULT_CLOUDFRONT_DURATION if duration is None else seconds(duration),
            )
        elif name == "rewrite":
            current = rewrite(
                current,
                str(options.get("scheme", "")),
                str(options.get("host", "")),
                str(options.get("trimpathprefix", "")),
            )
        else:
            raise ValueError(f"middleware.storage: unknown middleware {name!r}")
    return current
