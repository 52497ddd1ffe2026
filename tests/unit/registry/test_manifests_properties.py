"""Properties of manifest parsing against hostile payloads: every payload is either a Manifest or
refused with ManifestInvalid, never another exception; valid manifests of the four kinds are
accepted as they are; and each way of spoiling a valid one (a field of the wrong type, nesting
thousands deep, numbers JSON or 64 bits cannot hold, NaN, invalid UTF-8, a repeated key) is
refused. `sniff_media_type`, which reads stored payloads, answers a media type for any bytes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from moorage.registry.errors import ManifestInvalid
from moorage.registry.manifests import Manifest, parse, sniff_media_type
from tests.strategies import (
    HUGE_NUMBERS,
    INDEX_TYPES,
    INT64_MAX,
    INVALID_UTF8,
    NON_JSON_NUMBERS,
    Pairs,
    Raw,
    encode,
    json_values,
    manifests,
    nested,
    positions,
    replaced,
    value_at,
    wrong_types,
)

content_types = st.none() | st.sampled_from(
    ["application/json", "text/plain", "application/vnd.oci.image.manifest.v1+json; charset=x"]
)


def parsed_or_refused(payload: bytes, content_type: str | None) -> Manifest | None:
    """The manifest, or None when refused with ManifestInvalid; anything else fails."""
    try:
        return parse(payload, content_type)
    except ManifestInvalid:
        return None


def assert_refused(payload: bytes, content_type: str | None) -> None:
    manifest = parsed_or_refused(payload, content_type)
    assert manifest is None, f"accepted: {payload[:300]!r}"


@given(st.binary(max_size=300), content_types)
def test_any_bytes_are_parsed_or_refused(payload: bytes, content_type: str | None) -> None:
    parsed_or_refused(payload, content_type)


@given(json_values, content_types)
def test_any_json_is_parsed_or_refused(document: Any, content_type: str | None) -> None:
    parsed_or_refused(json.dumps(document).encode(), content_type)


@given(manifests(), st.booleans())
def test_valid_manifests_are_accepted_as_they_are(
    generated: tuple[dict[str, Any], str], with_header: bool
) -> None:
    document, media_type = generated
    manifest = parse(encode(document), media_type if with_header else None)
    assert manifest.media_type == media_type
    if media_type in INDEX_TYPES:
        assert [str(d.digest) for d in manifest.children] == [
            child["digest"] for child in document["manifests"]
        ]
        assert manifest.blobs == ()
    else:
        assert [str(d.digest) for d in manifest.blobs] == [
            blob["digest"] for blob in [document["config"], *document["layers"]]
        ]
        assert [d.size for d in manifest.blobs] == [
            blob["size"] for blob in [document["config"], *document["layers"]]
        ]
    subject = document.get("subject")
    assert (manifest.subject and str(manifest.subject.digest)) == (subject and subject["digest"])
    assert sniff_media_type(encode(document)) == media_type


@given(st.data(), manifests())
def test_a_field_of_the_wrong_type_is_refused(
    data: st.DataObject, generated: tuple[dict[str, Any], str]
) -> None:
    document, media_type = generated
    path, value = data.draw(wrong_types(document), label="field")
    assert_refused(encode(replaced(document, path, value)), media_type)


@given(st.data(), manifests(), st.integers(10_001, 100_000))
def test_nesting_thousands_deep_is_refused(
    data: st.DataObject, generated: tuple[dict[str, Any], str], depth: int
) -> None:
    """Deeper than any decoder keeps (Go's stops at 10,000), anywhere in the document."""
    document, media_type = generated
    path = data.draw(st.sampled_from([(), *positions(document)]), label="where")
    deep = nested(depth)
    spoiled = replaced(document, path, deep) if path else Pairs((*document.items(), ("x", deep)))
    assert_refused(encode(spoiled), media_type)


@given(st.data(), manifests(), st.integers(1, 10_000))
def test_any_nesting_is_parsed_or_refused(
    data: st.DataObject, generated: tuple[dict[str, Any], str], depth: int
) -> None:
    document, media_type = generated
    path = data.draw(st.sampled_from([(), *positions(document)]), label="where")
    deep = nested(depth)
    spoiled = replaced(document, path, deep) if path else deep
    parsed_or_refused(encode(spoiled), media_type)


@given(st.data(), manifests(), st.sampled_from(NON_JSON_NUMBERS))
def test_nan_and_infinity_anywhere_are_refused(
    data: st.DataObject, generated: tuple[dict[str, Any], str], literal: bytes
) -> None:
    """They are not JSON (RFC 8259): a payload holding one is not a manifest, wherever it is."""
    document, media_type = generated
    path = data.draw(st.sampled_from([(), *positions(document)]), label="where")
    spoiled = (
        replaced(document, path, Raw(literal)) if path
        else Pairs((*document.items(), ("x", Raw(literal))))
    )  # fmt: skip
    assert_refused(encode(spoiled), media_type)


@given(st.data(), manifests(), st.sampled_from(HUGE_NUMBERS))
def test_sizes_and_versions_beyond_what_they_hold_are_refused(
    data: st.DataObject, generated: tuple[dict[str, Any], str], number: bytes
) -> None:
    """`size` is an int64 and `schemaVersion` is 2: a fraction, a negative number, 2**63 and
    beyond, or a float that overflows, in any of them, is refused."""
    document, media_type = generated
    fields = [p for p in positions(document) if p[-1] in ("size", "schemaVersion")]
    path = data.draw(st.sampled_from(fields), label="field")
    if number == b"-0" and path[-1] == "size":
        number = b"1e999"  # -0 is the valid size 0
    assert_refused(encode(replaced(document, path, Raw(number))), media_type)


@given(st.data(), manifests(), st.sampled_from(HUGE_NUMBERS))
def test_huge_numbers_anywhere_are_parsed_or_refused(
    data: st.DataObject, generated: tuple[dict[str, Any], str], number: bytes
) -> None:
    document, media_type = generated
    path = data.draw(st.sampled_from([(), *positions(document)]), label="where")
    spoiled = (
        replaced(document, path, Raw(number)) if path
        else Pairs((*document.items(), ("x", Raw(number))))
    )  # fmt: skip
    manifest = parsed_or_refused(encode(spoiled), media_type)
    if manifest is not None:
        assert all(0 <= d.size <= INT64_MAX for d in (*manifest.blobs, *manifest.children))


@given(st.data(), manifests(), st.sampled_from(INVALID_UTF8), st.sampled_from([False, True]))
def test_invalid_utf8_in_any_string_is_refused(
    data: st.DataObject, generated: tuple[dict[str, Any], str], bad: bytes, in_key: bool
) -> None:
    """A manifest is UTF-8 JSON: bytes that are not UTF-8 (including encoded surrogates, which
    a lenient decoder lets through) are refused, in a value or in a key."""
    document, media_type = generated
    if in_key:
        spoiled: Any = Pairs((*document.items(), (Raw(b'"a' + bad + b'"'), "x")))
    else:
        strings = [p for p in positions(document) if isinstance(value_at(document, p), str)]
        path = data.draw(st.sampled_from(strings), label="field")
        text = encode(value_at(document, path))
        at = data.draw(st.integers(1, len(text) - 1), label="at")
        spoiled = replaced(document, path, Raw(text[:at] + bad + text[at:]))
    assert_refused(encode(spoiled), media_type)


@given(manifests(), st.sampled_from(["utf-16", "utf-16-be", "utf-32", "utf-8-sig"]))
def test_payloads_in_other_encodings_are_refused(
    generated: tuple[dict[str, Any], str], encoding: str
) -> None:
    """UTF-16 and UTF-32 (which json.loads detects by itself) and a byte order mark are not the
    UTF-8 JSON a manifest is."""
    document, media_type = generated
    assert_refused(encode(document).decode().encode(encoding), media_type)


@given(st.data(), manifests(), st.booleans())
def test_a_repeated_key_is_refused(
    data: st.DataObject, generated: tuple[dict[str, Any], str], same_value: bool
) -> None:
    """Decoders disagree on which of two equal keys wins: a payload that repeats one could be
    read as two manifests, so it is refused, at any level."""
    document, media_type = generated
    objects = [
        p for p in [(), *positions(document)]
        if isinstance(value_at(document, p), dict) and value_at(document, p)
    ]  # fmt: skip
    path = data.draw(st.sampled_from(objects), label="object")
    target = value_at(document, path)
    key = data.draw(st.sampled_from(sorted(target)), label="key")
    again = target[key] if same_value else data.draw(json_values, label="second value")
    members = (*target.items(), (key, again))
    spoiled = replaced(document, path, Pairs(members)) if path else Pairs(members)
    assert_refused(encode(spoiled), media_type)


@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_sniff_answers_a_media_type_for_any_bytes(payload: bytes) -> None:
    assert isinstance(sniff_media_type(payload), str)


@given(st.integers(1_000, 100_000))
def test_sniff_answers_a_media_type_for_deep_nesting(depth: int) -> None:
    assert isinstance(sniff_media_type(nested(depth).text), str)
