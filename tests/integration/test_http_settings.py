"""The `http` section for real: TLS in the process (skopeo with a cert dir, a 64 MiB pull,
`minimumtls`, client certificates), a unix socket, `prefix`, `host`, `relativeurls`, `headers`,
the drain on SIGTERM and `:PORT` on every interface. Every server is a `moorage serve` process
on a free port, stopped in teardown."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from tests.api import Client, RepeatedBody, sha256
from tests.integration.http_support import (
    CA,
    Process,
    cert_dir,
    config,
    make_ca,
    moorage,
    skopeo,
    skopeo_round_trip,
)
from tests.servers import free_port

pytestmark = [pytest.mark.timeout(600), pytest.mark.interop]

MiB = 1024 * 1024


@pytest.fixture
def ca(tmp_path: Path) -> CA:
    return make_ca(tmp_path / "pki")


def tls_http(ca: CA, **tls: Any) -> tuple[dict[str, Any], int]:
    cert, key = ca.issue(ca.cert.parent, "server", server=True)
    port = free_port()
    return {
        "addr": f"127.0.0.1:{port}",
        "tls": {"certificate": str(cert), "key": str(key), **tls},
    }, port


def handshake(port: int, context: ssl.SSLContext) -> str:
    """Completes a TLS handshake with the server and one HTTP exchange; returns the protocol
    version. Raises what the TLS layer raises when the server refuses."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = tls.recv(4096)
        if not answer:  # TLS 1.3: a refused client certificate shows after the handshake
            raise ConnectionResetError("the server closed the connection")
        assert answer.startswith(b"HTTP/1.1 200"), answer
        version = tls.version()
        assert version is not None
        return version


# --- TLS ---------------------------------------------------------------------------------------


def test_tls_push_and_pull_with_skopeo_cert_dir(tmp_path: Path, ca: CA) -> None:
    settings, port = tls_http(ca)
    certs = cert_dir(tmp_path / "certs", ca)
    with moorage(tmp_path / "server", config(tmp_path / "data", settings)) as server:
        skopeo_round_trip(
            tmp_path,
            f"docker://127.0.0.1:{port}/tls/app:v1",
            ["--dest-cert-dir", str(certs)],
            ["--src-cert-dir", str(certs)],
            seed="tls",
        )
        client = Client(f"https://127.0.0.1:{port}")
        client.http.trust_env = False  # REQUESTS_CA_BUNDLE would replace session.verify
        client.http.verify = str(ca.cert)
        location = client.start_upload("tls/other")
        assert location.startswith(f"https://127.0.0.1:{port}/v2/tls/other/blobs/uploads/")
        # Without the CA the certificate is not trusted, and plain HTTP gets no answer.
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"https://127.0.0.1:{port}/v2/", timeout=10)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/v2/", timeout=10)
        assert "https://127.0.0.1:" in server.logs()


def test_tls_64_mib_blob_pulls_byte_exact(tmp_path: Path, ca: CA) -> None:
    settings, port = tls_http(ca)
    block = os.urandom(MiB)
    count = 64
    hasher = hashlib.sha256()
    for _ in range(count):
        hasher.update(block)
    digest = "sha256:" + hasher.hexdigest()
    with moorage(tmp_path / "server", config(tmp_path / "data", settings)):
        base = f"https://127.0.0.1:{port}/v2/big/app"
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would replace session.verify
        session.verify = str(ca.cert)
        pushed = session.post(
            f"{base}/blobs/uploads/",
            params={"digest": digest},
            data=RepeatedBody(block, count),
            timeout=120,
        )
        assert pushed.status_code == 201, pushed.text
        for _ in range(2):
            with session.get(f"{base}/blobs/{digest}", stream=True, timeout=120) as pulled:
                assert pulled.status_code == 200, pulled.text
                assert pulled.headers["Content-Length"] == str(count * MiB)
                got = hashlib.sha256()
                size = 0
                for chunk in pulled.iter_content(MiB):
                    got.update(chunk)
                    size += len(chunk)
            assert size == count * MiB
            assert "sha256:" + got.hexdigest() == digest
        # A range inside the blob, over TLS too.
        ranged = session.get(
            f"{base}/blobs/{digest}", headers={"Range": f"bytes={MiB - 10}-{MiB + 9}"}, timeout=30
        )
        assert ranged.status_code == 206
        assert ranged.content == block[-10:] + block[:10]
    # Its speed (1 MiB reads, not asyncio's copying sendfile fallback) is the benchmark's to
    # measure, against the reference registry: no timed assertion here.


def test_minimumtls_13_refuses_a_tls12_only_client(tmp_path: Path, ca: CA) -> None:
    settings, port = tls_http(ca, minimumtls="tls1.3")
    with moorage(tmp_path / "server", config(tmp_path / "data", settings)):
        only12 = ssl.create_default_context(cafile=str(ca.cert))
        only12.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            handshake(port, only12)
        assert handshake(port, ssl.create_default_context(cafile=str(ca.cert))) == "TLSv1.3"


def test_default_minimum_accepts_tls12(tmp_path: Path, ca: CA) -> None:
    settings, port = tls_http(ca)
    with moorage(tmp_path / "server", config(tmp_path / "data", settings)):
        only12 = ssl.create_default_context(cafile=str(ca.cert))
        only12.maximum_version = ssl.TLSVersion.TLSv1_2
        assert handshake(port, only12) == "TLSv1.2"
        with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point here
            warnings.simplefilter("ignore", DeprecationWarning)
            only11 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            only11.load_verify_locations(str(ca.cert))
            only11.set_ciphers("DEFAULT:@SECLEVEL=0")
            only11.minimum_version = ssl.TLSVersion.TLSv1
            only11.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises(ssl.SSLError):
            handshake(port, only11)


def test_a_bad_minimumtls_fails_at_start(tmp_path: Path, ca: CA) -> None:
    settings, _ = tls_http(ca, minimumtls="tls9")
    with (
        pytest.raises(RuntimeError, match="minimumtls"),
        moorage(tmp_path / "server", config(tmp_path / "data", settings)),
    ):
        pass


def test_ciphersuites_limit_what_a_tls12_client_may_use(tmp_path: Path, ca: CA) -> None:
    """distribution's Go names of suites (the server key is ECDSA); TLS 1.3's own suites stay
    on, as in Go."""
    settings, port = tls_http(ca, ciphersuites=["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"])
    with moorage(tmp_path / "server", config(tmp_path / "data", settings)):
        other = ssl.create_default_context(cafile=str(ca.cert))
        other.maximum_version = ssl.TLSVersion.TLSv1_2
        other.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        with pytest.raises(ssl.SSLError):
            handshake(port, other)
        listed = ssl.create_default_context(cafile=str(ca.cert))
        listed.maximum_version = ssl.TLSVersion.TLSv1_2
        listed.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384")
        assert handshake(port, listed) == "TLSv1.2"
        assert handshake(port, ssl.create_default_context(cafile=str(ca.cert))) == "TLSv1.3"


def test_clientauth_verify_if_given_admits_clients_without_a_certificate(
    tmp_path: Path, ca: CA
) -> None:
    clients = make_ca(tmp_path / "clients", "clients")
    stranger = make_ca(tmp_path / "stranger", "stranger")
    good = clients.issue(tmp_path / "clients", "alice", server=False)
    bad = stranger.issue(tmp_path / "stranger", "mallory", server=False)
    settings, port = tls_http(
        ca, clientcas=[str(clients.cert)], clientauth="verify-client-cert-if-given"
    )
    with moorage(tmp_path / "server", config(tmp_path / "data", settings)):
        url = f"https://127.0.0.1:{port}/v2/"
        assert requests.get(url, verify=str(ca.cert), timeout=10).status_code == 200
        mine = (str(good[0]), str(good[1]))
        assert requests.get(url, verify=str(ca.cert), cert=mine, timeout=10).status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url, verify=str(ca.cert), cert=(str(bad[0]), str(bad[1])), timeout=10)


def test_clientcas_require_a_client_certificate_from_those_cas(tmp_path: Path, ca: CA) -> None:
    clients = make_ca(tmp_path / "clients", "clients")
    stranger = make_ca(tmp_path / "stranger", "stranger")
    good = clients.issue(tmp_path / "clients", "alice", server=False)
    bad = stranger.issue(tmp_path / "stranger", "mallory", server=False)
    settings, port = tls_http(ca, clientcas=[str(clients.cert)])
    # The machine's default trust store holds the stranger CA: client certificates must be
    # checked against `clientcas` only, never against the CAs trusted for outgoing TLS.
    env = {"SSL_CERT_FILE": str(stranger.cert), "SSL_CERT_DIR": str(tmp_path / "stranger")}
    with moorage(tmp_path / "server", config(tmp_path / "data", settings), env=env):
        url = f"https://127.0.0.1:{port}/v2/"
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url, verify=str(ca.cert), timeout=10)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url, verify=str(ca.cert), cert=(str(bad[0]), str(bad[1])), timeout=10)
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            context = ssl.create_default_context(cafile=str(ca.cert))
            context.maximum_version = version
            with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
                handshake(port, context)
            context.load_cert_chain(str(good[0]), str(good[1]))
            assert handshake(port, context)
        ok = requests.get(url, verify=str(ca.cert), cert=(str(good[0]), str(good[1])), timeout=10)
        assert ok.status_code == 200

        certs = cert_dir(tmp_path / "certs", ca, good)
        skopeo_round_trip(
            tmp_path,
            f"docker://127.0.0.1:{port}/mtls/app:v1",
            ["--dest-cert-dir", str(certs)],
            ["--src-cert-dir", str(certs)],
            seed="mtls",
        )
        no_client = cert_dir(tmp_path / "certs-no-client", ca)
        ref = f"docker://127.0.0.1:{port}/mtls/app:v1"
        refused = skopeo("inspect", "--raw", "--cert-dir", str(no_client), ref, check=False)
        assert refused.returncode != 0


# --- unix socket -------------------------------------------------------------------------------


class UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a unix socket, the way a local reverse proxy talks to moorage."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.path)


def unix_request(
    path: str,
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = UnixConnection(path)
    try:
        connection.request(method, url, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory: a unix socket path must fit in 108 bytes, tmp_path may not."""
    directory = Path(tempfile.mkdtemp(prefix="moorage-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_unix_socket_serves_the_api(tmp_path: Path, short_dir: Path) -> None:
    sock = str(short_dir / "moorage.sock")
    settings = config(tmp_path / "data", {"net": "unix", "addr": sock})
    data = os.urandom(3 * MiB + 5)
    digest = sha256(data)
    with moorage(tmp_path / "server", settings) as server:
        assert f"unix:{sock}" in server.logs()
        status, headers, body = unix_request(sock, "GET", "/v2/")
        assert status == 200, body
        assert headers["Docker-Distribution-API-Version"] == "registry/2.0"
        status, headers, body = unix_request(
            sock, "POST", f"/v2/unix/app/blobs/uploads/?digest={digest}", body=data
        )
        assert status == 201, body
        assert headers["Location"] == f"http://localhost/v2/unix/app/blobs/{digest}"
        status, headers, body = unix_request(sock, "GET", f"/v2/unix/app/blobs/{digest}")
        assert status == 200
        assert body == data
        # No TCP listener was opened on the default :5000 either.
        assert ":5000" not in server.logs()
    # A restart over the socket file the last run left behind.
    with moorage(tmp_path / "server2", settings):
        status, _, body = unix_request(sock, "GET", f"/v2/unix/app/blobs/{digest}")
        assert status == 200
        assert body == data


# --- prefix, host, relativeurls, headers --------------------------------------------------------


def plain(tmp_path: Path, **http: Any) -> tuple[dict[str, Any], str]:
    port = free_port()
    return config(tmp_path / "data", {"addr": f"127.0.0.1:{port}", **http}), f"127.0.0.1:{port}"


def test_prefix_moves_the_api_and_every_url(tmp_path: Path) -> None:
    settings, host = plain(tmp_path, prefix="/registry/")
    with moorage(tmp_path / "server", settings):
        assert requests.get(f"http://{host}/registry/v2/", timeout=10).status_code == 200
        unprefixed = requests.get(f"http://{host}/v2/", timeout=10)
        assert unprefixed.status_code == 404
        assert [e["code"] for e in unprefixed.json()["errors"]] == ["NOT_FOUND"]
        client = Client(f"http://{host}/registry")
        location = client.start_upload("pre/app")
        assert location.startswith(f"http://{host}/registry/v2/pre/app/blobs/uploads/")
        data = b"prefixed blob"
        done = client.request("PUT", location, params={"digest": sha256(data)}, data=data)
        assert done.status_code == 201, done.text
        assert done.headers["Location"] == f"http://{host}/registry/v2/pre/app/blobs/{sha256(data)}"
        assert client.request("GET", f"/v2/pre/app/blobs/{sha256(data)}").content == data
        for tag in ("a", "b", "c"):
            payload, digest = client.push_image("pre/app", tag, seed=tag)
        put = client.put_manifest("pre/app", "d", payload)
        assert put.headers["Location"] == f"http://{host}/registry/v2/pre/app/manifests/{digest}"
        page = client.request("GET", "/v2/pre/app/tags/list", params={"n": 1})
        assert page.json()["tags"] == ["a"]
        link = page.headers["Link"]
        assert link.startswith("</registry/v2/pre/app/tags/list?"), link
        following = client.request("GET", urljoin(page.url, link[1 : link.index(">")]))
        assert following.status_code == 200
        assert following.json()["tags"] == ["b"]
        catalog = client.request("GET", "/v2/_catalog")
        assert catalog.json() == {"repositories": ["pre/app"]}
        assert requests.get(f"http://{host}/v2/pre/app/tags/list", timeout=10).status_code == 404


@pytest.mark.parametrize("prefix", ["", "/registry"])
def test_host_names_the_registry_in_every_location(tmp_path: Path, prefix: str) -> None:
    settings, host = plain(tmp_path, host="https://registry.example.com", prefix=prefix)
    public = f"https://registry.example.com{prefix}"
    with moorage(tmp_path / "server", settings):
        client = Client(f"http://{host}{prefix}")
        # The configured host wins over what a proxy says.
        client.http.headers.update({"X-Forwarded-Proto": "http", "X-Forwarded-Host": "evil"})
        location = client.start_upload("hosted/app")
        assert location.startswith(f"{public}/v2/hosted/app/blobs/uploads/"), location
        local = location.replace("https://registry.example.com", f"http://{host}")
        data = b"hosted blob"
        done = client.request("PUT", local, params={"digest": sha256(data)}, data=data)
        assert done.status_code == 201, done.text
        assert done.headers["Location"] == f"{public}/v2/hosted/app/blobs/{sha256(data)}"
        payload, digest = client.push_image("hosted/app", "v1")
        put = client.put_manifest("hosted/app", "v2", payload)
        assert put.headers["Location"] == f"{public}/v2/hosted/app/manifests/{digest}"


def test_relativeurls_makes_locations_relative(tmp_path: Path) -> None:
    settings, host = plain(tmp_path, relativeurls=True)
    with moorage(tmp_path / "server", settings):
        client = Client(f"http://{host}")
        client.http.headers.update({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "x.test"})
        location = client.start_upload("rel/app")
        assert location.startswith("/v2/rel/app/blobs/uploads/"), location
        data = b"relative blob"
        done = client.request("PUT", location, params={"digest": sha256(data)}, data=data)
        assert done.status_code == 201, done.text
        assert done.headers["Location"] == f"/v2/rel/app/blobs/{sha256(data)}"
        # A real client resolves them against the URL it used.
        skopeo_round_trip(
            tmp_path,
            f"docker://{host}/rel/skopeo:v1",
            ["--dest-tls-verify=false"],
            ["--src-tls-verify=false"],
            seed="relative",
        )


def test_configured_headers_are_on_every_response(tmp_path: Path) -> None:
    headers = {"X-Content-Type-Options": ["nosniff"], "X-Multi": ["one", "two"]}
    settings, host = plain(tmp_path, headers=headers)
    with moorage(tmp_path / "server", settings):
        client = Client(f"http://{host}")
        data = b"headed blob"
        responses: list[requests.Response] = [
            client.request("GET", "/v2/"),
            client.request(
                "POST", "/v2/hdr/app/blobs/uploads/", params={"digest": sha256(data)}, data=data
            ),
            client.request("POST", "/v2/hdr/app/blobs/uploads/"),
            client.request("GET", f"/v2/hdr/app/blobs/{sha256(data)}"),
            client.request("HEAD", f"/v2/hdr/app/blobs/{sha256(data)}"),
            client.request(
                "GET", f"/v2/hdr/app/blobs/{sha256(data)}", headers={"Range": "bytes=0-1"}
            ),
            client.request("GET", "/v2/hdr/app/manifests/missing"),  # 404, error envelope
            client.request("GET", "/v2/BAD/manifests/x"),  # 400 NAME_INVALID
            client.request("GET", "/v2/hdr/app/tags/list"),  # 404 NAME_UNKNOWN
            client.request("PUT", "/v2/"),  # 405
            client.request("GET", "/nowhere"),  # no route
            client.request(
                "GET", f"/v2/hdr/app/blobs/{sha256(data)}", headers={"Range": "bytes=99-"}
            ),
        ]
        statuses = [r.status_code for r in responses]
        assert statuses == [200, 201, 202, 200, 200, 206, 404, 400, 404, 405, 404, 416], statuses
        for response in responses:
            assert response.headers.get("X-Content-Type-Options") == "nosniff", (
                response.request.method,
                response.url,
                response.status_code,
            )
            assert response.raw.headers.getlist("X-Multi") == ["one", "two"], response.url


# --- drain on SIGTERM ---------------------------------------------------------------------------


def slow_upload(
    client: Client, repo: str, block: bytes, count: int, delay: float, started: threading.Event
) -> tuple[str, dict[str, Any], threading.Thread]:
    """Starts a session and, in a thread, PUTs `count` blocks with `delay` between them; the
    result dict gets the response (or the exception)."""
    location = client.start_upload(repo)
    digest = sha256(block * count)
    result: dict[str, Any] = {}

    def on_block(index: int) -> None:
        if index == 3:
            started.set()
        time.sleep(delay)

    def upload() -> None:
        try:
            result["response"] = client.request(
                "PUT",
                location,
                params={"digest": digest},
                data=RepeatedBody(block, count, on_block),
                timeout=120,
            )
        except requests.RequestException as exc:
            result["error"] = exc

    thread = threading.Thread(target=upload, daemon=True)
    thread.start()
    return digest, result, thread


def refused(port: int, within: float = 5) -> bool:
    """True once a new connection to the port is refused (within the time given)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.05)
    return False


def blob_data(root: Path, digest: str) -> Path:
    hex_ = digest.split(":")[1]
    return root / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


def wait_for(server: Process, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.logs():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{server.logs()}"
        time.sleep(0.02)


def test_sigterm_drains_an_upload_in_flight(tmp_path: Path) -> None:
    settings, host = plain(tmp_path, draintimeout="30s")
    port = int(host.split(":")[1])
    with moorage(tmp_path / "server", settings) as server:
        client = Client(f"http://{host}")
        idle = requests.Session()  # a keep-alive connection that must not hold the exit up
        assert idle.get(f"http://{host}/v2/", timeout=10).status_code == 200
        started = threading.Event()
        block = os.urandom(256 * 1024)
        digest, result, thread = slow_upload(client, "drain/app", block, 40, 0.1, started)
        assert started.wait(30)
        server.process.send_signal(signal.SIGTERM)
        wait_for(server, "draining")
        assert refused(port), "new connections still accepted after SIGTERM"
        thread.join(60)
        assert not thread.is_alive()
        assert "response" in result, result
        assert result["response"].status_code == 201, result["response"].text
        assert server.process.wait(timeout=30) == 0, server.logs()
        assert blob_data(tmp_path / "data", digest).read_bytes() == block * 40


def test_sigterm_cuts_requests_after_the_drain_timeout(tmp_path: Path) -> None:
    settings, host = plain(tmp_path, draintimeout="1s")
    with moorage(tmp_path / "server", settings) as server:
        client = Client(f"http://{host}")
        started = threading.Event()
        block = os.urandom(64 * 1024)
        digest, result, thread = slow_upload(client, "cut/app", block, 200, 0.1, started)
        assert started.wait(30)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0, server.logs()
        assert time.monotonic() - signalled < 6
        thread.join(60)
        assert "error" in result or result["response"].status_code != 201, result
        assert not blob_data(tmp_path / "data", digest).exists()


# --- addr ---------------------------------------------------------------------------------------


def test_addr_without_host_listens_on_every_interface(tmp_path: Path) -> None:
    port = free_port()
    with moorage(tmp_path / "server", config(tmp_path / "data", {"addr": f":{port}"})):
        # 127.0.0.2 reaches only a listener on every IPv4 interface, not one on 127.0.0.1.
        for host in ("127.0.0.1", "127.0.0.2", "[::1]"):
            response = requests.get(f"http://{host}:{port}/v2/", timeout=10)
            assert response.status_code == 200, host
        client = Client(f"http://127.0.0.1:{port}")
        location = client.start_upload("any/app")
        assert urlsplit(location).netloc == f"127.0.0.1:{port}"
