"""Storage middleware, distribution's `middleware.storage`: what changes the URL a blob GET
redirects to. `redirect` sends every blob to `baseurl` followed by the blob's storage path
(a CDN or web server in front of the same files); `cloudfront` sends it to a CloudFront URL
signed for `duration`, `baseurl` followed by the blob's S3 object key; `rewrite` changes the
scheme, host or path prefix of the URL before it. Entries apply in order, each over the one
before.

CloudFront's `ipfilteredby` (`aws`, or `awsregion` with a list of regions) leaves the clients
whose address is in AWS's published ranges (of those regions) to the URL before it, the S3
driver's presigned one: traffic inside AWS need not pay for CloudFront."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlencode, urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from moorage.durations import seconds
from moorage.storage.aws_ranges import DEFAULT_UPDATE, DEFAULT_URL, AWSRanges

# A storage path and the client's address (None when unknown) to the URL the client may fetch
# it from, or None to serve it through moorage.
Redirector = Callable[[str, str | None], Awaitable[str | None]]
DEFAULT_CLOUDFRONT_DURATION = 20 * 60
# CloudFront's base64: the three characters a URL would escape, replaced.
_CLOUDFRONT_BASE64 = str.maketrans("+=/", "-_~")


@runtime_checkable
class S3BucketKeyer(Protocol):
    """A driver whose paths are objects of an S3 bucket, which a CloudFront distribution
    serves (distribution's interface of the same name)."""

    def s3_bucket_key(self, path: str) -> str:
        """The object key of a storage path."""


def from_driver(redirect_url: Callable[[str], Awaitable[str | None]]) -> Redirector:
    """A driver's `redirect_url` (a presigned URL, or None) as a Redirector."""

    async def url(path: str, client: str | None) -> str | None:
        return await redirect_url(path)

    return url


def redirect(base: str) -> Redirector:
    parts = urlsplit(base)
    prefix = parts.path.rstrip("/")

    async def url(path: str, client: str | None) -> str | None:
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
    inner: Redirector,
    keyer: S3BucketKeyer,
    base: str,
    key: rsa.RSAPrivateKey,
    keypairid: str,
    duration: float,
    direct: AWSRanges | None = None,
) -> Redirector:
    """Signed CloudFront URLs, except for clients in the `direct` ranges: `inner`'s URL."""
    if "://" not in base:
        base = "https://" + base
    base = base if base.endswith("/") else base + "/"

    async def url(path: str, client: str | None) -> str | None:
        if direct is not None and direct.contains(client):
            return await inner(path, client)
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
    async def url(path: str, client: str | None) -> str | None:
        signed = await inner(path, client)
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


def aws_ranges(options: Mapping[str, Any]) -> AWSRanges | None:
    """The ranges of clients CloudFront's `ipfilteredby` sends to S3 directly, if any."""
    filtered = str(options.get("ipfilteredby", "")).strip().lower()
    if filtered in ("", "none"):
        return None
    every = options.get("updatefrequency", options.get("updatefrenquency"))
    regions = str(options["awsregion"]).split(",") if filtered == "awsregion" else []
    return AWSRanges(
        str(options.get("iprangesurl") or DEFAULT_URL),
        DEFAULT_UPDATE if every is None else seconds(every),
        regions,
    )


@dataclass
class Chain:
    redirector: Redirector
    # What runs while the registry serves (fetching AWS's address ranges), until cancelled.
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)


def chain(
    driver: Callable[[str], Awaitable[str | None]],
    entries: Iterable[tuple[str, Mapping[str, Any]]],
    storage: object,
) -> Chain:
    """The driver's `redirect_url` under the configured (name, options) entries, validated by
    the config schema; `storage` is the driver (CloudFront needs an S3BucketKeyer). Raises
    ValueError naming the key when an entry cannot work (a key file unreadable). Reads files
    and nothing else: what fetches is in the chain's `background`."""
    current = from_driver(driver)
    background: list[Callable[[], Coroutine[Any, Any, None]]] = []
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
            direct = aws_ranges(options)
            if direct is not None:
                background.append(direct.run)
            current = cloudfront(
                current,
                storage,
                str(options["baseurl"]),
                key,
                str(options["keypairid"]),
                DEFAULT_CLOUDFRONT_DURATION if duration is None else seconds(duration),
                direct,
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
    return Chain(current, background)
