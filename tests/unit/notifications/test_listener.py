"""The request path's half of notifications (moorage.notifications.listener): what a pull,
push and delete through the wrapped services spool, and that the wrappers leave no garbage
for the collector (a reference cycle held each request until the next collection)."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
from collections.abc import AsyncIterator, Iterator

import pytest

from moorage.api import context as context_module
from moorage.api.context import WrappedNamespace
from moorage.notifications import events
from moorage.notifications.listener import Filter, Recorder
from moorage.registry.context import Client, RequestContext
from moorage.registry.digest import Digest
from moorage.registry.repository import Registry, Repository
from moorage.storage.driver.inmemory import InMemoryDriver

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONTEXT: RequestContext = (
    "request-1",
    "GET",
    Client("127.0.0.1:4000", "registry.test", "test/1", "alice", "http://x"),
)


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _image(registry: Registry) -> bytes:
    """Pushes a config blob and a manifest naming it, as v1 of a/b, unwrapped."""
    repository = registry.repository("a/b")
    config = b"{}"
    digest = Digest.parse("sha256:" + hashlib.sha256(config).hexdigest())
    await repository.uploads.upload(digest, _body(config))
    payload = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": str(digest),
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    await repository.manifests.put("v1", payload, OCI_MANIFEST, [])
    return payload


class _Contexts:
    """Stands in for api.context.RequestContexts, which tells a served request's facts."""

    def current(self) -> RequestContext:
        return CONTEXT


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_pull_through_the_wrappers_leaves_no_reference_cycle(collector_off: None) -> None:
    spooled: list[str] = []

    async def append(lines: list[str]) -> None:
        spooled.extend(lines)

    async def scenario() -> None:
        registry = Registry(InMemoryDriver())
        payload = await _image(registry)
        recorder = Recorder(append, [Filter()], False, events.Records("registry.test:5000\ti"))
        namespace = WrappedNamespace(registry, recorder.wrap, _Contexts())  # type: ignore[arg-type]
        gc.collect()
        for _ in range(3):  # as a GET handler uses them: resolve, then get
            repository = namespace.repository("a/b")
            digest = await repository.manifests.resolve("v1")
            stored = await repository.manifests.get("v1", digest)
            assert stored.payload == payload
            del repository, stored
        assert len(spooled) == 3
        # everything the requests made was freed by reference counting alone
        assert gc.collect() == 0

    asyncio.run(scenario())
    pulls = [events.parse(line) for line in spooled]
    assert all(fields is not None for fields in pulls)
    assert {(f[events.ACTION], f[events.TAG], f[events.ACTOR]) for f in pulls if f} == {
        ("pull", "v1", "alice")
    }


def test_filtered_actions_spool_nothing() -> None:
    spooled: list[str] = []

    async def append(lines: list[str]) -> None:
        spooled.extend(lines)

    async def scenario() -> None:
        registry = Registry(InMemoryDriver())
        await _image(registry)
        ignoring = Filter(actions=frozenset({events.PULL}))
        recorder = Recorder(append, [ignoring], False, events.Records("registry.test:5000\ti"))
        repository = recorder.wrap(registry.repository("a/b"), lambda: CONTEXT)
        await repository.manifests.get("v1", await repository.manifests.resolve("v1"))

    asyncio.run(scenario())
    assert spooled == []


class _FreshViews:
    """A namespace that makes a repository object per call, as the pull-through cache does."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.made: Repository | None = None

    def repository(self, name: str) -> Repository:
        self.made = Repository(self.registry, name)
        return self.made


def test_the_wrapped_namespace_wraps_each_repository_object_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = Registry(InMemoryDriver())
    recorder = Recorder(lambda lines: None, [Filter()], False, events.Records("r.test:5000\ti"))
    kept = WrappedNamespace(registry, recorder.wrap, _Contexts())  # type: ignore[arg-type]
    first = kept.repository("a/b")
    assert kept.repository("a/b") is first  # the registry serves the same object
    assert kept.repository("a/c") is not first
    assert first.manifests is not registry.repository("a/b").manifests  # wrapped

    views = _FreshViews(registry)
    fresh = WrappedNamespace(views, recorder.wrap, _Contexts())  # type: ignore[arg-type]
    assert fresh.repository("a/b") is not fresh.repository("a/b")  # a new object, wrapped anew
    assert fresh.repository("a/b").inner is views.made  # type: ignore[attr-defined]

    monkeypatch.setattr(context_module, "MAX_WRAPPED", 4)
    for number in range(10):  # names come from clients: what is kept stays bounded
        kept.repository(f"n/{number}")
        assert len(kept._wrapped) <= 4
