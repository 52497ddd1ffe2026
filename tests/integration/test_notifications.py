"""Notifications (moorage.notifications): distribution's `notifications` section against real
webhook receivers on loopback (tests/integration/notifications_support.py).

The events are compared field by field with distribution 2.8's for the same client operations;
the rest is what distribution loses and moorage must not: events pending while the receiver is
down survive kill -9 (one process and two workers), one failing endpoint holds up no other, the
breaker's threshold and backoff, the spool's bound, the ignore rules, and `config check`
masking the endpoints' secret headers.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.api import OCI_MANIFEST, Client
from tests.integration.notifications_support import endpoint, run_receiver, wait_for
from tests.integration.s3_support import bucket
from tests.integration.test_operations import scrape, value
from tests.integration.test_replicas import redis_client, run_replicas, seed_config
from tests.servers import (
    RedisServer,
    S3Server,
    Server,
    children,
    free_port,
    moorage_config,
    run_moorage,
    run_reference_registry,
)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(300)]

EVENTS_V2 = "application/vnd.docker.distribution.events.v2+json"
EVENTS_V1 = "application/vnd.docker.distribution.events.v1+json"  # distribution 2.8's
BLOB = "application/octet-stream"
FAILING = re.compile(r"notifications: endpoint (\S+) is failing")
RECOVERED = re.compile(r"notifications: endpoint (\S+) delivers again")
DROPPING = re.compile(r"notifications: endpoint (\S+) has more than \d+ events waiting")


def notifying(root: Path, *endpoints: dict[str, Any], **spool: Any) -> dict[str, Any]:
    config = moorage_config(root, 0, notifications={"endpoints": list(endpoints)})
    config["http"]["debug"] = {"addr": f"127.0.0.1:{free_port()}"}
    if spool:
        config["notifications"]["spool"] = spool
    return config


def debug(config: dict[str, Any]) -> str:
    return str(config["http"]["debug"]["addr"])


def metric(config: dict[str, Any], name: str, endpoint_name: str) -> float:
    return value(scrape(debug(config)), name, endpoint=endpoint_name)


# --- the same events as distribution ---------------------------------------------------------


def operations(base: str) -> dict[str, str]:
    """Pushes, pulls, HEADs, a 304, a mount and deletes by digest, as a client would send them
    to either registry; returns the digests involved."""
    client = Client(base, monolithic=False)  # distribution 2.8 has no monolithic POST
    payload, digest = client.push_image("team/app", "v1", seed="compare")
    layer = json.loads(payload)["layers"][0]["digest"]
    assert client.put_manifest("team/app", digest, payload).status_code == 201  # by digest
    accept = {"Accept": OCI_MANIFEST}
    assert client.request("GET", "/v2/team/app/manifests/v1", headers=accept).status_code == 200
    assert client.request("HEAD", f"/v2/team/app/manifests/{digest}", headers=accept).ok
    not_modified = {**accept, "If-None-Match": f'"{digest}"'}
    answer = client.request("GET", "/v2/team/app/manifests/v1", headers=not_modified)
    assert answer.status_code == 304
    assert client.request("GET", f"/v2/team/app/blobs/{layer}").status_code == 200
    assert client.request("HEAD", f"/v2/team/app/blobs/{layer}").status_code == 200
    mount = {"mount": layer, "from": "team/app"}
    assert client.request("POST", "/v2/team/other/blobs/uploads/", params=mount).status_code == 201
    assert client.put_manifest("team/app", "v2", payload).status_code == 201
    assert client.request("DELETE", f"/v2/team/app/manifests/{digest}").status_code == 202
    assert client.request("DELETE", f"/v2/team/other/blobs/{layer}").status_code == 202
    return {"manifest": digest, "layer": layer}


def by_repository(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        found.setdefault(event["target"]["repository"], []).append(event)
    return found


def normalized(event: dict[str, Any], host: str) -> dict[str, Any]:
    """The event with what differs between two registries of one machine and two runs taken
    out: ids, times, the instance, the registry's port and the client's."""
    event = copy.deepcopy(event)
    for key in ("id", "timestamp"):
        assert event.pop(key)
    assert event["source"].pop("instanceID")
    assert event["source"].pop("addr").endswith(":" + host.rpartition(":")[2])
    assert event["request"].pop("id")
    assert event["request"].pop("addr").startswith("127.0.0.1:")
    text = json.dumps(event).replace(host, "REGISTRY")
    return dict(json.loads(text))


def test_events_are_distributions(tmp_path: Path) -> None:
    """The same client operations against distribution 2.8 and moorage, each with an endpoint
    on one receiver: the same events in the same order, field by field. Where 2.8 and current
    distribution differ moorage follows the current one: the envelope's media type is v2
    (2.8: v1), and a DELETE by tag (which 2.8 refuses) is a delete event of the tag."""
    sections = {"events": {"includereferences": True}}
    order = ["team/app", "team/other", "team/tagged"]
    with run_receiver() as receiver:
        reference_config = {
            **sections,
            "endpoints": [{"name": "r", "url": receiver.url + "/reference", "timeout": "2s"}],
        }
        with run_reference_registry(
            tmp_path / "reference", tmp_path / "reference-data", notifications=reference_config
        ) as reference:
            operations(reference.url)
            wait_for(lambda: len(receiver.events("/events/reference")) >= 14, "2.8's events")
        config = notifying(tmp_path / "data", endpoint("m", receiver, "/moorage"))
        config["notifications"].update(sections)
        with run_moorage(tmp_path / "moorage", config) as server:
            digests = operations(server.url)
            wait_for(lambda: len(receiver.events("/events/moorage")) >= 14, "moorage's events")
            # current distribution: a DELETE by tag deletes the tag, with an event
            client = Client(server.url)
            client.push_image("team/tagged", "t1", seed="tagged")
            assert client.request("DELETE", "/v2/team/tagged/manifests/t1").status_code == 202
            wait_for(lambda: len(receiver.events("/events/moorage")) >= 18, "the tag delete")

    theirs = [normalized(e, reference.host) for e in receiver.events("/events/reference")]
    ours = [normalized(e, server.host) for e in receiver.events("/events/moorage")]
    assert len(theirs) == 14, theirs
    # Order is kept per repository (repositories are delivered side by side).
    assert by_repository(ours[:14]) == by_repository(theirs)
    ours = sorted(ours, key=lambda e: order.index(e["target"]["repository"]))
    summary = [(e["action"], e["request"]["method"], e["target"].get("tag")) for e in ours]
    assert summary == [
        ("push", "PUT", None), ("push", "PUT", None), ("push", "PUT", "v1"),  # config, layer, v1
        ("push", "PUT", None),  # the manifest again, by digest: no tag
        ("pull", "GET", "v1"), ("pull", "HEAD", None),  # the 304 pulled nothing
        ("pull", "GET", None), ("pull", "HEAD", None),  # the layer
        ("push", "PUT", "v2"),
        ("delete", "DELETE", None), ("delete", "DELETE", "v1"), ("delete", "DELETE", "v2"),
        ("mount", "POST", None), ("delete", "DELETE", None),  # the layer, in team/other
        ("push", "POST", None), ("push", "POST", None), ("push", "PUT", "t1"),  # monolithic
        ("delete", "DELETE", "t1"),
    ]  # fmt: skip
    manifest = ours[2]["target"]
    assert manifest["digest"] == digests["manifest"]
    assert [ref["digest"] for ref in manifest["references"]][1] == digests["layer"]
    assert ours[12]["target"]["fromRepository"] == "team/app"
    assert ours[-1]["target"] == {"repository": "team/tagged", "tag": "t1"}
    media_types = {d.path: d.headers["Content-Type"] for d in receiver.attempts()}
    assert media_types == {"/events/reference": EVENTS_V1, "/events/moorage": EVENTS_V2}


def pulls_through(base: str, digests: dict[str, str]) -> None:
    """Pulls of team/app from a pull-through cache of the upstream that holds it: by tag
    (fetched), a HEAD by digest, a 304, the blobs (fetched) and a HEAD of one, and by tag
    again (cached)."""
    client = Client(base)
    accept = {"Accept": OCI_MANIFEST}
    manifest = f"/v2/team/app/manifests/{digests['manifest']}"
    assert client.request("GET", "/v2/team/app/manifests/v1", headers=accept).status_code == 200
    assert client.request("HEAD", manifest, headers=accept).status_code == 200
    not_modified = {**accept, "If-None-Match": f'"{digests["manifest"]}"'}
    answer = client.request("GET", "/v2/team/app/manifests/v1", headers=not_modified)
    assert answer.status_code == 304
    for blob in (digests["config"], digests["layer"]):
        assert client.request("GET", f"/v2/team/app/blobs/{blob}").status_code == 200
    assert client.request("HEAD", f"/v2/team/app/blobs/{digests['layer']}").status_code == 200
    assert client.request("GET", "/v2/team/app/manifests/v1", headers=accept).status_code == 200


def test_pulls_through_the_cache_are_distributions(tmp_path: Path) -> None:
    """distribution 2.8 and moorage as pull-through caches (`proxy.remoteurl`) of one upstream,
    each with an endpoint on one receiver, pulled from alike: the same events, field by field.
    A pull through the cache is a pull like any other (distribution's listener wraps the
    cache's repository), and what the cache stores of it is no push."""
    sections = {"events": {"includereferences": True}}
    with run_reference_registry(tmp_path / "upstream", tmp_path / "upstream-data") as upstream:
        payload, digest = Client(upstream.url, monolithic=False).push_image(
            "team/app", "v1", seed="cached"
        )
        parsed = json.loads(payload)
        digests = {
            "manifest": digest,
            "config": parsed["config"]["digest"],
            "layer": parsed["layers"][0]["digest"],
        }
        proxy = {"remoteurl": upstream.url}
        with run_receiver() as receiver:
            reference_config = {
                **sections,
                "endpoints": [{"name": "r", "url": receiver.url + "/reference", "timeout": "2s"}],
            }
            with run_reference_registry(
                tmp_path / "reference",
                tmp_path / "reference-data",
                proxy=proxy,
                notifications=reference_config,
            ) as reference:
                pulls_through(reference.url, digests)
                wait_for(lambda: len(receiver.events("/events/reference")) >= 6, "2.8's events")
            config = notifying(tmp_path / "data", endpoint("m", receiver, "/moorage"))
            config["notifications"].update(sections)
            config["proxy"] = proxy
            with run_moorage(tmp_path / "moorage", config) as server:
                pulls_through(server.url, digests)
                wait_for(lambda: len(receiver.events("/events/moorage")) >= 6, "moorage's events")
                assert "Traceback" not in server.logs()

    theirs = [normalized(e, reference.host) for e in receiver.events("/events/reference")]
    ours = [normalized(e, server.host) for e in receiver.events("/events/moorage")]
    assert ours == theirs
    summary = [(e["action"], e["request"]["method"], e["target"].get("tag")) for e in ours]
    assert summary == [
        ("pull", "GET", "v1"), ("pull", "HEAD", None),  # the 304 pulled nothing
        ("pull", "GET", None), ("pull", "GET", None), ("pull", "HEAD", None),  # the blobs
        ("pull", "GET", "v1"),  # from the cache now
    ]  # fmt: skip
    assert [e["target"]["digest"] for e in ours] == [
        digests["manifest"], digests["manifest"],
        digests["config"], digests["layer"], digests["layer"],
        digests["manifest"],
    ]  # fmt: skip


# --- what distribution loses ------------------------------------------------------------------


def kill_everything(server: Server) -> None:
    """SIGKILL for the server and every process of it, the supervisor first stopped so that it
    starts nothing in place of what is killed."""
    supervisor = server.process.pid
    os.kill(supervisor, signal.SIGSTOP)
    for pid in children(supervisor):
        os.kill(pid, signal.SIGKILL)
    os.kill(supervisor, signal.SIGKILL)
    server.process.wait()


def pushes(base: str, repositories: list[str], rounds: int) -> list[tuple[str, str]]:
    """Pushes `rounds` images to each repository, interleaved; the (repository, digest) of
    every pushed manifest, in order."""
    client = Client(base)
    pushed = []
    for number in range(rounds):
        for name in repositories:
            _, digest = client.push_image(name, f"v{number}", seed=f"{name}-{number}")
            pushed.append((name, digest))
    return pushed


def manifest_pushes(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Per repository, the digests of the manifest pushes in the order first received (an
    event delivered twice counts once)."""
    seen: set[str] = set()
    found: dict[str, list[str]] = {}
    for event in events:
        target = event["target"]
        if event["id"] in seen or event["action"] != "push" or target["mediaType"] == BLOB:
            continue
        seen.add(event["id"])
        found.setdefault(target["repository"], []).append(target["digest"])
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_pending_events_survive_kill_9(tmp_path: Path, workers: int) -> None:
    """Events spooled while the receiver is down survive SIGKILL of every process of the
    server; after a restart with the receiver up, every one arrives, in order per
    repository."""
    repositories = ["team/a", "team/b", "team/c"]
    with run_receiver(up=False) as receiver:
        config = notifying(tmp_path / "data", endpoint("hook", receiver))
        config["http"]["workers"] = workers
        with run_moorage(tmp_path / "first", config) as server:
            pushed = pushes(server.url, repositories, rounds=4)
            wait_for(
                lambda: metric(config, "moorage_notifications_failed_total", "hook") > 0,
                "a failed delivery",
            )
            kill_everything(server)
        receiver.up()
        with run_moorage(tmp_path / "second", config):
            wait_for(lambda: len(receiver.events()) >= 36, "every event after the restart")
            wait_for(
                lambda: metric(config, "moorage_notifications_pending", "hook") == 0,
                "nothing pending",
            )
    received = receiver.events()
    assert len({event["id"] for event in received}) == 36  # 12 images: 2 blobs and a manifest
    expected: dict[str, list[str]] = {}
    for name, digest in pushed:
        expected.setdefault(name, []).append(digest)
    assert manifest_pushes(received) == expected


def test_the_notifier_runs_only_on_what_cpu_the_workers_leave(tmp_path: Path) -> None:
    """With workers, the notifier is the one process of the server under SCHED_IDLE (at
    nice 19): under load, delivery takes no share of the CPU the workers need."""
    with run_receiver() as receiver:
        config = notifying(tmp_path / "data", endpoint("hook", receiver))
        config["http"]["workers"] = 2
        with run_moorage(tmp_path / "run", config) as server:
            wait_for(lambda: len(children(server.process.pid)) == 3, "two workers and a notifier")
            processes = {pid: os.sched_getscheduler(pid) for pid in children(server.process.pid)}
            idle = [pid for pid, policy in processes.items() if policy == os.SCHED_IDLE]
            assert len(idle) == 1, processes
            assert set(processes.values()) == {os.SCHED_IDLE, os.SCHED_OTHER}, processes
            assert os.getpriority(os.PRIO_PROCESS, idle[0]) == 19
            assert os.sched_getscheduler(server.process.pid) == os.SCHED_OTHER


def test_a_failing_endpoint_holds_up_no_other(tmp_path: Path) -> None:
    """One endpoint answers 500: the other gets every event at once; the failing one is
    retried as distribution's breaker says (`threshold` failures, then one attempt every
    `backoff`), with a log line when it starts failing and one when it delivers again, and
    then gets every event too."""
    with run_receiver() as good, run_receiver() as bad:
        bad.status = 500
        config = notifying(
            tmp_path / "data",
            endpoint("good", good),
            endpoint("bad", bad, threshold=3, backoff="1s"),
        )
        with run_moorage(tmp_path / "server", config) as server:
            pushed = pushes(server.url, ["team/a", "team/b"], rounds=2)
            wait_for(lambda: len(good.events()) >= 12, "the good endpoint's events")
            wait_for(lambda: len(FAILING.findall(server.logs())) == 1, "the failing line")
            failing_at = len(bad.attempts())
            wait_for(lambda: len(bad.attempts()) >= failing_at + 3, "retries after backoff")
            retries = [attempt.at for attempt in bad.attempts()[failing_at - 1 :]]
            # Once failing, attempts come one at a time, at least `backoff` apart.
            assert all(b - a >= 0.9 for a, b in itertools.pairwise(retries)), retries
            assert metric(config, "moorage_notifications_failed_total", "bad") >= 3
            assert metric(config, "moorage_notifications_pending", "bad") > 0
            assert metric(config, "moorage_notifications_sent_total", "good") == 12
            bad.status = 200
            wait_for(lambda: len(bad.events()) >= 12, "the bad endpoint's events, once it works")
            wait_for(lambda: RECOVERED.search(server.logs()) is not None, "the recovery line")
            wait_for(
                lambda: metric(config, "moorage_notifications_pending", "bad") == 0,
                "nothing pending",
            )
            assert metric(config, "moorage_notifications_delivery_seconds_count", "bad") >= 12
        logs = server.logs()
    assert FAILING.findall(logs) == ["bad"] and RECOVERED.findall(logs) == ["bad"]
    expected: dict[str, list[str]] = {}
    for name, digest in pushed:
        expected.setdefault(name, []).append(digest)
    assert manifest_pushes(good.events()) == expected == manifest_pushes(bad.events())


def test_the_spool_is_bounded(tmp_path: Path) -> None:
    """An endpoint that is down while more than `maxevents` events wait loses the oldest,
    counted in a metric, with one log line; the newest arrive when it is back."""
    with run_receiver(up=False) as receiver:
        config = notifying(tmp_path / "data", endpoint("hook", receiver), maxevents=5)
        with run_moorage(tmp_path / "server", config) as server:
            pushed = pushes(server.url, ["team/a"], rounds=4)  # 12 events
            wait_for(
                lambda: metric(config, "moorage_notifications_dropped_total", "hook") >= 7,
                "7 events dropped",
            )
            receiver.up()
            wait_for(lambda: len(receiver.events()) >= 5, "the newest 5 events")
            wait_for(
                lambda: metric(config, "moorage_notifications_pending", "hook") == 0,
                "nothing pending",
            )
            assert metric(config, "moorage_notifications_dropped_total", "hook") == 7
        logs = server.logs()
    assert DROPPING.findall(logs) == ["hook"]
    received = receiver.events()
    assert len(received) == 5
    assert received[-1]["target"]["digest"] == pushed[-1][1]


def test_ignore_rules(tmp_path: Path) -> None:
    """`ignore.actions`, `ignore.mediatypes` and the older `ignoredmediatypes` leave events out
    per endpoint; a disabled endpoint gets nothing."""
    with run_receiver() as receiver:
        config = notifying(
            tmp_path / "data",
            endpoint("all", receiver, "/all"),
            endpoint("no-pulls", receiver, "/no-pulls", ignore={"actions": ["pull"]}),
            endpoint("no-blobs", receiver, "/no-blobs", ignore={"mediatypes": [BLOB]}),
            endpoint("no-oci", receiver, "/no-oci", ignoredmediatypes=[OCI_MANIFEST]),
            endpoint("off", receiver, "/off", disabled=True),
        )
        with run_moorage(tmp_path / "server", config) as server:
            client = Client(server.url)
            payload, digest = client.push_image("team/a", "v1", seed="ignore")
            layer = json.loads(payload)["layers"][0]["digest"]
            accept = {"Accept": OCI_MANIFEST}
            assert client.request("GET", "/v2/team/a/manifests/v1", headers=accept).ok
            assert client.request("GET", f"/v2/team/a/blobs/{layer}").ok
            wait_for(lambda: len(receiver.events("/events/all")) >= 5, "every event")
            wait_for(lambda: len(receiver.events("/events/no-oci")) >= 3, "the blob events")

    def seen(path: str) -> list[tuple[str, str]]:
        return [(e["action"], e["target"]["mediaType"]) for e in receiver.events(path)]

    everything = [("push", BLOB), ("push", BLOB), ("push", OCI_MANIFEST),
                  ("pull", OCI_MANIFEST), ("pull", BLOB)]  # fmt: skip
    assert seen("/events/all") == everything
    assert seen("/events/no-pulls") == everything[:3]
    assert seen("/events/no-blobs") == [("push", OCI_MANIFEST), ("pull", OCI_MANIFEST)]
    assert seen("/events/no-oci") == [("push", BLOB), ("push", BLOB), ("pull", BLOB)]
    assert seen("/events/off") == []
    assert digest in json.dumps(receiver.events("/events/all"))


def test_config_check_masks_the_endpoints_secrets(tmp_path: Path) -> None:
    """`moorage config check` shows the endpoints, with every header value masked, whether
    given inline or as a `<header>file`, and a password in the URL."""
    secret_file = tmp_path / "token"
    secret_file.write_text("Bearer from-a-file-0123456789\n")
    secret_file.chmod(0o600)
    config = moorage_config(tmp_path / "data", free_port())
    config["notifications"] = {
        "endpoints": [
            {
                "name": "hook",
                "url": "https://user:url-password-98765@hooks.example.com/events",
                "headers": {
                    "X-Api-Key": ["inline-key-abcdef"],
                    "Authorizationfile": str(secret_file),
                },
                "timeout": "500ms",
                "ignore": {"actions": ["pull"]},
            }
        ]
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    done = subprocess.run(
        [sys.executable, "-m", "moorage", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    for secret in ("inline-key-abcdef", "from-a-file-0123456789", "url-password-98765"):
        assert secret not in output
    shown = yaml.safe_load(done.stdout)["notifications"]["endpoints"][0]
    assert shown["headers"] == {"X-Api-Key": ["********"], "Authorization": ["********"]}
    assert shown["url"] == "https://user:********@hooks.example.com/events"
    assert shown["name"] == "hook" and shown["timeout"] == "500ms"
    assert shown["ignore"] == {"mediatypes": [], "actions": ["pull"]}


# --- replicas on S3 -----------------------------------------------------------------------------


def test_replicas_on_s3_share_one_spool_in_redis(
    tmp_path: Path, s3_store: S3Server, redis_server: RedisServer
) -> None:
    """Two replicas on one bucket with `notifications.spool.driver: redis`: both append to one
    stream, one delivers. Killed (SIGKILL) with events pending while the receiver is down, the
    other takes over when its lease lapses, and nothing is lost; order holds per repository
    whichever replica served each request."""
    redis_client(redis_server.addr, 6).flushdb()
    with bucket(s3_store, "notify"), run_receiver(up=False) as receiver:
        config = seed_config(
            s3_store, redis_server.addr, bucket="notify", db=6, delete={"enabled": True}
        )
        config["notifications"] = {
            "endpoints": [endpoint("hook", receiver)],
            "spool": {"driver": "redis"},
        }
        with run_replicas(tmp_path, config, count=2) as servers:
            clients = [Client(server.url) for server in servers]
            pushed: list[tuple[str, str]] = []
            for number in range(3):
                for index, name in enumerate(["team/a", "team/b"]):
                    client = clients[(number + index) % 2]  # each repository on both replicas
                    _, digest = client.push_image(name, f"v{number}", seed=f"{name}-{number}")
                    pushed.append((name, digest))

            def delivering() -> list[int]:
                return [
                    index
                    for index, server_config in enumerate(replica_configs(servers))
                    if metric(server_config, "moorage_notifications_failed_total", "hook") > 0
                ]

            wait_for(lambda: len(delivering()) == 1, "one replica trying to deliver")
            (leader,) = delivering()
            os.kill(servers[leader].process.pid, signal.SIGKILL)
            servers[leader].process.wait()
            receiver.up()
            wait_for(lambda: len(receiver.events()) >= 18, "every event, from the other replica")
            survivor = replica_configs(servers)[1 - leader]
            wait_for(
                lambda: metric(survivor, "moorage_notifications_pending", "hook") == 0,
                "nothing pending",
            )
    received = receiver.events()
    assert len({event["id"] for event in received}) == 18
    assert len({event["source"]["instanceID"] for event in received}) == 2  # both replicas'
    expected: dict[str, list[str]] = {}
    for name, digest in pushed:
        expected.setdefault(name, []).append(digest)
    assert manifest_pushes(received) == expected


def replica_configs(servers: list[Server]) -> list[dict[str, Any]]:
    """Each replica's config as run_replicas wrote it (for its debug address)."""
    found = []
    for server in servers:
        port = server.host.rpartition(":")[2]
        written = server.log.parent / f"moorage-{port}.yml"
        found.append(yaml.safe_load(written.read_text()))
    return found
