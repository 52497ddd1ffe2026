"""Repository names and tags against the distribution spec's grammar:

name      = component ("/" component)*          at most 255 characters (distribution's limit)
component = [a-z0-9]+ (separator [a-z0-9]+)*
separator = "." | "_" | "__" | "-"+
tag       = [A-Za-z0-9_][A-Za-z0-9._-]{0,127}
"""

from __future__ import annotations

import pytest

from moorage.registry.errors import NameInvalid, TagInvalid
from moorage.registry.names import MAX_NAME_LENGTH, check_name, check_tag, is_tag


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
