"""Tags in version order."""

from __future__ import annotations

import pytest

from moorage.ui.versions import version_key


@pytest.mark.parametrize(
    ("tags", "ordered"),
    [
        (["v1.10", "v1.9", "v1.2"], ["v1.2", "v1.9", "v1.10"]),
        (["1.0.0", "1.0.0-rc.10", "1.0.0-rc.2", "1.0.0-alpha"],
         ["1.0.0-alpha", "1.0.0-rc.2", "1.0.0-rc.10", "1.0.0"]),
        (["latest", "10", "2", "main"], ["2", "10", "latest", "main"]),
        (["v2", "1.5", "v1.10"], ["1.5", "v1.10", "v2"]),  # a leading v is no part of the number
        (["B", "a", "C"], ["a", "B", "C"]),
    ],
)  # fmt: skip
def test_order(tags: list[str], ordered: list[str]) -> None:
    assert sorted(tags, key=version_key) == ordered
