"""`http.workers`: one registry served by several processes (moorage/workers.py), for real.

Every server here is a `moorage serve` process with two workers on the filesystem driver, with
the in-memory blob descriptor cache and deletes enabled, on a free loopback port. The workers
each listen on a SO_REUSEPORT socket of their own, so the kernel spreads new connections over
them: a test reaches both by opening a new connection for each request, and tells which worker
answered by the prefix of the X-Request-Id (`<12 hex, per process>-<counter>`).

The workers are forks of `moorage serve` with the same command line, so a test finds every
process it started by its config's path in /proc/*/cmdline, checks none is left behind and
kills, by pid, any that would be.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.api import Client, sha256
from tests.integration.http_support import make_ca
from tests.integration.http_support import moorage as moorage_listening
from tests.integration.test_http_settings import blob_data, refused, slow_upload, unix_request
from tests.integration.test_operations import requests_total, scrape
from tests.servers import Server, children, free_port, moorage_config, read_back, run_moorage

pytestmark = pytest.mark.timeout(300)

MiB = 1024 * 1024
REQUEST_ID = re.compile(r"^([0-9a-f]{12})-[0-9a-f]+$")
FRESH = 32  # requests on new connections: all on one of two workers has odds of 2**-31


# --- helpers -------------------------------------------------------------------------------------


ACCEPT_ANY = {"Accept": "*/*"}


def workers_config(workdir: Path, workers: Any = 2, **http: Any) -> dict[str, Any]:
    """moorage_config's server (filesystem under workdir/data, deletes enabled) with `workers`
    and the in-memory blob descriptor cache; `http` adds to the http section."""
    port = free_port()
    settings: dict[str, Any] = {"addr": f"127.0.0.1:{port}", **http}
    if workers is not None:
        settings["workers"] = workers
    config = moorage_config(workdir / "data", port, http=settings)
    config["storage"]["cache"] = {"blobdescriptor": "inmemory"}
    assert config["storage"]["delete"] == {"enabled": True}
    return config


def processes_of(workdir: Path) -> list[int]:
    """Every live process whose command line names a path under `workdir`: the servers a test
    started there, supervisor and workers alike (zombies have no command line)."""
    marker = f"{workdir}/".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if any(marker in arg for arg in cmdline.split(b"\0")) and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


@contextlib.contextmanager
def nothing_left_behind(workdir: Path) -> Iterator[None]:
    """Kills, by pid, any process of `workdir` still running at the end (a worker orphaned by
    a supervisor the teardown had to kill), so that no test leaves a server serving."""
    try:
        yield
    finally:
        deadline = time.monotonic() + 10
        while processes_of(workdir) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in processes_of(workdir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def serving(
    workdir: Path, config: dict[str, Any], env: dict[str, str] | None = None
) -> Iterator[Server]:
    """run_moorage, answering on /v2/, with nothing left running after it; http.workers as
    the config says (the server's default without the key)."""
    with (
        nothing_left_behind(workdir),
        run_moorage(workdir, config, env=env, workers=None) as server,
    ):
        yield server


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.05)


def wait_logged(server: Server, text: str, times: int = 1, timeout: float = 15) -> None:
    wait_until(
        lambda: server.logs().count(text) >= times,
        f"{text!r} logged {times} times:\n{server.logs()}",
        timeout,
    )


def listening_line(server: Server) -> str:
    lines = [line for line in server.logs().splitlines() if "moorage listening on" in line]
    assert len(lines) == 1, server.logs()
    return lines[0]


def workers_named(server: Server) -> int | None:
    """The number of workers the start-up line names (before the web UI's address), if any."""
    found = re.search(r", (\d+) workers(?:, |$)", listening_line(server))
    return int(found[1]) if found else None


def fresh(method: str, url: str, **kwargs: Any) -> requests.Response:
    """One request on a connection of its own, closed after it."""
    kwargs.setdefault("timeout", 30)
    kwargs.setdefault("allow_redirects", False)
    headers = {"Connection": "close", **kwargs.pop("headers", {})}
    with requests.Session() as session:
        return session.request(method, url, headers=headers, **kwargs)


def worker_of(response: requests.Response) -> str:
    """The per-process prefix of the response's request id: which worker answered."""
    match = REQUEST_ID.match(response.headers.get("X-Request-Id", ""))
    assert match, response.headers
    return match.group(1)


def fan_out(method: str, url: str, count: int = FRESH, **kwargs: Any) -> list[requests.Response]:
    return [fresh(method, url, **kwargs) for _ in range(count)]


def statuses(responses: list[requests.Response]) -> set[int]:
    return {response.status_code for response in responses}


def workers_answering(responses: list[requests.Response]) -> set[str]:
    return {worker_of(response) for response in responses}


def rundir_of(worker: int) -> Path:
    """The run directory the supervisor made, as the worker maps its cache generation file."""
    for line in Path(f"/proc/{worker}/maps").read_text().splitlines():
        if line.endswith("/cache-generation"):
            return Path(line.split(maxsplit=5)[5]).parent
    raise AssertionError(f"worker {worker} maps no cache-generation file")


def serve_to_exit(
    workdir: Path, config: dict[str, Any], *args: str, command: str = "serve"
) -> subprocess.CompletedProcess[str]:
    """`moorage serve` (or `config check`) on a private config file holding an http.secret,
    so that only the error is printed; waits for it to exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = {**config, "http": {"secret": "a-shared-test-secret", **config["http"]}}
    path = workdir / "moorage.yml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    argv = ["serve"] if command == "serve" else ["config", "check"]
    with nothing_left_behind(workdir):
        return subprocess.run(
            [sys.executable, "-m", "moorage", *argv, *args, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a refused start prints; fails unless there is exactly one."""
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def push_and_cache_everywhere(server: Server, repo: str, seed: str) -> tuple[str, str, str]:
    """Pushes an image tagged v1; checks that on new connections, so on both workers, its
    manifest answers by tag and its layer and manifest answer as the repository's blobs.
    Returns the digests of the manifest, its layer and its config."""
    client = Client(server.url)
    payload, manifest = client.push_image(repo, "v1", seed=seed)
    document = json.loads(payload)
    layer, config = document["layers"][0]["digest"], document["config"]["digest"]
    for path, method in (
        (f"/v2/{repo}/manifests/v1", "GET"),
        (f"/v2/{repo}/blobs/{layer}", "HEAD"),
        (f"/v2/{repo}/blobs/{manifest}", "HEAD"),
    ):
        answers = fan_out(method, server.url + path)
        assert statuses(answers) == {200}, (method, path)
        # Both workers answered, so both now cache the blob descriptors.
        assert len(workers_answering(answers)) == 2, (method, path)
    return manifest, layer, config


def delete_and_check_gone_everywhere(server: Server, repo: str, manifest: str, layer: str) -> None:
    """Deletes the layer's link and the manifest on one connection; then no worker serves
    either, whatever it had cached."""
    client = Client(server.url)
    assert client.request("DELETE", f"/v2/{repo}/blobs/{layer}").status_code == 202
    assert client.request("DELETE", f"/v2/{repo}/manifests/{manifest}").status_code == 202
    for path, method in (
        (f"/v2/{repo}/manifests/v1", "GET"),
        (f"/v2/{repo}/manifests/{manifest}", "GET"),
        (f"/v2/{repo}/blobs/{layer}", "HEAD"),
        (f"/v2/{repo}/blobs/{layer}", "GET"),
        (f"/v2/{repo}/blobs/{manifest}", "HEAD"),
    ):
        answers = fan_out(method, server.url + path)
        assert statuses(answers) == {404}, (method, path, [a.status_code for a in answers])
        assert len(workers_answering(answers)) == 2, (method, path)


# --- processes and the spread of connections -----------------------------------------------------


def test_two_workers_answer_new_connections(tmp_path: Path) -> None:
    with serving(tmp_path, workers_config(tmp_path)) as server:
        workers = children(server.process.pid)
        assert len(workers) == 2, workers
        for worker in workers:
            assert alive(worker)
            assert children(worker) == []
        answers = fan_out("GET", f"{server.url}/v2/")
        assert statuses(answers) == {200}
        assert len(workers_answering(answers)) == 2
        # Each worker counts its own requests: the ids under one prefix never repeat.
        ids = [answer.headers["X-Request-Id"] for answer in answers]
        assert len(set(ids)) == len(ids)
        assert workers_named(server) == 2
        # The run directory the workers share.
        shared = {rundir_of(worker) for worker in workers}
        assert len(shared) == 1
        rundir = shared.pop()
        assert rundir.name.startswith("moorage-")
        assert (rundir / "cache-generation").is_file()
        assert (rundir / "metrics").is_dir()


def test_upload_session_moves_between_workers(tmp_path: Path) -> None:
    """A chunked upload whose every request is on a new connection: the session goes from
    worker to worker (no http.secret set: the random one is the supervisor's, shared), each
    continuing the running digest from the state the last one saved, never reading the stored
    bytes back."""
    chunks = [os.urandom(64 * 1024 + index) for index in range(FRESH)]
    data = b"".join(chunks)
    with serving(tmp_path, workers_config(tmp_path)) as server:
        started = fresh("POST", f"{server.url}/v2/spread/app/blobs/uploads/")
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        offset = 0
        patched = []
        for chunk in chunks:
            answer = fresh(
                "PATCH",
                location,
                data=chunk,
                headers={
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    "Content-Type": "application/octet-stream",
                },
            )
            assert answer.status_code == 202, answer.text
            offset += len(chunk)
            assert answer.headers["Range"] == f"0-{offset - 1}"
            location = answer.headers["Location"]
            patched.append(answer)
        assert len(workers_answering(patched)) == 2
        done = fresh("PUT", location, params={"digest": sha256(data)})
        assert done.status_code == 201, done.text
        pulled = fan_out("GET", f"{server.url}/v2/spread/app/blobs/{sha256(data)}", 8)
        assert statuses(pulled) == {200}
        assert all(answer.content == data for answer in pulled)
        assert read_back(server) == []


# --- what the workers share ----------------------------------------------------------------------


def test_a_delete_in_one_worker_drops_what_every_worker_cached(tmp_path: Path) -> None:
    with serving(tmp_path, workers_config(tmp_path)) as server:
        manifest, layer, config = push_and_cache_everywhere(server, "cached/app", "one")
        delete_and_check_gone_everywhere(server, "cached/app", manifest, layer)
        # What was not deleted still answers everywhere, from storage again.
        answers = fan_out("HEAD", f"{server.url}/v2/cached/app/blobs/{config}")
        assert statuses(answers) == {200}
        assert len(workers_answering(answers)) == 2


def test_catalog_lists_what_every_worker_created(tmp_path: Path) -> None:
    names = [f"catalog/repo-{index:02d}" for index in range(10)]
    with serving(tmp_path, workers_config(tmp_path)) as server:
        for name in names:
            Client(server.url).push_blob(name, f"blob of {name}".encode())  # a new connection
        answers = fan_out("GET", f"{server.url}/v2/_catalog", 20)
        for answer in answers:
            assert answer.status_code == 200
            assert answer.json()["repositories"] == names, worker_of(answer)
        assert len(workers_answering(answers)) == 2


def test_metrics_sum_every_worker(tmp_path: Path) -> None:
    debug = f"127.0.0.1:{free_port()}"
    config = workers_config(tmp_path, debug={"addr": debug})
    requests_made = 40
    # Waiting for the "listening" line rather than for an answer: no request before the count.
    with nothing_left_behind(tmp_path), moorage_listening(tmp_path / "server", config) as server:
        url = f"http://{config['http']['addr']}"
        assert requests_total(scrape(debug), "/v2/", "GET", 200) == 0
        answers = fan_out("GET", f"{url}/v2/", requests_made)
        assert statuses(answers) == {200}
        assert len(workers_answering(answers)) == 2, server.logs()
        for _ in range(10):  # each scrape on a new connection, so from either worker
            assert requests_total(scrape(debug), "/v2/", "GET", 200) == requests_made


# --- stopping, dying, failing to start -----------------------------------------------------------


def test_sigterm_drains_both_workers_and_removes_the_run_directory(tmp_path: Path) -> None:
    config = workers_config(tmp_path, draintimeout="30s")
    with serving(tmp_path, config) as server:
        workers = children(server.process.pid)
        assert len(workers) == 2
        rundir = rundir_of(workers[0])
        assert rundir.is_dir()
        client = Client(server.url)
        started = threading.Event()
        block = os.urandom(256 * 1024)
        digest, result, thread = slow_upload(client, "drain/app", block, 40, 0.1, started)
        assert started.wait(30)
        server.process.send_signal(signal.SIGTERM)
        wait_logged(server, "moorage stopping: draining", times=2)  # both workers drain
        thread.join(120)
        assert not thread.is_alive()
        assert "response" in result, result
        assert result["response"].status_code == 201, result["response"].text
        assert server.process.wait(timeout=60) == 0, server.logs()
        wait_until(lambda: not any(alive(worker) for worker in workers), "workers gone")
        assert not rundir.exists()
        assert processes_of(tmp_path) == []
        assert blob_data(tmp_path / "data", digest).read_bytes() == block * 40
        assert "Traceback" not in server.logs()


def test_new_connections_are_refused_while_workers_drain(tmp_path: Path) -> None:
    config = workers_config(tmp_path, draintimeout="60s")
    with serving(tmp_path, config) as server:
        port = int(server.host.rsplit(":", 1)[1])
        started = threading.Event()
        block = os.urandom(64 * 1024)
        # 15 s of upload: the refusal is looked for while it is still being drained.
        _, result, thread = slow_upload(Client(server.url), "drain/app", block, 150, 0.1, started)
        assert started.wait(30)
        server.process.send_signal(signal.SIGTERM)
        wait_logged(server, "moorage stopping: draining", times=2)
        try:
            assert refused(port), "new connections still accepted after SIGTERM"
            assert thread.is_alive()
        finally:
            thread.join(120)
        assert result["response"].status_code == 201


def test_a_killed_worker_is_started_again(tmp_path: Path) -> None:
    with serving(tmp_path, workers_config(tmp_path)) as server:
        supervisor = server.process.pid
        before = children(supervisor)
        assert len(before) == 2
        prefixes_before = workers_answering(fan_out("GET", f"{server.url}/v2/"))
        assert len(prefixes_before) == 2
        kept, killed = before
        os.kill(killed, signal.SIGKILL)
        wait_until(
            lambda: len(children(supervisor)) == 2 and killed not in children(supervisor),
            f"a new worker in place of {killed}",
            timeout=10,
        )
        after = children(supervisor)
        assert kept in after
        (new,) = set(after) - {kept}
        assert alive(new)
        answers = fan_out("GET", f"{server.url}/v2/")
        assert statuses(answers) == {200}
        prefixes_after = workers_answering(answers)
        assert len(prefixes_after) == 2
        assert len(prefixes_after & prefixes_before) == 1  # the kept worker, and a new one
        assert re.search(
            r"moorage worker [01] exited \(status -9\); starting it again", server.logs()
        ), server.logs()
        # The new worker shares what the others do: the run directory and cache generation.
        assert rundir_of(new) == rundir_of(kept)
        manifest, layer, _ = push_and_cache_everywhere(server, "restarted/app", "two")
        delete_and_check_gone_everywhere(server, "restarted/app", manifest, layer)
    assert server.process.returncode == 0, server.logs()


def test_a_supervisor_stopped_and_continued_serves_on(tmp_path: Path) -> None:
    """SIGSTOP then SIGCONT (a terminal's Ctrl-Z and fg), stopped for longer than the
    supervisor waits for a signal at once: nothing stops, nothing restarts."""
    with serving(tmp_path, workers_config(tmp_path)) as server:
        supervisor = server.process.pid
        workers = children(supervisor)
        os.kill(supervisor, signal.SIGSTOP)
        time.sleep(1.5)
        os.kill(supervisor, signal.SIGCONT)
        time.sleep(1.5)  # what it would do, it has done by now
        answers = fan_out("GET", f"{server.url}/v2/")
        assert statuses(answers) == {200}
        assert children(supervisor) == workers
        assert "stopping" not in server.logs() and "exited" not in server.logs()
    assert server.process.returncode == 0, server.logs()


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """A supervisor killed outright (SIGKILL: no chance to pass SIGTERM on) leaves no worker
    serving: each asked the kernel for SIGTERM on its parent's death, and drains."""
    with serving(tmp_path, workers_config(tmp_path)) as server:
        workers = children(server.process.pid)
        assert len(workers) == 2
        rundir = rundir_of(workers[0])
        os.kill(server.process.pid, signal.SIGKILL)
        wait_until(lambda: not any(alive(pid) for pid in workers), "both workers gone", timeout=10)
        with pytest.raises(requests.ConnectionError):
            fresh("GET", f"{server.url}/v2/")
        assert not rundir.exists()  # the orphaned workers removed it


def test_the_next_start_removes_what_a_killed_server_left(tmp_path: Path) -> None:
    """The supervisor and every worker killed at once (SIGKILL: nobody left to clean up) leave
    their run directory in TMPDIR; the next start removes it, and only it: the run directory
    of a server still running and other files stay."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {"TMPDIR": str(tmpdir)}
    unrelated = tmpdir / "moorage-not-a-run-directory"
    unrelated.mkdir()
    with serving(tmp_path / "running", workers_config(tmp_path / "running"), env) as running:
        kept = rundir_of(children(running.process.pid)[0])
        with serving(tmp_path / "killed", workers_config(tmp_path / "killed"), env) as server:
            workers = children(server.process.pid)
            abandoned = rundir_of(workers[0])
            # Stopped first, so that no worker runs its orphan clean-up in between.
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                for pid in (server.process.pid, *workers):
                    os.kill(pid, sig)
            server.process.wait()
            wait_until(lambda: not any(alive(pid) for pid in workers), "every worker gone")
        assert abandoned.is_dir() and kept.is_dir()
        with serving(tmp_path / "next", workers_config(tmp_path / "next"), env) as later:
            assert requests.get(f"{later.url}/v2/", timeout=10).status_code == 200
            assert not abandoned.exists()
            assert kept.is_dir() and unrelated.is_dir()
            assert requests.get(f"{running.url}/v2/", timeout=10).status_code == 200


def test_inmemory_storage_with_workers_is_refused_in_one_line(tmp_path: Path) -> None:
    config = {
        "version": "0.1",
        "storage": {"inmemory": {}},
        "http": {"addr": f"127.0.0.1:{free_port()}", "workers": 2},
    }
    result = serve_to_exit(tmp_path, config)
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("moorage: http.workers:"), line
    assert "inmemory" in line
    assert processes_of(tmp_path) == []


def test_an_api_port_in_use_is_refused_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = workers_config(tmp_path)
        config["http"]["addr"] = f"127.0.0.1:{port}"
        result = serve_to_exit(tmp_path, config)
        assert result.returncode == 1
        line = one_line(result)
        assert line.startswith(f"moorage: cannot listen on 127.0.0.1:{port}"), line
        assert "in use" in line
        assert processes_of(tmp_path) == []
    assert not list((tmp_path / "data").glob("**/*"))  # nothing served, nothing written


def test_a_second_server_with_workers_cannot_share_the_port(tmp_path: Path) -> None:
    """Workers listen with SO_REUSEPORT, which would let another server doing the same bind
    the port too and take half the connections: the second is refused instead."""
    with serving(tmp_path / "first", workers_config(tmp_path / "first")) as first:
        config = workers_config(tmp_path / "second")
        config["http"]["addr"] = first.host
        result = serve_to_exit(tmp_path / "second", config)
        assert result.returncode == 1
        line = one_line(result)
        assert line.startswith(f"moorage: cannot listen on {first.host}"), line
        assert statuses(fan_out("GET", f"{first.url}/v2/")) == {200}
        assert len(workers_answering(fan_out("GET", f"{first.url}/v2/"))) == 2


def test_a_debug_port_in_use_is_named_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = workers_config(tmp_path, debug={"addr": f"127.0.0.1:{port}"})
        result = serve_to_exit(tmp_path, config)
        assert result.returncode == 1
        assert processes_of(tmp_path) == []
        line = one_line(result)
        assert str(port) in line, line


# --- unix socket ---------------------------------------------------------------------------------


def test_unix_socket_with_workers(tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="moorage-test-"))  # a socket path fits in 108 bytes
    try:
        sock = str(short / "moorage.sock")
        config = workers_config(tmp_path, net="unix")
        config["http"]["addr"] = sock
        data = os.urandom(MiB + 3)
        digest = sha256(data)
        with (
            nothing_left_behind(tmp_path),
            moorage_listening(tmp_path / "server", config) as server,
        ):
            assert f"unix:{sock}" in server.logs()
            assert len(children(server.pid)) == 2
            for _ in range(16):  # each on a new connection
                status, headers, body = unix_request(sock, "GET", "/v2/")
                assert status == 200, body
                assert REQUEST_ID.match(headers["X-Request-Id"])
            status, _, body = unix_request(
                sock, "POST", f"/v2/unix/app/blobs/uploads/?digest={digest}", body=data
            )
            assert status == 201, body
            for _ in range(8):
                status, _, body = unix_request(sock, "GET", f"/v2/unix/app/blobs/{digest}")
                assert status == 200
                assert body == data
            status, _, body = unix_request(sock, "GET", "/v2/_catalog")
            assert json.loads(body)["repositories"] == ["unix/app"]
    finally:
        shutil.rmtree(short, ignore_errors=True)


# --- the setting ---------------------------------------------------------------------------------


def test_tls_in_every_worker(tmp_path: Path) -> None:
    """TLS terminated in the workers: each serves HTTPS on its socket, a push and pulls work,
    and plain HTTP gets no answer."""
    ca = make_ca(tmp_path / "pki")
    cert, key = ca.issue(ca.cert.parent, "server", server=True)
    config = workers_config(tmp_path)
    config["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
    base = f"https://{config['http']['addr']}"
    with nothing_left_behind(tmp_path), moorage_listening(tmp_path / "server", config):
        client = Client(base)
        client.http.trust_env = False  # REQUESTS_CA_BUNDLE would replace session.verify
        client.http.verify = str(ca.cert)
        payload, digest = client.push_image("tls/app", "v1", seed="tls-workers")
        answers = fan_out(
            "GET", f"{base}/v2/tls/app/manifests/v1", verify=str(ca.cert), headers=ACCEPT_ANY
        )
        assert statuses(answers) == {200}
        assert {answer.content for answer in answers} == {payload}
        assert {answer.headers["Docker-Content-Digest"] for answer in answers} == {digest}
        assert len(workers_answering(answers)) == 2
        with pytest.raises(requests.ConnectionError):
            fresh("GET", f"http://{config['http']['addr']}/v2/")


def test_zero_workers_is_refused_by_config_check(tmp_path: Path) -> None:
    result = serve_to_exit(tmp_path, workers_config(tmp_path, workers=0), command="check")
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("moorage: config: http.workers:"), line
    assert "1 or more" in line
    for wrong in ("many", -1):
        result = serve_to_exit(tmp_path, workers_config(tmp_path, workers=wrong), command="check")
        assert result.returncode == 1, wrong
        lines = (result.stderr).strip().splitlines()
        assert lines and all("http.workers" in line for line in lines), result.stderr
    result = serve_to_exit(tmp_path, workers_config(tmp_path, workers=0))
    assert result.returncode == 1
    assert "http.workers" in one_line(result)


def test_config_check_accepts_workers(tmp_path: Path) -> None:
    for workers, effective in ((1, 1), (2, 2), ("auto", "auto"), (None, "auto")):
        result = serve_to_exit(tmp_path, workers_config(tmp_path, workers=workers), command="check")
        assert result.returncode == 0, result.stderr
        assert yaml.safe_load(result.stdout)["http"]["workers"] == effective


def test_config_check_refuses_inmemory_storage_with_workers(tmp_path: Path) -> None:
    config = {
        "version": "0.1",
        "storage": {"inmemory": {}},
        "http": {"addr": f"127.0.0.1:{free_port()}", "workers": 2},
    }
    assert serve_to_exit(tmp_path / "serve", config).returncode == 1
    result = serve_to_exit(tmp_path / "check", config, command="check")
    assert result.returncode == 1, result.stdout
    assert "http.workers" in one_line(result)


def test_workers_from_the_environment(tmp_path: Path) -> None:
    config = workers_config(tmp_path, workers=None)
    with serving(tmp_path, config, env={"REGISTRY_HTTP_WORKERS": "2"}) as server:
        assert len(children(server.process.pid)) == 2
        assert len(workers_answering(fan_out("GET", f"{server.url}/v2/"))) == 2
        assert workers_named(server) == 2


@pytest.mark.parametrize("workers", ["auto", None], ids=["auto", "default"])
def test_auto_is_one_worker_per_usable_cpu(tmp_path: Path, workers: str | None) -> None:
    cpus = len(os.sched_getaffinity(0))
    with serving(tmp_path, workers_config(tmp_path, workers=workers)) as server:
        # One CPU: one process serves, as with workers: 1.
        assert len(children(server.process.pid)) == (cpus if cpus > 1 else 0)
        answering = workers_answering(fan_out("GET", f"{server.url}/v2/"))
        assert len(answering) >= 2 if cpus > 1 else len(answering) == 1


def test_inmemory_storage_is_one_process_by_default(tmp_path: Path) -> None:
    config = moorage_config(None, free_port())
    with serving(tmp_path, config) as server:
        assert children(server.process.pid) == []
        assert len(workers_answering(fan_out("GET", f"{server.url}/v2/"))) == 1
        assert workers_named(server) is None
    result = serve_to_exit(tmp_path / "check", config, command="check")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["http"]["workers"] == "auto"


def test_one_worker_is_a_single_process(tmp_path: Path) -> None:
    with serving(tmp_path, workers_config(tmp_path, workers=1)) as server:
        assert children(server.process.pid) == []
        assert len(workers_answering(fan_out("GET", f"{server.url}/v2/"))) == 1
        assert workers_named(server) is None
