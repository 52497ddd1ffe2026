"""Tags list, catalog, names and the API's generic answers, against a real server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.api import Client, error_codes
from tests.servers import Server, moorage_config, run_moorage


@pytest.fixture
def client(moorage: Server) -> Client:
    return Client(moorage.url)


def _tag_all(client: Client, name: str, tags: list[str]) -> None:
    payload, _ = client.push_image(name, tags[0])
    for tag in tags[1:]:
        assert client.put_manifest(name, tag, payload).status_code == 201


def test_tags_are_listed_in_lexical_order(client: Client) -> None:
    _tag_all(client, "app", ["v2", "latest", "V1", "1.0", "a_b"])
    response = client.request("GET", "/v2/app/tags/list")
    assert response.status_code == 200
    assert response.json() == {"name": "app", "tags": ["1.0", "V1", "a_b", "latest", "v2"]}
    assert "Link" not in response.headers


def test_tags_pagination_walks_every_tag_once(client: Client) -> None:
    tags = [f"t{i:02d}" for i in range(7)]
    _tag_all(client, "app", tags)
    seen: list[str] = []
    path = "/v2/app/tags/list?n=3"
    pages = 0
    while path:
        response = client.request("GET", path)
        assert response.status_code == 200
        seen += response.json()["tags"]
        pages += 1
        link = response.headers.get("Link")
        if link:
            assert link.endswith('>; rel="next"')
            path = link[1 : link.index(">")]
        else:
            path = ""
    assert seen == tags
    assert pages == 3


def test_tags_after_last(client: Client) -> None:
    _tag_all(client, "app", ["a", "b", "c", "d"])
    response = client.request("GET", "/v2/app/tags/list", params={"last": "b", "n": 1})
    assert response.json()["tags"] == ["c"]
    assert response.headers["Link"] == '</v2/app/tags/list?n=1&last=c>; rel="next"'
    assert client.request("GET", "/v2/app/tags/list", params={"last": "b"}).json()["tags"] == [
        "c",
        "d",
    ]


def test_tags_n_zero_is_an_empty_list(client: Client) -> None:
    _tag_all(client, "app", ["a"])
    response = client.request("GET", "/v2/app/tags/list", params={"n": 0})
    assert response.json()["tags"] == []


@pytest.mark.parametrize("n", ["-1", "many"])
def test_bad_page_size_is_400(client: Client, n: str) -> None:
    _tag_all(client, "app", ["a"])
    response = client.request("GET", "/v2/app/tags/list", params={"n": n})
    assert response.status_code == 400
    assert error_codes(response) == ["PAGINATION_NUMBER_INVALID"]


def test_tags_of_an_unknown_repository_is_name_unknown(client: Client) -> None:
    response = client.request("GET", "/v2/nothing/here/tags/list")
    assert response.status_code == 404
    assert error_codes(response) == ["NAME_UNKNOWN"]


def test_catalog_lists_nested_repositories_in_order(client: Client) -> None:
    for name in ("zeta", "team/app", "team/app/sub", "alpha", "team/b-c"):
        client.push_image(name, "v1", seed=name)
    client.push_blob("blobs-only", b"no manifest yet")  # listed, as distribution lists it
    response = client.request("GET", "/v2/_catalog")
    assert response.status_code == 200
    assert response.json() == {
        "repositories": ["alpha", "blobs-only", "team/app", "team/app/sub", "team/b-c", "zeta"]
    }


def test_catalog_pagination(client: Client) -> None:
    names = [f"repo{i}" for i in range(5)]
    for name in names:
        client.push_image(name, "v1", seed=name)
    first = client.request("GET", "/v2/_catalog", params={"n": 2})
    assert first.json()["repositories"] == names[:2]
    assert first.headers["Link"] == '</v2/_catalog?n=2&last=repo1>; rel="next"'
    rest = client.request("GET", "/v2/_catalog", params={"n": 10, "last": "repo1"})
    assert rest.json()["repositories"] == names[2:]
    assert "Link" not in rest.headers


def test_catalog_page_is_capped_by_maxentries(tmp_path: Path) -> None:
    config = moorage_config(tmp_path / "data", 0, catalog={"maxentries": 2})
    with run_moorage(tmp_path, config) as server:
        client = Client(server.url)
        for name in ("a", "b", "c"):
            client.push_image(name, "v1", seed=name)
        response = client.request("GET", "/v2/_catalog", params={"n": 100})
        assert response.json()["repositories"] == ["a", "b"]
        assert "last=b" in response.headers["Link"]


def test_empty_registry_catalog(client: Client) -> None:
    assert client.request("GET", "/v2/_catalog").json() == {"repositories": []}


@pytest.mark.parametrize(
    "name", ["UPPER", "a//b", "-lead", "trail-", "a..b", "x" * 256, "a/_manifests"]
)
def test_invalid_names_are_name_invalid(client: Client, name: str) -> None:
    response = client.request("GET", f"/v2/{name}/tags/list")
    assert response.status_code == 400
    assert error_codes(response) == ["NAME_INVALID"]


def test_unknown_endpoint_is_an_error_envelope(client: Client) -> None:
    response = client.request("GET", "/v2/app/unknown-thing")
    assert response.status_code == 404
    assert error_codes(response)
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_wrong_method_is_unsupported(client: Client) -> None:
    response = client.request("POST", "/v2/app/tags/list")
    assert response.status_code == 405
    assert error_codes(response) == ["UNSUPPORTED"]


def test_tags_list_follows_every_change_once_cached(tmp_path: Path) -> None:
    """The tag list is cached against its directory's mtime: tags added or removed later, by
    this process or by another one on the same root, still show at once."""
    root = tmp_path / "data"
    with (
        run_moorage(tmp_path / "a", root=root) as first,
        run_moorage(tmp_path / "b", root=root) as other,
    ):
        client, elsewhere = Client(first.url), Client(other.url)
        _tag_all(client, "app", ["a", "b"])
        assert client.request("GET", "/v2/app/tags/list").json()["tags"] == ["a", "b"]
        time.sleep(1.2)  # old enough to be cached
        assert client.request("GET", "/v2/app/tags/list").json()["tags"] == ["a", "b"]
        payload = client.request("GET", "/v2/app/manifests/a").content
        for tag in ("c", "d"):  # within one clock tick of each other
            assert elsewhere.put_manifest("app", tag, payload).status_code == 201
        assert client.request("GET", "/v2/app/tags/list").json()["tags"] == ["a", "b", "c", "d"]
        time.sleep(1.2)
        assert client.request("GET", "/v2/app/tags/list").json()["tags"] == ["a", "b", "c", "d"]
        assert elsewhere.request("DELETE", "/v2/app/manifests/b").status_code == 202
        assert client.request("GET", "/v2/app/tags/list").json()["tags"] == ["a", "c", "d"]
