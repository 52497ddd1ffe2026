"""Registry bearer tokens (JWT) verified and issued the way distribution's token auth does.

A token's signing key is found from its header: an `x5c` chain that must verify up to a
certificate of the root bundle, or a `kid` naming a key of the bundle (as a libtrust
fingerprint) or of the JWKS. `iss` must be the configured issuer, `aud` the service, and
`exp`/`nbf` hold with 60 s of leeway. `alg: none` and algorithms outside the configured list are
refused. The `access` claim lists what the token grants.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from moorage.auth.scopes import Scope

LEEWAY = 60
DEFAULT_ALGORITHMS = (
    "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA",
)  # fmt: skip

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class InvalidToken(Exception):
    """The token cannot be trusted; the message says why (for the log, not the client)."""


def libtrust_key_id(key: PublicKey) -> str:
    """docker/libtrust's fingerprint: the first 240 bits of the SHA-256 of the DER public key,
    base32, in twelve colon-separated groups of four."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def load_certificates(path: str) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle; ValueError when there is none or it cannot be read."""
    try:
        with open(path, "rb") as file:
            certificates = x509.load_pem_x509_certificates(file.read())
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ValueError(f"{path}: not a PEM certificate bundle") from exc
    return certificates


def load_jwks(path: str) -> dict[str, PublicKey]:
    """Key id -> key of a JWKS file."""
    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
        keys = {}
        for entry in document["keys"]:
            key = jwt.PyJWK(entry).key
            keys[entry["kid"]] = key
        return keys
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from exc
    except (KeyError, TypeError, ValueError, jwt.PyJWTError) as exc:
        raise ValueError(f"{path}: not a JWKS document with key ids: {exc}") from exc


def _verify_chain(x5c: list[str], roots: list[x509.Certificate]) -> PublicKey:
    """The leaf's key, once each certificate of the chain (leaf first), within its validity,
    is a root of the bundle, is signed by one, or is signed by the next in the chain, which
    must be a CA and then verify the same way. Raises InvalidToken."""
    try:
        chain = [x509.load_der_x509_certificate(base64.b64decode(item)) for item in x5c]
    except (ValueError, TypeError) as exc:
        raise InvalidToken(f"unparseable x5c chain: {exc}") from exc
    now = datetime.datetime.now(datetime.UTC)
    trusted = {root.public_bytes(serialization.Encoding.DER) for root in roots}
    for index, cert in enumerate(chain):
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise InvalidToken("a certificate of the x5c chain is outside its validity")
        if cert.public_bytes(serialization.Encoding.DER) in trusted or any(
            root.subject == cert.issuer and _issued_by(cert, root) for root in roots
        ):
            key = chain[0].public_key()
            if not isinstance(key, PublicKey):
                raise InvalidToken("unsupported key type in the x5c leaf")
            return key
        if (
            index + 1 == len(chain)
            or not _is_ca(chain[index + 1])
            or not _issued_by(cert, chain[index + 1])
        ):
            break
    raise InvalidToken("x5c chain does not verify to the root certificate bundle")


def _is_ca(cert: x509.Certificate) -> bool:
    """Whether an intermediate may sign certificates (basicConstraints CA), as Go's x509
    requires; without this a leaf's key could mint certificates the roots never issued."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class Claims:
    subject: str
    access: list[Scope]


MAX_CHAIN = 10  # certificates in an x5c chain: real chains have two or three


class Verifier:
    def __init__(
        self,
        issuer: str,
        service: str,
        roots: list[x509.Certificate],
        jwks: dict[str, PublicKey] | None = None,
        algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS,
    ) -> None:
        self.issuer = issuer
        self.service = service
        self.roots = roots
        self.algorithms = tuple(a for a in algorithms if a.lower() != "none")
        self.keys: dict[str, PublicKey] = dict(jwks or {})
        for root in roots:
            key = root.public_key()
            if isinstance(key, PublicKey):
                self.keys.setdefault(libtrust_key_id(key), key)

    def verify(self, token: str) -> Claims:
        """The token's claims once everything checks; InvalidToken otherwise."""
        if not token.isascii():  # a JWT is base64url and dots; PyJWT would fail to encode it
            raise InvalidToken("malformed token: not ASCII")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from exc
        except RecursionError:
            raise InvalidToken("malformed token: nested too deeply") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise InvalidToken(f"signing algorithm {algorithm!r} is not accepted")
        try:
            key = self._signing_key(header)
        except (ValueError, TypeError) as exc:  # certificates that parse but not all the way
            raise InvalidToken(f"unusable x5c chain: {exc}") from exc
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.service,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, TypeError, ValueError, RecursionError) as exc:
            # TypeError/ValueError: the key does not fit the algorithm (an EC key for HS256).
            raise InvalidToken(str(exc) or type(exc).__name__) from exc
        return Claims(str(claims.get("sub") or ""), _access(claims.get("access")))

    def _signing_key(self, header: dict[str, Any]) -> PublicKey:
        x5c = header.get("x5c")
        if x5c:
            if (
                not isinstance(x5c, list)
                or len(x5c) > MAX_CHAIN
                or not all(isinstance(i, str) for i in x5c)
            ):
                raise InvalidToken("malformed x5c header")
            return _verify_chain(x5c, self.roots)
        kid = header.get("kid")
        if isinstance(kid, str) and kid in self.keys:
            return self.keys[kid]
        raise InvalidToken("token signed by an unknown key")


def _access(raw: Any) -> list[Scope]:
    if not isinstance(raw, list):
        return []
    scopes = []
    for entry in raw:
        if isinstance(entry, dict) and isinstance(entry.get("actions"), list):
            scopes.append(
                Scope(
                    str(entry.get("type", "")),
                    str(entry.get("name", "")),
                    frozenset(str(a) for a in entry["actions"]),
                )
            )
    return scopes


class Signer:
    """Issues tokens with an EC P-256 key and its self-signed certificate (sent as `x5c`, and
    named by its libtrust `kid`), as any distribution registry trusting that certificate accepts."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self.key = key
        self.certificate = certificate
        self.kid = libtrust_key_id(key.public_key())
        self._x5c = [
            base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()
        ]

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims, self.key, algorithm="ES256", headers={"kid": self.kid, "x5c": self._x5c}
        )

    def issue(
        self, issuer: str, service: str, subject: str, access: list[Scope], lifetime: int
    ) -> str:
        now = int(time.time())
        return self.sign(
            {
                "iss": issuer,
                "sub": subject,
                "aud": service,  # a string: distribution 2.x reads no list here
                "exp": now + lifetime,
                "nbf": now - 1,
                "iat": now,
                "jti": uuid.uuid4().hex,
                "access": [scope.to_claim() for scope in access],
            }
        )


def load_or_create_signer(key_path: str, certificate_path: str, common_name: str) -> Signer:
    """The signing key and certificate at these paths, both made (key 0600) when missing."""
    if not os.path.exists(key_path):
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        os.makedirs(os.path.dirname(os.path.abspath(key_path)), exist_ok=True)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
        if os.path.exists(certificate_path):
            os.unlink(certificate_path)  # it certified the key that is gone
    with open(key_path, "rb") as file:
        loaded = serialization.load_pem_private_key(file.read(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path}: expected an EC private key")
    if not os.path.exists(certificate_path):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(loaded.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(loaded, hashes.SHA256())
        )
        with open(certificate_path, "wb") as file:
            file.write(certificate.public_bytes(serialization.Encoding.PEM))
    certificate = load_certificates(certificate_path)[0]
    return Signer(loaded, certificate)
