"""moorage behind Debian's nginx terminating HTTPS (a certificate made in the test) and
forwarding plain HTTP: skopeo through it, URLs with the client-facing scheme and host whichever
header names them, a 200 MiB blob streamed both ways without buffering, and the access log naming
the client through a trusted proxy only."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from tests.api import Client, RepeatedBody, sha256
from tests.integration.http_support import (
    CA,
    cert_dir,
    make_ca,
    nginx_preamble,
    require,
    skopeo,
    skopeo_round_trip,
)
from tests.servers import Server, free_port, moorage_config, peak_rss_mib, run_moorage, stop

pytestmark = [pytest.mark.timeout(600), pytest.mark.interop]

MiB = 1024 * 1024

# How nginx names the client-facing scheme and host to moorage.
HEADER_STYLES = {
    # The usual: the client's Host passed on, the scheme in X-Forwarded-Proto.
    "host": """
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;""",
    # Host left as the upstream's; the client's in X-Forwarded-Host.
    "x-forwarded-host": """
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;""",
    # RFC 7239 only.
    "forwarded": """
        proxy_set_header Forwarded "for=$remote_addr;proto=$scheme;host=\\"$http_host\\"";""",
}


@dataclass
class Nginx:
    host: str  # 127.0.0.1:PORT, the client-facing address
    ca: CA
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    def session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would replace session.verify
        session.verify = str(self.ca.cert)
        return session

    def client(self) -> Client:
        client = Client(self.url)
        client.http = self.session()
        return client

    def error_log(self) -> str:
        return (self.directory / "error.log").read_text(errors="replace")


def nginx_conf(directory: Path, port: int, upstream: str, cert: Path, key: Path, style: str) -> str:
    return (
        nginx_preamble(directory)
        + f"""
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        client_max_body_size 0;
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;{HEADER_STYLES[style]}
        }}
    }}
}}
"""
    )


def start_nginx(directory: Path, upstream: str, ca: CA, style: str = "host") -> Nginx:
    binary = require("nginx")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = ca.issue(directory, "nginx", server=True)
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(nginx_conf(directory, port, upstream, cert, key, style))
    with open(directory / "stderr.log", "wb") as out:
        process = subprocess.Popen(
            [binary, "-c", str(conf), "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT
        )
    proxy = Nginx(f"127.0.0.1:{port}", ca, process, directory)
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"nginx exited {process.returncode}:\n{(directory / 'stderr.log').read_text()}"
                f"{proxy.error_log()}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proxy
        except OSError:
            if time.monotonic() > deadline:
                stop(process, timeout=15)
                raise RuntimeError(f"nginx not listening after 15s:\n{proxy.error_log()}") from None
            time.sleep(0.05)


@pytest.fixture
def ca(tmp_path: Path) -> CA:
    return make_ca(tmp_path / "pki")


@pytest.fixture(params=list(HEADER_STYLES))
def style(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def proxied(tmp_path: Path, moorage: Server, ca: CA) -> Iterator[Nginx]:
    """nginx (forwarding Host and X-Forwarded-Proto) in front of the `moorage` fixture."""
    proxy = start_nginx(tmp_path / "nginx", moorage.host, ca)
    try:
        yield proxy
    finally:
        stop(proxy.process, timeout=15)


def test_skopeo_pushes_and_pulls_through_nginx(
    tmp_path: Path, moorage: Server, proxied: Nginx
) -> None:
    certs = cert_dir(tmp_path / "certs", proxied.ca)
    skopeo_round_trip(
        tmp_path,
        f"docker://{proxied.host}/proxied/app:v1",
        ["--dest-cert-dir", str(certs)],
        ["--src-cert-dir", str(certs)],
        seed="nginx",
    )
    tags = skopeo("list-tags", "--cert-dir", str(certs), f"docker://{proxied.host}/proxied/app")
    assert '"v1"' in tags.stdout
    # The pushes went through nginx: moorage saw them from nginx, with nginx's Host.
    assert "PUT /v2/proxied/app/manifests/v1 201" in moorage.logs()


def test_urls_name_the_proxy_whichever_header_says_so(
    tmp_path: Path, moorage: Server, ca: CA, style: str
) -> None:
    proxy = start_nginx(tmp_path / "nginx", moorage.host, ca, style)
    try:
        client = proxy.client()
        location = client.start_upload("urls/app")
        assert location.startswith(f"https://{proxy.host}/v2/urls/app/blobs/uploads/"), location
        data = os.urandom(100_000)
        half = client.request(
            "PATCH", location, data=data[:50_000], headers={"Content-Range": "0-49999"}
        )
        assert half.status_code == 202, half.text
        assert half.headers["Location"].startswith(f"https://{proxy.host}/v2/urls/app/")
        done = client.request(
            "PUT", half.headers["Location"], params={"digest": sha256(data)}, data=data[50_000:]
        )
        assert done.status_code == 201, done.text
        assert done.headers["Location"] == f"https://{proxy.host}/v2/urls/app/blobs/{sha256(data)}"
        for tag in ("a", "b", "c"):
            payload, digest = client.push_image("urls/app", tag, seed=tag)
        put = client.put_manifest("urls/app", "d", payload)
        assert put.headers["Location"] == f"https://{proxy.host}/v2/urls/app/manifests/{digest}"
        # The tags list's next-page Link, followed as a client does, through the proxy.
        seen: list[str] = []
        url = f"{proxy.url}/v2/urls/app/tags/list?n=1"
        for _ in range(10):
            page = client.request("GET", url)
            assert page.status_code == 200, page.text
            seen += page.json()["tags"]
            link = page.headers.get("Link")
            if link is None:
                break
            url = urljoin(page.url, link[link.index("<") + 1 : link.index(">")])
            assert url.startswith(f"{proxy.url}/v2/urls/app/tags/list?"), url
        assert seen == ["a", "b", "c", "d"]
    finally:
        stop(proxy.process, timeout=15)


def test_a_200_mib_blob_streams_through_nginx(
    tmp_path: Path, moorage: Server, proxied: Nginx
) -> None:
    assert moorage.root is not None
    block = os.urandom(MiB)
    count = 200
    hasher = hashlib.sha256()
    for _ in range(count):
        hasher.update(block)
    digest = "sha256:" + hasher.hexdigest()
    client = proxied.client()
    location = client.start_upload("big/app")
    arrived: list[int] = []

    def on_block(index: int) -> None:
        # Three quarters in, moorage must already hold most of what was sent: nginx passes
        # the body on as it comes instead of spooling it first.
        if index == 150:
            time.sleep(0.5)
            uploads = moorage.root.glob("docker/registry/v2/repositories/big/app/_uploads/*/data")  # type: ignore[union-attr]
            arrived.append(max((p.stat().st_size for p in uploads), default=0))

    done = client.request(
        "PUT",
        location,
        params={"digest": digest},
        data=RepeatedBody(block, count, on_block),
        timeout=300,
    )
    assert done.status_code == 201, done.text
    assert arrived and arrived[0] >= 100 * MiB, f"only {arrived} bytes had reached moorage"
    with client.request("GET", f"/v2/big/app/blobs/{digest}", stream=True, timeout=300) as pulled:
        assert pulled.status_code == 200
        got = hashlib.sha256()
        size = 0
        for chunk in pulled.iter_content(MiB):
            got.update(chunk)
            size += len(chunk)
    assert size == count * MiB
    assert "sha256:" + got.hexdigest() == digest
    rss = peak_rss_mib(moorage.process.pid)
    assert rss < 150, f"moorage peaked at {rss:.0f} MB"
    log = proxied.error_log()
    assert "buffered to a temporary file" not in log, log


# --- the access log ----------------------------------------------------------------------------


def access_line(server: Server, request_id: str) -> str:
    deadline = time.monotonic() + 5
    while True:
        lines = [
            line
            for line in server.logs().splitlines()
            if "moorage.access" in line and f"request_id={request_id}" in line
        ]
        if lines:
            return lines[0]
        assert time.monotonic() < deadline, f"no access line for {request_id}:\n{server.logs()}"
        time.sleep(0.05)


def remote_of(line: str) -> str:
    match = re.search(r"\bremote=(\S+)", line)
    assert match, line
    return match.group(1)


def get_from(source: str, host: str, path: str, headers: dict[str, str], ca: CA | None) -> int:
    """GET from a given local source address (any 127/8 address is this machine's), over
    HTTPS when a CA is given."""
    name, port = host.split(":")
    connection: http.client.HTTPConnection
    if ca is not None:
        context = ssl.create_default_context(cafile=str(ca.cert))
        connection = http.client.HTTPSConnection(
            name, int(port), timeout=30, source_address=(source, 0), context=context
        )
    else:
        connection = http.client.HTTPConnection(
            name, int(port), timeout=30, source_address=(source, 0)
        )
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_access_log_names_the_client_behind_a_trusted_proxy(
    tmp_path: Path, moorage: Server, ca: CA, style: str
) -> None:
    proxy = start_nginx(tmp_path / "nginx", moorage.host, ca, style)
    try:
        request_id = uuid.uuid4().hex
        status = get_from("127.0.0.2", proxy.host, "/v2/", {"X-Request-Id": request_id}, ca)
        assert status == 200
        assert remote_of(access_line(moorage, request_id)) == "127.0.0.2"
    finally:
        stop(proxy.process, timeout=15)


def test_access_log_ignores_forwarding_headers_from_untrusted_peers(tmp_path: Path, ca: CA) -> None:
    port = free_port()
    config = moorage_config(
        tmp_path / "data", port, http={"addr": f"127.0.0.1:{port}", "trustedproxies": []}
    )
    with run_moorage(tmp_path / "untrusting", config) as server:
        forged = {"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=198.51.100.7"}
        request_id = uuid.uuid4().hex
        status = get_from(
            "127.0.0.3", server.host, "/v2/", {**forged, "X-Request-Id": request_id}, None
        )
        assert status == 200
        line = access_line(server, request_id)
        assert remote_of(line) == "127.0.0.3", line
        # Through nginx, which is not trusted here either: the peer is nginx.
        proxy = start_nginx(tmp_path / "nginx", server.host, ca)
        try:
            request_id = uuid.uuid4().hex
            status = get_from("127.0.0.2", proxy.host, "/v2/", {"X-Request-Id": request_id}, ca)
            assert status == 200
            assert remote_of(access_line(server, request_id)) == "127.0.0.1"
        finally:
            stop(proxy.process, timeout=15)
        assert "203.0.113.9" not in server.logs()
        assert "198.51.100.7" not in server.logs()


def test_access_log_is_not_fooled_by_what_the_client_sends_the_proxy(
    tmp_path: Path, ca: CA
) -> None:
    """nginx appends the client's address to any X-Forwarded-For the client sent: the client is
    the last hop not itself a trusted proxy, whatever the client wrote before it."""
    port = free_port()
    config = moorage_config(
        tmp_path / "data", port, http={"addr": f"127.0.0.1:{port}", "trustedproxies": ["127.0.0.1"]}
    )
    with run_moorage(tmp_path / "server", config) as server:
        proxy = start_nginx(tmp_path / "nginx", server.host, ca)
        try:
            request_id = uuid.uuid4().hex
            forged = {"X-Forwarded-For": "203.0.113.9", "X-Request-Id": request_id}
            assert get_from("127.0.0.2", proxy.host, "/v2/", forged, ca) == 200
            assert remote_of(access_line(server, request_id)) == "127.0.0.2"
        finally:
            stop(proxy.process, timeout=15)
