"""Upload session state in the upload URL, signed with `http.secret` as distribution does: a
client (or a replica) can tell a genuine session URL from a forged or altered one. Storage
stays the truth for the session's progress."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from moorage.registry.errors import BlobUploadInvalid

PARAMETER = "_state"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def pack(secret: bytes, name: str, upload_id: str, offset: int) -> str:
    payload = json.dumps({"name": name, "uuid": upload_id, "offset": offset}).encode()
    signature = hmac.new(secret, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(signature)}"


def check(secret: bytes, token: str, name: str, upload_id: str) -> None:
    """Raises BlobUploadInvalid unless the token was signed with `secret` for this session."""
    try:
        payload_text, signature_text = token.split(".", 1)
        payload, signature = _unb64(payload_text), _unb64(signature_text)
        state = json.loads(payload)
    except ValueError:
        raise BlobUploadInvalid("malformed upload state") from None
    expected = hmac.new(secret, payload, hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise BlobUploadInvalid("upload state signature is not valid")
    if not isinstance(state, dict) or state.get("name") != name or state.get("uuid") != upload_id:
        raise BlobUploadInvalid("upload state belongs to another session")
