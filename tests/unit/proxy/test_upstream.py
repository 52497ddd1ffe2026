"""The upstream client against a registry peer: the authentication it asks for, and every kind
of answer translated into the domain's errors."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Awaitable, Callable

import pytest

from moorage.auth.errors import TooManyRequests
from moorage.proxy.upstream import Upstream
from moorage.registry.digest import Digest
from moorage.registry.errors import BlobUnknown, ManifestUnknown, NameUnknown, Unavailable
from tests.unit.proxy.peers import Peer, serving

PAYLOAD = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
DIGEST = Digest.of(PAYLOAD)
BLOB = b"blob content"
BLOB_DIGEST = Digest.of(BLOB)


def peer(**settings: object) -> Peer:
    found = Peer(**settings)  # type: ignore[arg-type]
    found.manifests[("library/app", "v1")] = PAYLOAD
    found.manifests[("library/app", str(DIGEST))] = PAYLOAD
    found.blobs[str(BLOB_DIGEST)] = BLOB
    found.tags["library/app"] = ["v1", "v2", "latest"]
    return found


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def test_bearer_tokens_one_per_scope_with_the_credentials() -> None:
    async def scenario() -> None:
        async with serving(peer(auth="bearer")) as registry:
            upstream = Upstream(registry.url, "cache", "pw")
            try:
                for _ in range(3):
                    assert (
                        await upstream.manifest_digest("library/app", "v1", ManifestUnknown)
                        == DIGEST
                    )
                payload, content_type, named = await upstream.manifest(
                    "library/app", "v1", ManifestUnknown
                )
                assert (payload, named) == (PAYLOAD, DIGEST)
                assert content_type == "application/vnd.oci.image.manifest.v1+json"
                assert await upstream.blob_size("library/app", BLOB_DIGEST, BlobUnknown) == len(
                    BLOB
                )
                with pytest.raises(ManifestUnknown):
                    await upstream.manifest("other/app", "v1", ManifestUnknown)
            finally:
                await upstream.close()
            assert registry.token_requests == [
                {"scope": "repository:library/app:pull", "service": "peer", "user": "cache"},
                {"scope": "repository:other/app:pull", "service": "peer", "user": "cache"},
            ]
            # Only the very first request went without a token.
            assert registry.asked["HEAD /v2/library/app/manifests/v1"] == 4

    run(scenario)


def test_a_refused_token_is_fetched_again_once() -> None:
    async def scenario() -> None:
        async with serving(peer(auth="bearer")) as registry:
            upstream = Upstream(registry.url)
            try:
                await upstream.manifest_digest("library/app", "v1", ManifestUnknown)
                registry.valid_tokens.clear()  # the upstream revokes its tokens
                assert (
                    await upstream.manifest_digest("library/app", "v1", ManifestUnknown) == DIGEST
                )
            finally:
                await upstream.close()
            assert len(registry.token_requests) == 2
            assert "user" not in registry.token_requests[0]  # anonymous: no credentials

    run(scenario)


def test_a_token_server_refusing_the_credentials_is_unavailable() -> None:
    async def scenario() -> None:
        async with serving(peer(auth="bearer")) as registry:
            upstream = Upstream(registry.url, "cache", "wrong")
            try:
                with pytest.raises(Unavailable, match=r"token server .* HTTP 401 .*credentials"):
                    await upstream.manifest_digest("library/app", "v1", ManifestUnknown)
            finally:
                await upstream.close()

    run(scenario)


def test_basic_credentials_once_asked_for() -> None:
    async def scenario() -> None:
        async with serving(peer(auth="basic")) as registry:
            upstream = Upstream(registry.url, "cache", "pw")
            wrong = Upstream(registry.url, "cache", "nope")
            anonymous = Upstream(registry.url)
            try:
                for _ in range(2):
                    assert await upstream.tags("library/app", NameUnknown) == ["latest", "v1", "v2"]
                assert registry.asked["GET /v2/library/app/tags/list"] == 3  # one 401 first
                with pytest.raises(NameUnknown, match="refused library/app"):
                    await wrong.tags("library/app", NameUnknown)
                with pytest.raises(NameUnknown, match="refused"):
                    await anonymous.tags("library/app", NameUnknown)
            finally:
                for each in (upstream, wrong, anonymous):
                    await each.close()

    run(scenario)


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (404, ManifestUnknown, "not found upstream"),
        (403, ManifestUnknown, "refused"),
        (429, TooManyRequests, "limits requests"),
        (500, Unavailable, "answered HTTP 500"),
        (502, Unavailable, "answered HTTP 502"),
    ],
)
def test_answers_become_domain_errors(status: int, error: type[Exception], message: str) -> None:
    async def scenario() -> None:
        async with serving(peer(status=status)) as registry:
            upstream = Upstream(registry.url)
            try:
                with pytest.raises(error, match=message) as raised:
                    await upstream.manifest("library/app", "v1", ManifestUnknown)
            finally:
                await upstream.close()
            if status == 429:
                assert raised.value.headers == {"Retry-After": "7"}  # type: ignore[attr-defined]

    run(scenario)


def test_an_upstream_that_does_not_answer_is_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]

    async def scenario() -> None:
        upstream = Upstream(f"http://127.0.0.1:{port}")
        try:
            for _ in range(3):
                with pytest.raises(Unavailable, match="cannot be reached"):
                    await upstream.blob_size("library/app", BLOB_DIGEST, BlobUnknown)
        finally:
            await upstream.close()

    run(scenario)
    # Said once, not per request.
    assert sum("cannot be reached" in record.message for record in caplog.records) == 1


def test_tags_follow_the_pages_of_this_upstream_only() -> None:
    async def scenario() -> None:
        registry = peer(page=2)
        registry.tags["library/app"] = ["e", "d", "c", "b", "a", ".bad", "-also", 5]  # type: ignore[list-item]
        async with serving(registry):
            upstream = Upstream(registry.url)
            try:
                # What is no tag is left out, on any page.
                assert await upstream.tags("library/app", NameUnknown) == ["a", "b", "c", "d", "e"]
                registry.link_host = "http://elsewhere.invalid"
                assert await upstream.tags("library/app", NameUnknown) == []  # page 1: -also, .bad
            finally:
                await upstream.close()

    run(scenario)


def test_a_manifest_over_the_size_limit_is_refused() -> None:
    async def scenario() -> None:
        registry = peer()
        registry.manifests[("library/big", "v1")] = b" " * (4 * 1024 * 1024 + 1)
        async with serving(registry):
            upstream = Upstream(registry.url)
            try:
                with pytest.raises(Unavailable, match="larger than"):
                    await upstream.manifest("library/big", "v1", ManifestUnknown)
            finally:
                await upstream.close()

    run(scenario)


def test_blob_bodies_stream() -> None:
    async def scenario() -> None:
        async with serving(peer()) as registry:
            upstream = Upstream(registry.url)
            try:
                response, size = await upstream.open_blob("library/app", BLOB_DIGEST, BlobUnknown)
                async with response:
                    assert size == len(BLOB)
                    assert await response.read() == BLOB
                with pytest.raises(BlobUnknown):
                    await upstream.open_blob("library/app", Digest.of(b"none"), BlobUnknown)
            finally:
                await upstream.close()
            assert hashlib.sha256(BLOB).hexdigest() == BLOB_DIGEST.hex

    run(scenario)
