"""Repository names and tags against the distribution spec's grammar:

name      = component ("/" component)*          at most 255 characters (distribution's limit)
component = [a-z0-9]+ (separator [a-z0-9]+)*
separator = "." | "_" | "__" | "-"+
tag       = [A-Za-z0-9_][A-Za-z0-9._-]{0,127}
"""

from __future__ import annotations

import pytest

from moorage.registry.digest import Digest
from moorage.registry.errors import DigestInvalid, NameInvalid, ReferenceInvalid, TagInvalid
from moorage.registry.names import (
    MAX_NAME_LENGTH,
    check_name,
    check_tag,
    is_tag,
    parse_reference,
)


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "0",
        "alpine",
        "library/alpine",
        "a/b/c/d/e",
        "my.registry.name",
        "a.b",
        "a_b",
        "a__b",
        "a-b",
        "a--b",
        "a---b",
        "a-b_c.d__e",
        "0x/1.2/3-4",
        "project/sub_project/image-name",
        "a" * MAX_NAME_LENGTH,
        "/".join(["a" * 63] * 4),  # 255
    ],
)
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "A",
        "Alpine",
        "library/Alpine",
        "aB",
        "-a",
        "a-",
        ".a",
        "a.",
        "_a",
        "a_",
        "a..b",
        "a.-b",
        "a_.b",
        "a___b",
        "a-_b",
        "a/",
        "/a",
        "a//b",
        "a b",
        "a:b",
        "a@b",
        "a+b",
        "caf\u00e9",
        "a\n",
        "a/_layers",
        "a/../b",
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(NameInvalid) as caught:
        check_name(name)
    assert caught.value.detail == {"name": name}


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "the name is empty"),
        ("a//b", "component 2 is empty"),
        ("/a", "component 1 is empty"),
        ("team/App", "component 2 ('App') holds 'A'"),
        ("team/a b:c", "component 2 ('a b:c') holds ' ', ':'"),
        ("a\x00", "component 1 ('a\\x00') holds '\\x00'"),
        ("team/-app", "component 2 ('-app') must start and end with a letter or digit"),
        ("team/app./x", "component 2 ('app.') must start and end"),
        ("a..b", "'..' is not a separator"),
        ("x/a___b", "component 2 ('a___b'): '___' is not a separator"),
        ("a/../b", "component 2 ('..') must start and end with a letter or digit"),
        ("a" * 256, "256 characters, longer than 255"),
    ],
)
def test_refusals_say_which_rule_and_where(name: str, says: str) -> None:
    with pytest.raises(NameInvalid) as caught:
        check_name(name)
    assert caught.value.message.startswith("invalid repository name: ")
    assert says in caught.value.message, caught.value.message


def test_name_length_limit() -> None:
    assert MAX_NAME_LENGTH == 255
    check_name("a" * 255)
    with pytest.raises(NameInvalid, match="longer than 255"):
        check_name("a" * 256)
    with pytest.raises(NameInvalid, match="longer than 255"):
        check_name("/".join(["a" * 63] * 4) + "/b")


@pytest.mark.parametrize(
    "tag",
    ["latest", "v1.0.0", "1", "A", "_", "_private", "Release-2024_01.rc1", "a" * 128, "x..y--z__"],
)
def test_valid_tags(tag: str) -> None:
    assert check_tag(tag) == tag
    assert is_tag(tag)


@pytest.mark.parametrize(
    "tag",
    [
        "",
        ".hidden",
        "-dash",
        "a" * 129,
        "a/b",
        "a:b",
        "a+b",
        "a b",
        "a\n",
        "caf\u00e9",
        "sha256:" + "0" * 64,
    ],
)
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(TagInvalid) as caught:
        check_tag(tag)
    assert caught.value.detail == {"tag": tag}
    assert not is_tag(tag)


@pytest.mark.parametrize("reference", ["latest", "v1.0", "_", "a" * 128])
def test_references_that_are_tags(reference: str) -> None:
    assert parse_reference(reference) == reference


def test_references_that_are_digests() -> None:
    digest = "sha256:" + "0" * 64
    assert parse_reference(digest) == Digest.parse(digest)


@pytest.mark.parametrize(
    ("reference", "error", "says"),
    [
        ("sha256:abc", DigestInvalid, "sha256 takes 64 lowercase hex characters"),
        ("md5:" + "0" * 32, DigestInvalid, "unsupported digest algorithm 'md5'"),
        ("-latest", ReferenceInvalid, "neither a tag"),
        ("a" * 129, ReferenceInvalid, "neither a tag"),
        ("Sha256:" + "0" * 64, ReferenceInvalid, "nor a digest"),
        ("v1 ", ReferenceInvalid, "neither a tag"),
    ],
)
def test_references_that_are_neither(reference: str, error: type[Exception], says: str) -> None:
    with pytest.raises(error) as caught:
        parse_reference(reference)
    assert says in str(caught.value)
