from __future__ import annotations

import hashlib

import pytest

from moorage.registry import hashstate
from moorage.registry.hashstate import ResumableHash

# States distribution 2.8 wrote (`_uploads/<id>/hashstates/sha256/<offset>`) for a session that
# received nothing, then 100 bytes b"x", then 70 bytes b"y".
DISTRIBUTION_STATES = {
    0: "736861036a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19"
    + "00" * 64
    + "0000000000000000",
    100: "736861038b32cd46d0772d44e4158e19ed1472e235a42a1836eccee0e292295b85adffde"
    + "78" * 36
    + "00" * 28
    + "0000000000000064",
    170: "73686103c1de6594e5c3044c414b285fd4fad3354f170f4fe3122f5c98d25e62acf8c94d"
    + "79" * 42
    + "00" * 22
    + "00000000000000aa",
}
DISTRIBUTION_DATA = b"x" * 100 + b"y" * 70
LENGTHS = [0, 1, 55, 56, 63, 64, 65, 111, 112, 127, 128, 129, 1000, (1 << 20) + 3]


def resumable(algorithm: str) -> ResumableHash:
    hasher = hashstate.new(algorithm)
    assert isinstance(hasher, ResumableHash)
    return hasher


def test_resumable_hashing_is_available_here() -> None:
    assert hashstate.available()


@pytest.mark.parametrize("offset", sorted(DISTRIBUTION_STATES))
def test_states_are_those_distribution_writes(offset: int) -> None:
    hasher = resumable("sha256")
    hasher.update(DISTRIBUTION_DATA[:offset])
    assert hasher.marshal().hex() == DISTRIBUTION_STATES[offset]


@pytest.mark.parametrize("offset", sorted(DISTRIBUTION_STATES))
def test_a_state_distribution_wrote_continues_here(offset: int) -> None:
    hasher = hashstate.restore("sha256", bytes.fromhex(DISTRIBUTION_STATES[offset]))
    assert hasher is not None
    assert hasher.length == offset
    hasher.update(DISTRIBUTION_DATA[offset:] + b"more")
    assert hasher.hexdigest() == hashlib.sha256(DISTRIBUTION_DATA + b"more").hexdigest()


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
@pytest.mark.parametrize("length", LENGTHS)
def test_digest_matches_hashlib(algorithm: str, length: int) -> None:
    data = bytes(range(251)) * (length // 251 + 1)
    hasher = resumable(algorithm)
    hasher.update(data[:length])
    assert hasher.hexdigest() == hashlib.new(algorithm, data[:length]).hexdigest()
    assert hasher.length == length


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
@pytest.mark.parametrize("cut", LENGTHS)
def test_saved_and_restored_state_continues_the_hash(algorithm: str, cut: int) -> None:
    data = bytes(range(199)) * ((cut + 300) // 199 + 1)
    first = resumable(algorithm)
    first.update(data[:cut])
    state = first.marshal()
    assert len(state) == {"sha256": 108, "sha512": 204}[algorithm]
    assert state[:4] == {"sha256": b"sha\x03", "sha512": b"sha\x07"}[algorithm]
    assert int.from_bytes(state[-8:], "big") == cut
    resumed = hashstate.restore(algorithm, state)
    assert resumed is not None
    resumed.update(data[cut:])
    assert resumed.hexdigest() == hashlib.new(algorithm, data).hexdigest()


def test_hexdigest_and_copy_leave_the_running_hash_alone() -> None:
    hasher = resumable("sha256")
    hasher.update(b"a" * 70)
    copy = hasher.copy()
    assert hasher.hexdigest() == hashlib.sha256(b"a" * 70).hexdigest()
    hasher.update(b"b")
    copy.update(b"c")
    assert hasher.hexdigest() == hashlib.sha256(b"a" * 70 + b"b").hexdigest()
    assert copy.hexdigest() == hashlib.sha256(b"a" * 70 + b"c").hexdigest()


def test_malformed_states_are_refused() -> None:
    hasher = resumable("sha256")
    hasher.update(b"abc")
    state = hasher.marshal()
    assert hashstate.restore("sha256", state[:-1]) is None
    assert hashstate.restore("sha256", state + b"\0") is None
    assert hashstate.restore("sha256", b"sha\x02" + state[4:]) is None  # SHA-224's
    assert hashstate.restore("sha512", state) is None
    assert hashstate.restore("md5", state) is None
    assert hashstate.restore("sha256", b"") is None


def test_only_resumable_hashers_have_a_state() -> None:
    assert hashstate.marshal(hashlib.sha256()) is None
    assert hashstate.marshal(resumable("sha512")) is not None
