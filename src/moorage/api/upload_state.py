"""Upload session state in the upload URL (`_state`), signed with `http.secret`, in
distribution's own format: base64url(HMAC-SHA256(secret, json) || json) of
`{Name, UUID, Offset, StartedAt}`. With a shared secret, an upload URL issued by either
registry is accepted by the other. Storage stays the truth for the session's progress."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time

from moorage.registry.errors import BlobUploadInvalid

PARAMETER = "_state"
_MAC_SIZE = hashlib.sha256().digest_size


def pack(secret: bytes, name: str, upload_id: str, offset: int) -> str:
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    message = json.dumps(
        {"Name": name, "UUID": upload_id, "Offset": offset, "StartedAt": started},
        separators=(",", ":"),
    ).encode()
    mac = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac + message).decode()


def check(secret: bytes, token: str, name: str, upload_id: str) -> None:
    """Raises BlobUploadInvalid unless the token was signed with `secret` for this session."""
    try:
        raw = base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise BlobUploadInvalid("malformed upload state") from None
    mac, message = raw[:_MAC_SIZE], raw[_MAC_SIZE:]
    if not hmac.compare_digest(mac, hmac.new(secret, message, hashlib.sha256).digest()):
        raise BlobUploadInvalid("upload state signature is not valid")
    try:
        state = json.loads(message)
    except ValueError:
        raise BlobUploadInvalid("malformed upload state") from None
    if not isinstance(state, dict) or state.get("Name") != name or state.get("UUID") != upload_id:
        raise BlobUploadInvalid("upload state belongs to another session")
