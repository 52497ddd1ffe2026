"""A certificate authority of the test's own (root, intermediate, leaf), made with
`cryptography`, and tokens minted with PyJWT, the way a token server signs them."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass
class Issued:
    key: Key
    cert: x509.Certificate

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def der_b64(self) -> str:
        return base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()


def certificate(
    name: str,
    *,
    issuer: Issued | None = None,
    ca: bool = True,
    key: Key | None = None,
    days: int = 365,
    expired: bool = False,
) -> Issued:
    """A certificate for a new EC key, signed by `issuer` (self-signed when None)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    start, end = (
        (now - datetime.timedelta(days=10), now - datetime.timedelta(days=1))
        if expired
        else (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days))
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer.key if issuer else key, hashes.SHA256())
    )
    return Issued(key, cert)


def claims(
    issuer: str = "test-issuer",
    audience: str = "test-service",
    access: list[dict[str, Any]] | None = None,
    *,
    lifetime: int = 300,
    subject: str = "alice",
    **extra: Any,
) -> dict[str, Any]:
    now = int(time.time())
    document: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": now + lifetime,
        "nbf": now - 1,
        "iat": now,
        "jti": f"jti-{now}",
        "access": access or [],
    }
    document.update(extra)
    return document


def repo_access(name: str, *actions: str) -> dict[str, Any]:
    return {"type": "repository", "name": name, "actions": list(actions)}


def mint(
    payload: dict[str, Any],
    key: Key,
    *,
    x5c: list[Issued] | None = None,
    kid: str | None = None,
    algorithm: str = "ES256",
) -> str:
    headers: dict[str, Any] = {}
    if x5c is not None:
        headers["x5c"] = [item.der_b64() for item in x5c]
    if kid is not None:
        headers["kid"] = kid
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unsigned(payload: dict[str, Any], **header: Any) -> str:
    """An `alg: none` token: header and payload, empty signature."""
    head = {"alg": "none", "typ": "JWT", **header}
    return f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(payload).encode())}."


def tampered(token: str, **changes: Any) -> str:
    """The token with its payload changed and the original signature kept."""
    head, payload, signature = token.split(".")
    document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    document.update(changes)
    return f"{head}.{b64url(json.dumps(document).encode())}.{signature}"


def hmac_signed(payload: dict[str, Any], secret: bytes, **header: Any) -> str:
    """An HS256 token keyed with `secret`, made by hand (PyJWT refuses public keys as secrets)."""
    head = {"alg": "HS256", "typ": "JWT", **header}
    signing_input = f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(payload).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"
