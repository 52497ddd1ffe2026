from __future__ import annotations

from pathlib import Path

import pytest

from moorage.config.loader import ConfigError, load
from moorage.proxy import DEFAULT_TTL, from_config, ttl_seconds
from moorage.proxy.routes import Route, Routes
from moorage.proxy.upstream import Upstream, is_docker_hub
from moorage.registry.repository import Registry, Repository
from moorage.storage import driver as drivers

HUB = Upstream("https://registry-1.docker.io")
GHCR = Upstream("https://ghcr.io")
OWN = Upstream("http://127.0.0.1:5000")


@pytest.mark.parametrize(
    "url",
    ["https://registry-1.docker.io", "https://index.docker.io/", "https://docker.io",
     "https://registry.hub.docker.com"],
)  # fmt: skip
def test_docker_hub_is_recognised(url: str) -> None:
    assert is_docker_hub(url)


def test_other_registries_are_not_docker_hub() -> None:
    assert not is_docker_hub("https://ghcr.io")
    assert not is_docker_hub("https://docker.io.example.com")


def test_the_prefix_is_taken_off_and_docker_hub_official_images_go_under_library() -> None:
    hub = Route("hub", HUB, None)
    assert hub.remote("hub/alpine") == "library/alpine"
    assert hub.remote("hub/library/alpine") == "library/alpine"
    assert hub.remote("hub/bitnami/redis") == "bitnami/redis"
    assert Route("ghcr", GHCR, None).remote("ghcr/alpine") == "alpine"
    assert Route("mirrors/ghcr", GHCR, None).remote("mirrors/ghcr/org/app") == "org/app"
    # distribution's remoteurl: every name, unprefixed
    assert Route("", HUB, None).remote("alpine") == "library/alpine"
    assert Route("", OWN, None).remote("alpine") == "alpine"


def test_a_name_goes_to_the_route_of_its_prefix_else_to_remoteurl() -> None:
    hub, ghcr, every = Route("hub", HUB, 1.0), Route("ghcr", GHCR, None), Route("", OWN, 5.0)
    routes = Routes([every, hub, ghcr])
    assert routes.find("hub/library/alpine") is hub
    assert routes.find("ghcr/org/app") is ghcr
    assert routes.find("hubble/app") is every  # a prefix is whole components
    assert routes.find("hub") is every
    assert routes.find("team/app") is every
    assert Routes([hub, ghcr]).find("team/app") is None
    assert routes.shortest_ttl == 1.0
    assert Routes([ghcr]).shortest_ttl is None


def test_ttls_as_distribution_reads_them() -> None:
    assert ttl_seconds(None) == DEFAULT_TTL == 168 * 3600
    assert ttl_seconds(0) is None  # kept for ever
    assert ttl_seconds("0s") is None
    assert ttl_seconds("90m") == 5400
    assert ttl_seconds(2_000_000_000) == 2.0  # nanoseconds, as distribution's YAML takes them


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yml"
    path.write_text("version: 0.1\nstorage:\n  inmemory:\n" + text)
    path.chmod(0o600)
    return str(path)


def registry() -> Registry:
    return Registry(drivers.create("inmemory", {}))


def test_upstreams_from_the_config(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    secret.chmod(0o600)
    config = load(
        write(
            tmp_path,
            f"""proxy:
  remoteurl: https://registry-1.docker.io
  ttl: 0
  upstreams:
    - prefix: ghcr/
      remoteurl: https://ghcr.io
      username: someone
      passwordfile: {secret}
      ttl: 24h
    - prefix: mirrors/quay
      remoteurl: https://quay.io
""",
        ),
        environ={},
    )
    [ghcr, quay] = config.proxy.upstreams
    assert (ghcr.prefix, ghcr.password, ghcr.ttl) == ("ghcr", "from-file", "24h")
    assert (quay.prefix, quay.username, quay.ttl) == ("mirrors/quay", "", None)
    cache = from_config(config, registry())
    assert cache is not None
    assert [(r.prefix, r.upstream.url, r.ttl) for r in cache.routes.all] == [
        ("ghcr", "https://ghcr.io", 86400.0),
        ("mirrors/quay", "https://quay.io", DEFAULT_TTL),
        ("", "https://registry-1.docker.io", None),
    ]
    assert cache.routes.all[0].upstream.password == "from-file"
    assert not isinstance(cache.repository("team/app"), Repository)  # remoteurl: every name


def test_without_an_upstream_there_is_no_cache(tmp_path: Path) -> None:
    config = load(write(tmp_path, "proxy:\n  username: someone\n  password: pw\n"), environ={})
    assert from_config(config, registry()) is None


def test_names_outside_every_prefix_are_the_registrys_own(tmp_path: Path) -> None:
    text = "proxy:\n  upstreams:\n    - {prefix: hub, remoteurl: 'https://registry-1.docker.io'}\n"
    cache = from_config(load(write(tmp_path, text), environ={}), registry())
    assert cache is not None
    assert isinstance(cache.repository("team/app"), Repository)
    assert not isinstance(cache.repository("hub/library/alpine"), Repository)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("  exec: {command: helper}\n  remoteurl: 'https://a.example'\n", "proxy.exec: "),
        ("  remotenamespace: x\n  remoteurl: 'https://a.example'\n", "proxy.remotenamespace: "),
    ],
)
def test_what_moorage_does_not_support_is_refused(tmp_path: Path, text: str, problem: str) -> None:
    config = load(write(tmp_path, "proxy:\n" + text), environ={})
    with pytest.raises(ValueError, match=problem):
        from_config(config, registry())


@pytest.mark.parametrize(
    ("upstreams", "problem"),
    [
        ("- {prefix: hub, remoteurl: 'registry-1.docker.io'}",
         "proxy.upstreams.0.remoteurl: expected an http or https URL"),
        ("- {prefix: 'Hub', remoteurl: 'https://a.example'}",
         "proxy.upstreams.0.prefix: invalid prefix: component 1 ('Hub')"),
        ("- {prefix: '', remoteurl: 'https://a.example'}",
         "proxy.upstreams.0.prefix: invalid prefix"),
        ("- {prefix: hub, remoteurl: 'https://a.example', ttl: -1}",
         "proxy.upstreams.0.ttl: expected a duration of 0"),
        ("- {prefix: hub, remoteurl: 'https://a.example', ttl: soon}",
         "proxy.upstreams.0.ttl: invalid duration"),
        ("- {remoteurl: 'https://a.example'}", "proxy.upstreams.0.prefix: required key"),
        ("- {prefix: hub, remoteurl: 'https://a.example', password: x, extra: 1}",
         "proxy.upstreams.0.extra: unknown key"),
        ("- {prefix: hub, remoteurl: 'https://a.example'}\n    "
         "- {prefix: hub/library, remoteurl: 'https://b.example'}",
         "proxy.upstreams: prefixes 'hub' and 'hub/library' overlap"),
    ],
)  # fmt: skip
def test_bad_upstreams_name_their_key(tmp_path: Path, upstreams: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(write(tmp_path, f"proxy:\n  upstreams:\n    {upstreams}\n"), environ={})
    assert any(line.startswith(problem) for line in raised.value.problems), raised.value.problems


def test_a_bad_remoteurl_names_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load(write(tmp_path, "proxy:\n  remoteurl: 'https://a.example/?x=1'\n"), environ={})
    assert raised.value.problems[0].startswith("proxy.remoteurl: expected an http or https URL")
