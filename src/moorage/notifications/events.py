"""Events in distribution's JSON, and the compact records they travel in until delivery.

On the request path an event is a record: one line of tab-separated facts, cheap to make and
to write (`Records.make`). The deliverer expands it into distribution's event object
(`expand`), the same fields with the same meaning:

    {"id", "timestamp", "action",
     "target": {"mediaType", "size", "digest", "length", "repository", "fromRepository",
                "url", "tag", "references"},
     "request": {"id", "addr", "host", "method", "useragent"},
     "actor": {"name"}, "source": {"addr", "instanceID"}}

Empty fields are left out where distribution leaves them out (`omitempty`); `request.id`,
`method` and `useragent` are always there, as are `actor` and `source`, empty or not.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from moorage.registry.context import Client, RequestContext

# The envelope's media type: current distribution's (2.8 sent `...events.v1+json`).
EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v2+json"
BLOB_MEDIA_TYPE = "application/octet-stream"  # what distribution reports for any blob
PULL, PUSH, MOUNT, DELETE = "pull", "push", "mount", "delete"
# Descriptor fields a reference keeps (an OCI descriptor's, as distribution marshals them).
REFERENCE_FIELDS = (
    "mediaType", "digest", "size", "urls", "annotations", "data", "platform", "artifactType",
)  # fmt: skip

# A record's fields, in order. Text that comes from the network is escaped (`escaped`).
(ID, STAMP, ACTION, REPOSITORY, MEDIA_TYPE, DIGEST, SIZE, TAG, FROM, REFERENCES, REQUEST_ID,
 METHOD, ADDR, HOST, USERAGENT, ACTOR, BASE_URL, SOURCE, INSTANCE) = range(19)  # fmt: skip
FIELDS = INSTANCE + 1
_ESCAPED_FIELDS = (MEDIA_TYPE, BASE_URL, REQUEST_ID, ADDR, HOST, METHOD, USERAGENT, ACTOR)
_SPECIAL = re.compile(r"[\\\t\n\x1e\x00]")
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\x1e": "\\s", "\x00": "\\0"}
_UNESCAPE = re.compile(r"\\(.)")
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "s": "\x1e", "0": "\x00"}

_encode = json.JSONEncoder(separators=(",", ":")).encode


def escaped(text: str) -> str:
    """The text with the characters that frame records (tab, newline, \\x1e, and the zero
    byte that marks what is not written yet) and backslash escaped; unchanged (the usual
    case) when it has none."""
    if text.isprintable() and "\\" not in text:  # fast: no control character at all
        return text
    return _SPECIAL.sub(lambda match: _ESCAPES[match.group()], text)


def _unescaped(text: str) -> str:
    if "\\" not in text:
        return text
    return _UNESCAPE.sub(lambda match: _UNESCAPES.get(match.group(1), match.group(1)), text)


@dataclass(frozen=True)
class Source:
    """The registry node events come from: `hostname:port` and an id that changes with every
    start of the process, as distribution reports them."""

    addr: str
    instance: str

    @property
    def fields(self) -> str:
        return f"{self.addr}\t{self.instance}"

    @classmethod
    def of(cls, http_addr: str) -> Source:
        port = http_addr.rpartition(":")[2]
        host = socket.gethostname()
        return cls(escaped(f"{host}:{port}" if port.isdigit() else http_addr), _uuid4())


def _uuid4() -> str:
    return _uuid_shaped(secrets.token_hex(16))


def _uuid_shaped(raw: str) -> str:
    """32 hex digits as a version-4 UUID: the version and variant set, the rest as given."""
    variant = "89ab"[int(raw[16], 16) % 4]
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-{variant}{raw[17:20]}-{raw[20:]}"


def event_id(instance: str, stamp: int) -> str:
    """The id of the event a record made by Records stands for (the record has none): shaped
    as a version-4 UUID and made from what tells the event from every other, the instance id
    of the process that made it and its time (which never repeats within the process), so
    each delivery of the event, from any replica, carries the same id."""
    made = hashlib.blake2b(f"{instance}\t{stamp}".encode(), digest_size=16).hexdigest()
    return _uuid_shaped(made)


MAX_CLIENTS = 4096  # clients whose part of the records is kept


class Records:
    """Makes the records of events. Each gets a time in nanoseconds that never goes back
    within the process (records are merged by it, and an event's id is made from it and the
    process's instance id: event_id), and no id of its own, which would cost a formatting per
    request. The client's part of a record (its facts and the source) is the same for all
    of a client's requests: it is kept once made. One per process: whatever writes records
    (make, or the file spool's own fast path) takes its times from here."""

    __slots__ = ("_clients", "_source", "last")

    def __init__(self, source: str) -> None:
        self._source = source  # Source.fields
        self.last = 0  # the time of the last record made; the next one's is later
        self._clients: dict[Client, str] = {}

    def make(self, target: str, context: RequestContext) -> str:
        """A new event's record, without its line end: no id, its time, `target` (target() of
        what happened) and the facts of the request that did it."""
        request_id, method, client = context
        part = self._clients.get(client)
        if part is None:
            part = self.client_part(client)
        # a method is a token (nothing to escape)
        return f"\t{self.stamp()}\t{target}\t{escaped(request_id)}\t{method}\t{part}"

    def stamp(self) -> int:
        """A new record's time: now, or just after the last one's."""
        stamp = time.time_ns()
        if stamp <= self.last:
            stamp = self.last + 1
        self.last = stamp
        return stamp

    def client_part(self, client: Client) -> str:
        """The part of a record that tells who asked (make() puts it last): the client's
        address, host, user agent, user and URL base, then the source."""
        part = self._clients.get(client)
        if part is None:
            if len(self._clients) >= MAX_CLIENTS:  # clients come from the network: bounded
                self._clients.clear()
            part = self._clients[client] = (
                f"{escaped(client.addr)}\t{escaped(client.host)}\t{escaped(client.useragent)}\t"
                f"{escaped(client.user)}\t{escaped(client.base_url)}\t{self._source}"
            )
        return part


def target(
    action: str,
    repository: str,
    media_type: str = "",
    digest: str = "",
    size: int = 0,
    tag: str = "",
    from_repository: str = "",
    references: str = "",
) -> str:
    """The part of a record that says what happened to what: the same for every pull of a
    manifest by the same name. `references` is the JSON of what a manifest references (when
    events include them). Repository names, tags and digests are in their grammars, which
    exclude the framing characters; the media type is escaped."""
    return (
        f"{action}\t{repository}\t{escaped(media_type)}\t{digest}\t{size}\t{tag}\t"
        f"{from_repository}\t{references}"
    )


def parse(line: str) -> list[Any] | None:
    """A record's fields (text unescaped, numbers as int); None when the line is no record
    (a torn write)."""
    fields: list[Any] = line.split("\t")
    if len(fields) != FIELDS:
        return None
    try:
        fields[STAMP] = int(fields[STAMP])
        fields[SIZE] = int(fields[SIZE])
    except ValueError:
        return None
    for position in _ESCAPED_FIELDS:
        fields[position] = _unescaped(fields[position])
    return fields


@functools.lru_cache(maxsize=64)
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def timestamp(stamp: int) -> str:
    """RFC 3339 with nanoseconds, trailing zeros dropped, as Go marshals a UTC time."""
    seconds, nanos = divmod(stamp, 1_000_000_000)
    whole = _second(seconds)
    fraction = f".{nanos:09d}".rstrip("0") if nanos else ""
    return f"{whole}{fraction}Z"


def expand(fields: Sequence[Any]) -> dict[str, Any]:
    """distribution's event object for a record's fields."""
    target: dict[str, Any] = {}
    if fields[MEDIA_TYPE]:
        target["mediaType"] = fields[MEDIA_TYPE]
    if fields[SIZE]:
        target["size"] = fields[SIZE]
    if fields[DIGEST]:
        target["digest"] = fields[DIGEST]
    if fields[SIZE]:
        target["length"] = fields[SIZE]
    target["repository"] = fields[REPOSITORY]
    if fields[FROM]:
        target["fromRepository"] = fields[FROM]
    if fields[ACTION] != DELETE and fields[DIGEST]:
        kind = "blobs" if fields[MEDIA_TYPE] == BLOB_MEDIA_TYPE else "manifests"
        target["url"] = f"{fields[BASE_URL]}/v2/{fields[REPOSITORY]}/{kind}/{fields[DIGEST]}"
    if fields[TAG]:
        target["tag"] = fields[TAG]
    if fields[REFERENCES]:
        target["references"] = json.loads(fields[REFERENCES])
    request: dict[str, Any] = {"id": fields[REQUEST_ID]}
    if fields[ADDR]:
        request["addr"] = fields[ADDR]
    if fields[HOST]:
        request["host"] = fields[HOST]
    request["method"] = fields[METHOD]
    request["useragent"] = fields[USERAGENT]
    source: dict[str, Any] = {}
    if fields[SOURCE]:
        source["addr"] = fields[SOURCE]
    if fields[INSTANCE]:
        source["instanceID"] = fields[INSTANCE]
    return {
        "id": fields[ID] or event_id(fields[INSTANCE], fields[STAMP]),
        "timestamp": timestamp(fields[STAMP]),
        "action": fields[ACTION],
        "target": target,
        "request": request,
        "actor": {"name": fields[ACTOR]} if fields[ACTOR] else {},
        "source": source,
    }


def envelope(events: Sequence[str]) -> bytes:
    """The body of one delivery: `{"events": [...]}` of events already encoded."""
    return ('{"events":[' + ",".join(events) + "]}").encode()


def encode(event: dict[str, Any]) -> str:
    return _encode(event)


def references(payload: bytes) -> str:
    """The JSON of what a manifest references, as distribution lists them: an image's config
    then its layers, an index's manifests; each descriptor with the fields it has. "" for
    none."""
    try:
        document = json.loads(payload)
    except ValueError:
        return ""
    if not isinstance(document, dict):
        return ""
    found: list[Any] = []
    if isinstance(document.get("manifests"), list):
        found = document["manifests"]
    else:
        if isinstance(document.get("config"), dict):
            found.append(document["config"])
        if isinstance(document.get("layers"), list):
            found += document["layers"]
    kept = [
        {key: item[key] for key in REFERENCE_FIELDS if key in item}
        for item in found
        if isinstance(item, dict)
    ]
    return _encode(kept) if kept else ""
