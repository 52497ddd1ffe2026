"""Properties of the signed upload state (`_state`): a state packed for a session is accepted
for that session only and under that secret only, and any other text is refused with
BlobUploadInvalid, never another exception."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from hypothesis import assume, given
from hypothesis import strategies as st

from moorage.api import upload_state
from moorage.registry.errors import BlobUploadInvalid
from tests.strategies import json_values, mutated, valid_names

secrets = st.binary(min_size=1, max_size=64)
upload_ids = st.uuids().map(str) | st.text(max_size=40)


def accepted(secret: bytes, token: str, name: str, upload_id: str) -> bool:
    try:
        upload_state.check(secret, token, name, upload_id)
    except BlobUploadInvalid:
        return False
    return True


@given(secrets, valid_names, upload_ids, st.integers(0, 2**63))
def test_a_packed_state_is_accepted_for_its_session(
    secret: bytes, name: str, upload_id: str, offset: int
) -> None:
    assert accepted(secret, upload_state.pack(secret, name, upload_id, offset), name, upload_id)


@given(secrets, secrets, valid_names, valid_names, upload_ids, upload_ids)
def test_a_state_is_refused_under_another_secret_or_for_another_session(
    secret: bytes, other_secret: bytes, name: str, other_name: str, upload_id: str, other_id: str
) -> None:
    token = upload_state.pack(secret, name, upload_id, 0)
    if other_secret != secret:
        assert not accepted(other_secret, token, name, upload_id)
    if (other_name, other_id) != (name, upload_id):
        assert not accepted(secret, token, other_name, other_id)


@given(secrets, valid_names, upload_ids, st.data())
def test_any_other_text_is_refused(
    secret: bytes, name: str, upload_id: str, data: st.DataObject
) -> None:
    genuine = upload_state.pack(secret, name, upload_id, 0)
    token = data.draw(mutated(st.just(genuine)) | st.text(max_size=200), label="token")
    assume(_decoded(token) != _decoded(genuine))
    assert not accepted(secret, token, name, upload_id)


@given(secrets, valid_names, upload_ids, json_values.map(json.dumps).map(str.encode)
       | st.binary(max_size=100))  # fmt: skip
def test_signed_messages_of_any_shape_are_checked_without_crashing(
    secret: bytes, name: str, upload_id: str, message: bytes
) -> None:
    """Even a message signed with the secret (what only a holder of the secret can make) is
    accepted only when it names this session."""
    mac = hmac.new(secret, message, hashlib.sha256).digest()
    token = base64.urlsafe_b64encode(mac + message).decode()
    if accepted(secret, token, name, upload_id):
        state = json.loads(message)
        assert state["Name"] == name and state["UUID"] == upload_id


def _decoded(token: str) -> bytes | None:
    """The bytes a lenient base64 decoder reads from the token (junk characters skipped)."""
    try:
        return base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4))
    except ValueError:
        return None
