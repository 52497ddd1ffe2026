"""Every key of distribution's schema is honoured, refused with its key path and why, or
accepted with a warning that it has no effect: `moorage config check` as a user runs it."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
import yaml

from moorage.cli.main import main


def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`moorage config check` of the config; its exit code and what it wrote on stderr."""
    path = tmp_path / "config.yml"
    path.write_text(textwrap.dedent(text))
    path.chmod(0o600)
    try:
        code = main(["config", "check", str(path)])
    except SystemExit as exc:  # the config does not load: `main` exits with its lines
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


BASE = """
version: 0.1
http:
  secret: a-shared-secret
storage:
  inmemory:
"""


def refused(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    code, err = check(tmp_path, text, capsys)
    assert code == 1
    return [line for line in err.splitlines() if line]


@pytest.mark.parametrize(
    ("storage", "line"),
    [
        ("filesystem:\n    rootdirectory: /tmp/r\n    bogus: 1", "storage.filesystem.bogus"),
        ("inmemory:\n    rootdirectory: /tmp/r", "storage.inmemory.rootdirectory"),
        (
            "s3:\n    bucket: b\n    region: r\n    secretky: x",
            "storage.s3.secretky",
        ),
    ],
)
def test_unknown_driver_parameters_are_key_path_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], storage: str, line: str
) -> None:
    text = f"version: 0.1\nhttp:\n  secret: s\nstorage:\n  {storage}\n"
    (problem,) = refused(tmp_path, text, capsys)
    assert problem == f"moorage: config: {line}: unknown key"


def test_s3_settings_moorage_cannot_honour_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "version: 0.1\nhttp:\n  secret: s\nstorage:\n  s3:\n    bucket: b\n    region: r\n"
    text += "    objectacl: public-read\n"
    (problem,) = refused(tmp_path, text, capsys)
    assert problem.startswith("moorage: config: storage.s3.objectacl: moorage writes objects")


@pytest.mark.parametrize(
    ("auth", "line"),
    [
        ("htpasswd:\n    realm: r\n    path: /p\n    pth: /q", "auth.htpasswd.pth"),
        ("silly:\n    realm: r\n    services: s", "auth.silly.services"),
        (
            "token:\n    realm: r\n    service: s\n    issuer: i\n    rootcertbundel: /b",
            "auth.token.rootcertbundel",
        ),
    ],
)
def test_unknown_auth_options_are_key_path_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], auth: str, line: str
) -> None:
    (problem,) = refused(tmp_path, BASE + f"auth:\n  {auth}\n", capsys)
    assert problem == f"moorage: config: {line}: unknown key"


@pytest.mark.parametrize(
    ("section", "line"),
    [
        ("redis:\n  addr: localhost:6379\n  adr: x", "redis.adr: unknown key"),
        ("redis:\n  pool:\n    maxactiv: 3", "redis.pool.maxactiv: unknown key"),
        (
            "notifications:\n  endpoints:\n    - name: a\n      url: http://h/\n      timout: 1s",
            "notifications.endpoints.0.timout: unknown key",
        ),
        ("proxy:\n  remoteurl: https://r\n  usename: u", "proxy.usename: unknown key"),
        (
            "health:\n  tcp:\n    - addr: h:1\n      treshold: 2",
            "health.tcp.0.treshold: unknown key",
        ),
        ("reporting:\n  bugsnag:\n    apikeys: k", "reporting.bugsnag.apikeys: unknown key"),
        (
            "middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: h://x/\n"
            "        base: y",
            "middleware.storage: [0] redirect: options.base: unknown key",
        ),
    ],
)
def test_unknown_keys_in_sections_are_key_path_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, line: str
) -> None:
    (problem,) = refused(tmp_path, BASE + section + "\n", capsys)
    assert problem == f"moorage: config: {line}"


@pytest.mark.parametrize(
    ("section", "line"),
    [
        (
            "middleware:\n  registry:\n    - name: openshift",
            "middleware.registry: [0] openshift: moorage has no registry or repository middleware",
        ),
        (
            "middleware:\n  repository:\n    - name: openshift",
            "middleware.repository: [0] openshift: moorage has no registry or repository",
        ),
        (
            "middleware:\n  storage:\n    - name: redirect\n      options: {}",
            "middleware.storage: [0] redirect: options.baseurl: required",
        ),
        (
            "compatibility:\n  schema1:\n    signingkeyfile: /etc/registry/key.json",
            "compatibility.schema1: Docker image manifest schema 1 is not supported",
        ),
        (
            "compatibility:\n  schema1:\n    enabled: true",
            "compatibility.schema1: Docker image manifest schema 1 is not supported",
        ),
        (
            "validation:\n  manifests:\n    urls:\n      allow: ['(unclosed']",
            "validation.manifests.urls.allow.0: not a regular expression",
        ),
        (
            "policy:\n  repository:\n    classes: [image]",
            "policy.repository.classes: repository classes are not enforced",
        ),
        (
            "log:\n  hooks:\n    - type: mail\n      levels: [panic]",
            "log.hooks.0: moorage sends no mail from its log",
        ),
        ("http:\n  h2c:\n    enabled: true", "http.h2c.enabled: moorage serves HTTP/1.1 only"),
        (
            "http:\n  tls:\n    letsencrypt:\n      cachefile: /c\n      email: a@b",
            "http.tls.letsencrypt: moorage does not obtain certificates (ACME)",
        ),
        (
            "http:\n  tls:\n    clientauth: request-client-cert",
            "http.tls.clientauth: request-client-cert takes client certificates without",
        ),
        ("redis:\n  addrs: [a:1, b:2]", "redis.addrs: several addresses make distribution"),
        ("redis:\n  mastername: m\n  addrs: [a:1]", "redis.mastername: Redis Sentinel is not"),
    ],
)
def test_what_moorage_does_not_do_is_refused_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, line: str
) -> None:
    text = BASE.replace("http:\n  secret: a-shared-secret\n", "") + section + "\n"
    (problem,) = refused(tmp_path, text, capsys)
    assert problem.startswith(f"moorage: config: {line}"), problem


def test_disabled_middleware_and_hooks_are_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = BASE + textwrap.dedent(
        """\
        middleware:
          registry:
            - name: openshift
              disabled: true
          storage:
            - name: cloudfront
              disabled: true
        log:
          hooks:
            - type: mail
              disabled: true
        """
    )
    code, err = check(tmp_path, text, capsys)
    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    ("section", "warning"),
    [
        (
            "reporting:\n  bugsnag:\n    apikey: k\n    releasestage: production",
            "reporting.bugsnag: moorage reports no errors to bugsnag",
        ),
        (
            "reporting:\n  newrelic:\n    licensekey: k\n    name: registry",
            "reporting.newrelic: moorage reports no errors to newrelic",
        ),
        ("redis:\n  addr: a:1\n  maxretries: 3", "redis.maxretries: no effect"),
        ("redis:\n  addr: a:1\n  pool:\n    maxidle: 16", "redis.pool.maxidle: no effect"),
        ("validation:\n  disabled: true", "validation.disabled: moorage still checks"),
        ("log:\n  reportcaller: true", "log.reportcaller: no effect"),
    ],
)
def test_keys_without_effect_are_accepted_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, warning: str
) -> None:
    code, err = check(tmp_path, BASE + section + "\n", capsys)
    assert code == 0
    assert warning in err


def test_tag_concurrencylimit_is_accepted_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = BASE + "  tag:\n    concurrencylimit: 8\n"
    code, err = check(tmp_path, text, capsys)
    assert code == 0
    assert "storage.tag.concurrencylimit: no effect" in err


def test_filesystem_maxthreads_is_accepted_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "version: 0.1\nhttp:\n  secret: s\nstorage:\n  filesystem:\n"
    text += f"    rootdirectory: {tmp_path}\n    maxthreads: 100\n"
    code, err = check(tmp_path, text, capsys)
    assert code == 0
    assert "storage.filesystem.maxthreads: no effect" in err


def test_health_checks_are_typed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = BASE + "health:\n  http:\n    - uri: ftp://x/\n  tcp:\n    - addr: nohostport\n"
    assert refused(tmp_path, text, capsys) == [
        "moorage: config: health.http.0.uri: expected an http:// or https:// URL",
        "moorage: config: health.tcp.0.addr: expected host:port, got 'nohostport'",
    ]


def test_check_prints_the_typed_sections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = BASE + "health:\n  file:\n    - file: /srv/out\n"
    path = tmp_path / "config.yml"
    path.write_text(text)
    path.chmod(0o600)
    assert main(["config", "check", str(path)]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["health"]["file"] == [{"file": "/srv/out", "interval": "10s", "threshold": 0}]


def s3_signed(**extra: object) -> str:
    """The presigned URL a blob GET would redirect to (signing needs no network)."""
    from moorage.storage.driver import create

    async def signed() -> str | None:
        params = {"bucket": "b", "region": "us-east-1", "accesskey": "a", "secretkey": "s"}
        driver = create("s3", {**params, **extra})
        try:
            return await driver.redirect_url("/docker/registry/v2/blobs/sha256/aa/aa/data")
        finally:
            await driver.close()

    url = asyncio.run(signed())
    assert url is not None
    return url


def test_s3_presigned_urls_are_signed_with_v4_in_us_east_1() -> None:
    """v4auth is always on, for presigned URLs too (S3 refuses v2 ones for newer buckets)."""
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in s3_signed()
    assert "Signature=" not in s3_signed().replace("X-Amz-Signature=", "")


def test_s3_usefipsendpoint_signs_for_the_fips_endpoint() -> None:
    """distribution 3's key: the presigned URLs name S3's FIPS host."""
    assert s3_signed(usefipsendpoint=True).split("/")[2] == "s3-fips.us-east-1.amazonaws.com"
    assert s3_signed(usefipsendpoint=False).split("/")[2] == "s3.amazonaws.com"


S3 = """
version: 0.1
http:
  secret: a-shared-secret
storage:
  s3:
    bucket: b
    region: us-east-1
    accesskey: a
    secretkey: s
"""


def cloudfront(key: Path | str, **options: str) -> str:
    entry = {"baseurl": "https://d.cloudfront.net/", "privatekey": str(key), "keypairid": "K"}
    section = {"storage": [{"name": "cloudfront", "options": {**entry, **options}}]}
    return yaml.safe_dump({"middleware": section})


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "cloudfront.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def test_cloudfront_with_a_private_key_file_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pem: Path
) -> None:
    code, err = check(tmp_path, S3 + cloudfront(pem, duration="30m", ipfilteredby="none"), capsys)
    assert (code, err) == (0, "")
    filtered = cloudfront(pem, ipfilteredby="awsregion", awsregion="us-east-1, eu-west-1")
    code, err = check(tmp_path, S3 + filtered, capsys)
    assert (code, err) == (0, "")  # the ranges are fetched when serving, not by the check


@pytest.mark.parametrize(
    ("options", "line"),
    [
        ({"dration": "1m"}, "middleware.storage: [0] cloudfront: options.dration: unknown key"),
        ({"duration": "soon"}, "middleware.storage: [0] cloudfront: options.duration: invalid"),
        ({"keypairid": ""}, "middleware.storage: [0] cloudfront: options.keypairid: required"),
        (
            {"ipfilteredby": "awsregion"},
            "middleware.storage: [0] cloudfront: options.awsregion: required with ipfilteredby",
        ),
        (
            {"ipfilteredby": "azure"},
            "middleware.storage: [0] cloudfront: options.ipfilteredby: expected none, aws or",
        ),
        (
            {"ipfilteredby": "aws", "iprangesurl": "ftp://h/ip-ranges.json"},
            "middleware.storage: [0] cloudfront: options.iprangesurl: expected an http://",
        ),
        (
            {"updatefrequency": "0s"},
            "middleware.storage: [0] cloudfront: options.updatefrequency: expected a duration",
        ),
    ],
)
def test_cloudfront_options_are_checked_naming_the_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pem: Path,
    options: dict[str, str],
    line: str,
) -> None:
    (problem,) = refused(tmp_path, S3 + cloudfront(pem, **options), capsys)
    assert problem.startswith(f"moorage: config: {line}"), problem


def test_a_missing_or_unreadable_cloudfront_key_is_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pem: Path
) -> None:
    missing = tmp_path / "missing.pem"
    assert refused(tmp_path, S3 + cloudfront(missing), capsys) == [
        "moorage: config: middleware.storage.0.options.privatekey: cannot read "
        f"{missing}: No such file or directory"
    ]
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    garbage.chmod(0o600)
    assert refused(tmp_path, S3 + cloudfront(garbage), capsys) == [
        "moorage: config: middleware.storage.0.options.privatekey: "
        f"{garbage} holds no unencrypted PEM private key"
    ]


def test_an_exposed_cloudfront_key_is_warned_about_or_refused_as_a_secret_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pem: Path
) -> None:
    pem.chmod(0o644)
    code, err = check(tmp_path, S3 + cloudfront(pem), capsys)
    assert code == 0
    assert f"secret file for middleware.storage.0.options.privatekey {pem} is exposed" in err
    path = tmp_path / "config.yml"
    try:
        code = main(["config", "check", "--strict-secrets", str(path)])
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == 1
    assert "middleware.storage.0.options.privatekey" in capsys.readouterr().err


def test_cloudfront_needs_the_s3_driver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pem: Path
) -> None:
    (problem,) = refused(tmp_path, BASE + cloudfront(pem), capsys)
    assert problem.startswith(
        "moorage: config: middleware.storage.0: cloudfront signs S3 object keys"
    ), problem


def test_a_cloudfront_key_may_be_a_systemd_credential(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pem: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(pem.parent))
    code, err = check(tmp_path, S3 + cloudfront("${CREDENTIALS_DIRECTORY}/cloudfront.pem"), capsys)
    assert (code, err) == (0, "")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    (problem,) = refused(tmp_path, S3 + cloudfront("${CREDENTIALS_DIRECTORY}/x.pem"), capsys)
    assert "middleware.storage.0.options.privatekey: secret file" in problem
    assert "names $CREDENTIALS_DIRECTORY, which is not set" in problem
