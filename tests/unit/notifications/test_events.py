"""Records and distribution's event JSON (moorage.notifications.events)."""

from __future__ import annotations

import json

import pytest

from moorage.notifications import events
from moorage.registry.context import Client, RequestContext

CONTEXT: RequestContext = (
    "req-1",
    "PUT",
    Client(
        addr="10.0.0.7:41234",
        host="registry.example.com",
        useragent="docker/24.0 go/go1.20",
        user="alice",
        base_url="https://registry.example.com",
    ),
)
DIGEST = "sha256:" + "ab" * 32


def line(context: RequestContext = CONTEXT, **target: object) -> str:
    records = events.Records(events.Source("host:5000", "instance-1").fields)
    made = records.make(events.target(**target), context)  # type: ignore[arg-type]
    _, _, rest = made.split("\t", 2)  # a known id and time in place of the new ones
    return f"id-1\t1700000000123456789\t{rest}"


def test_a_manifest_push_is_distributions_event() -> None:
    references = events.references(
        json.dumps({
            "config": {"mediaType": "c", "digest": DIGEST, "size": 3, "extra": 1},
            "layers": [{"mediaType": "l", "digest": DIGEST, "size": 5, "urls": ["u"]}],
        }).encode()
    )  # fmt: skip
    fields = events.parse(
        line(action="push", repository="team/app", media_type="m", digest=DIGEST, size=9,
             tag="v1", references=references)
    )  # fmt: skip
    assert fields is not None
    assert events.expand(fields) == {
        "id": "id-1",
        "timestamp": "2023-11-14T22:13:20.123456789Z",
        "action": "push",
        "target": {
            "mediaType": "m",
            "size": 9,
            "digest": DIGEST,
            "length": 9,
            "repository": "team/app",
            "url": f"https://registry.example.com/v2/team/app/manifests/{DIGEST}",
            "tag": "v1",
            "references": [
                {"mediaType": "c", "digest": DIGEST, "size": 3},
                {"mediaType": "l", "digest": DIGEST, "size": 5, "urls": ["u"]},
            ],
        },
        "request": {
            "id": "req-1",
            "addr": "10.0.0.7:41234",
            "host": "registry.example.com",
            "method": "PUT",
            "useragent": "docker/24.0 go/go1.20",
        },
        "actor": {"name": "alice"},
        "source": {"addr": "host:5000", "instanceID": "instance-1"},
    }


def test_deletes_and_blobs_leave_out_what_distribution_leaves_out() -> None:
    request_id, method, client = CONTEXT
    anonymous = (request_id, method, client._replace(user="", addr="", host="", useragent=""))
    tag_delete = events.parse(line(anonymous, action="delete", repository="a/b", tag="t"))
    assert tag_delete is not None
    expanded = events.expand(tag_delete)
    assert expanded["target"] == {"repository": "a/b", "tag": "t"}
    assert expanded["request"] == {"id": "req-1", "method": "PUT", "useragent": ""}
    assert expanded["actor"] == {}
    blob = events.parse(
        line(action="mount", repository="a/b", media_type=events.BLOB_MEDIA_TYPE, digest=DIGEST,
             size=4, from_repository="c/d")
    )  # fmt: skip
    assert blob is not None
    target = events.expand(blob)["target"]
    assert target["url"] == f"https://registry.example.com/v2/a/b/blobs/{DIGEST}"
    assert target["fromRepository"] == "c/d"


@pytest.mark.parametrize(
    "text", ["tab\there", "new\nline", "back\\slash", "sep\x1erator", "zero\x00byte", "é ✓", ""]
)
def test_text_from_the_network_survives_the_record(text: str) -> None:
    _, method, client = CONTEXT
    hostile = (text, method, client._replace(useragent=text, host=text, user=text))
    record = line(hostile, action="pull", repository="a", media_type=text)
    assert "\n" not in record and "\x1e" not in record and "\x00" not in record
    fields = events.parse(record)
    assert fields is not None
    assert fields[events.USERAGENT] == fields[events.HOST] == fields[events.ACTOR] == text
    assert fields[events.REQUEST_ID] == fields[events.MEDIA_TYPE] == text


@pytest.mark.parametrize("torn", ["", "a\tb", "x\t" * 18 + "x", "i\tnot-a-number" + "\tx" * 17])
def test_what_is_not_a_record_is_refused(torn: str) -> None:
    assert events.parse(torn) is None


def test_timestamps_are_gos_rfc3339_in_utc() -> None:
    assert events.timestamp(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert events.timestamp(1_700_000_000_500_000_000) == "2023-11-14T22:13:20.5Z"


def test_ids_look_like_uuid4_do_not_repeat_and_stay_the_same_and_times_only_go_forward() -> None:
    records = events.Records("h:5000\tinst-1")
    lines = [records.make(events.target("pull", "a/b", tag="t"), CONTEXT) for _ in range(1000)]
    parsed = [events.parse(line) for line in lines]
    stamps = [fields[events.STAMP] for fields in parsed if fields]
    assert len(stamps) == 1000 and stamps == sorted(set(stamps))  # even within a clock tick
    made = [events.expand(fields)["id"] for fields in parsed if fields]
    assert len(set(made)) == 1000
    again = [events.expand(fields)["id"] for fields in map(events.parse, lines) if fields]
    assert again == made  # every delivery of an event carries the same id
    elsewhere = events.parse(lines[0].replace("\tinst-1", "\tinst-2"))
    assert elsewhere is not None and events.expand(elsewhere)["id"] != made[0]
    for made_id in made:
        parts = made_id.split("-")
        assert [len(p) for p in parts] == [8, 4, 4, 4, 12] and parts[2][0] == "4"
        assert parts[3][0] in "89ab"


def test_an_index_references_its_manifests() -> None:
    index = {"manifests": [{"mediaType": "m", "digest": DIGEST, "size": 1,
                            "platform": {"os": "linux", "architecture": "arm64"}}]}  # fmt: skip
    assert json.loads(events.references(json.dumps(index).encode())) == index["manifests"]
    assert events.references(b"not json") == ""
