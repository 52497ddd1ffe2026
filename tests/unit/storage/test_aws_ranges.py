"""AWS's address ranges for CloudFront's `ipfilteredby`: which addresses are inside."""

from __future__ import annotations

import pytest

from moorage.storage.aws_ranges import AWSRanges, parse

DOCUMENT = {
    "prefixes": [
        {"ip_prefix": "3.0.0.0/16", "region": "us-east-1"},
        {"ip_prefix": "3.1.0.0/16", "region": "US-EAST-1"},  # adjacent: one span with the first
        {"ip_prefix": "52.94.76.0/22", "region": "eu-west-1"},
        {"ip_prefix": "bogus", "region": "eu-west-1"},
        "not an entry",
    ],
    "ipv6_prefixes": [{"ipv6_prefix": "2600:1f18::/33", "region": "us-east-1"}],
}


def ranges(*regions: str) -> AWSRanges:
    found = AWSRanges("http://unused.invalid/", 3600, regions)
    found.v4, found.v6 = parse(DOCUMENT, found.regions)
    return found


@pytest.mark.parametrize(
    ("address", "inside"),
    [
        ("3.0.0.0", True),
        ("3.1.255.255", True),
        ("3.2.0.0", False),
        ("2.255.255.255", False),
        ("52.94.79.255", True),
        ("52.94.80.0", False),
        ("2600:1f18::1", True),
        ("2600:1f18:8000::", False),
        ("::ffff:3.1.2.3", True),  # an IPv4 client on a dual-stack socket
        ("not-an-address", False),
        (None, False),
    ],
)
def test_addresses_in_any_region(address: str | None, inside: bool) -> None:
    assert ranges().contains(address) is inside


def test_regions_are_matched_without_case_and_spaces() -> None:
    eu = ranges(" EU-West-1 ")
    assert eu.contains("52.94.76.1") and not eu.contains("3.0.0.1")
    assert not eu.contains("2600:1f18::1")
    assert (len(eu.v4), len(eu.v6)) == (1, 0)
    assert len(ranges().v4) == 2  # the two us-east-1 prefixes are one span


def test_a_document_of_another_shape_is_refused() -> None:
    with pytest.raises(ValueError):
        parse(["a list"], frozenset())
    with pytest.raises(ValueError):
        parse({"prefixes": "3.0.0.0/8"}, frozenset())
