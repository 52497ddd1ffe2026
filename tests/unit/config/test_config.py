"""Loading distribution-style `config.yml` files, and `REGISTRY_*` environment overrides."""

from __future__ import annotations

import logging
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from moorage.config.loader import DEFAULT_ADDR, ConfigError, embedded_default, load
from moorage.config.schema import Config

MINIMAL = """
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
"""

# Every section of distribution's documented configuration (docs/content/about/configuration.md),
# on the filesystem driver: the other drivers are not moorage's.
DISTRIBUTION = r"""
version: 0.1
log:
  accesslog:
    disabled: true
  level: debug
  formatter: text
  fields:
    service: registry
    environment: staging
  hooks:
    - type: mail
      disabled: true
      levels:
        - panic
      options:
        smtp:
          addr: mail.example.com:25
          username: mailuser
          password: password
          insecure: true
        from: sender@example.com
        to:
          - errors@example.com
storage:
  filesystem:
    rootdirectory: /var/lib/registry
    maxthreads: 100
  tag:
    concurrencylimit: 8
  delete:
    enabled: true
  redirect:
    disable: false
  cache:
    blobdescriptor: redis
    blobdescriptorsize: 10000
  maintenance:
    uploadpurging:
      enabled: true
      age: 168h
      interval: 24h
      dryrun: false
    readonly:
      enabled: false
auth:
  silly:
    realm: silly-realm
    service: silly-service
  token:
    autoredirect: true
    realm: token-realm
    service: token-service
    issuer: registry-token-issuer
    rootcertbundle: /root/certs/bundle
    jwks: /path/to/jwks
    signingalgorithms:
        - EdDSA
        - HS256
  htpasswd:
    realm: basic-realm
    path: /path/to/htpasswd
middleware:
  registry:
    - name: ARegistryMiddleware
      options:
        foo: bar
  repository:
    - name: ARepositoryMiddleware
      options:
        foo: bar
  storage:
    - name: cloudfront
      options:
        baseurl: https://my.cloudfronted.domain.com/
        privatekey: /path/to/pem
        keypairid: cloudfrontkeypairid
        duration: 3000s
        ipfilteredby: awsregion
        awsregion: us-east-1, use-east-2
        updatefrequency: 12h
        iprangesurl: https://ip-ranges.amazonaws.com/ip-ranges.json
    - name: redirect
      options:
        baseurl: https://example.com/
http:
  addr: localhost:5000
  prefix: /my/nested/registry/
  host: https://myregistryaddress.org:5000
  secret: asecretforlocaldevelopment
  relativeurls: false
  draintimeout: 60s
  tls:
    certificate: /path/to/x509/public
    key: /path/to/x509/private
    clientcas:
      - /path/to/ca.pem
      - /path/to/another/ca.pem
    clientauth: require-and-verify-client-cert
    minimumtls: tls1.2
    ciphersuites:
      - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    letsencrypt:
      cachefile: /path/to/cache-file
      email: emailused@letsencrypt.com
      hosts: [myregistryaddress.org]
      directoryurl: https://acme-v02.api.letsencrypt.org/directory
  debug:
    addr: localhost:5001
    prometheus:
      enabled: true
      path: /metrics
  headers:
    X-Content-Type-Options: [nosniff]
  http2:
    disabled: false
  h2c:
    enabled: false
notifications:
  events:
    includereferences: true
  endpoints:
    - name: alistener
      disabled: false
      url: https://my.listener.com/event
      headers:
        Authorization: [Bearer <your token, if needed>]
      timeout: 1s
      threshold: 10
      backoff: 1s
      ignoredmediatypes:
        - application/octet-stream
      ignore:
        mediatypes:
           - application/octet-stream
        actions:
           - pull
redis:
  tls:
    certificate: /path/to/cert.crt
    key: /path/to/key.pem
    clientcas:
      - /path/to/ca.pem
  addrs: [localhost:6379]
  password: asecret
  db: 0
  dialtimeout: 10ms
  readtimeout: 10ms
  writetimeout: 10ms
  maxidleconns: 16
  poolsize: 64
  connmaxidletime: 300s
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
  file:
    - file: /path/to/checked/file
      interval: 10s
  http:
    - uri: http://server.to.check/must/return/200
      headers:
        Authorization: [Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==]
      statuscode: 200
      timeout: 3s
      interval: 10s
      threshold: 3
  tcp:
    - addr: redis-server.domain.com:6379
      timeout: 3s
      interval: 10s
      threshold: 3
proxy:
  remoteurl: https://registry-1.docker.io
  username: username
  password: password
  exec:
    command: docker-credential-helper
    lifetime: 1h
  ttl: 168h
  remotenamespace: namespace
validation:
  disabled: false
  manifests:
    urls:
      allow:
        - ^https?://([^/]+\.)*example\.com/
      deny:
        - ^https?://www\.example\.com/
    indexes:
      platforms: List
      platformlist:
      - architecture: amd64
        os: linux
catalog:
  maxentries: 500
"""

# distribution 2.x's redis section: a single address and a pool.
REDIS_V2 = """
version: 0.1
storage:
  inmemory:
redis:
  addr: localhost:6379
  password: asecret
  db: 0
  dialtimeout: 10ms
  readtimeout: 10ms
  writetimeout: 10ms
  pool:
    maxidle: 16
    maxactive: 64
    idletimeout: 300s
  tls:
    enabled: false
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, text), environ={} if environ is None else environ)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_minimal(tmp_path: Path) -> None:
    config = load(write(tmp_path, MINIMAL), environ={})
    assert isinstance(config, Config)
    assert config.version == "0.1"
    assert config.storage.driver == "filesystem"
    assert config.storage.parameters == {"rootdirectory": "/var/lib/registry"}
    assert config.storage.delete.enabled is False
    assert config.storage.maintenance.uploadpurging.enabled is True
    assert config.storage.maintenance.readonly.enabled is False
    assert config.http.addr == ":5000"
    assert config.log.level == "info"
    assert config.catalog.maxentries == 1000
    assert config.auth == {}


def test_version_as_string(tmp_path: Path) -> None:
    config = load(write(tmp_path, MINIMAL.replace("version: 0.1", 'version: "0.1"')), environ={})
    assert config.version == "0.1"


def test_inmemory_without_parameters(tmp_path: Path) -> None:
    for storage in ("storage:\n  inmemory:\n", "storage: inmemory\n"):
        config = load(write(tmp_path, f"version: 0.1\n{storage}"), environ={})
        assert config.storage.driver == "inmemory"
        assert config.storage.parameters == {}


def test_embedded_default() -> None:
    config = load(None, environ={})
    assert config.storage.driver == "filesystem"
    assert config.storage.parameters == {"rootdirectory": os.path.abspath("data")}
    assert config.storage.delete.enabled is True
    assert config.http.addr == DEFAULT_ADDR == "127.0.0.1:5000"
    assert embedded_default()["version"] == "0.1"


def test_embedded_default_takes_overrides() -> None:
    config = load(None, environ={"REGISTRY_HTTP_ADDR": "0.0.0.0:5001"})
    assert config.http.addr == "0.0.0.0:5001"


def test_full_example_refuses_what_moorage_does_not_do_one_line_each(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, DISTRIBUTION), environ={})
    keys = [problem.split(":")[0] for problem in caught.value.problems]
    assert keys == ["middleware.registry", "middleware.repository"]


def without_refused(text: str) -> str:
    """The full example less what moorage refuses (registry and repository middleware)."""
    tree = yaml.safe_load(text)
    tree["middleware"] = {"storage": tree["middleware"]["storage"]}
    return yaml.safe_dump(tree)


def test_every_documented_section_parses(tmp_path: Path) -> None:
    config = load(write(tmp_path, without_refused(DISTRIBUTION)), environ={})
    assert config.log.level == "debug"
    assert config.log.accesslog.disabled is True
    assert config.log.fields == {"service": "registry", "environment": "staging"}
    assert config.log.hooks[0].type == "mail"
    assert config.storage.driver == "filesystem"
    assert config.storage.parameters == {"rootdirectory": "/var/lib/registry", "maxthreads": 100}
    assert config.storage.delete.enabled is True
    assert config.storage.cache.blobdescriptor == "redis"
    assert config.storage.cache.blobdescriptorsize == 10000
    assert config.storage.maintenance.uploadpurging.age == "168h"
    assert config.storage.maintenance.uploadpurging.interval == "24h"
    assert config.storage.tag.concurrencylimit == 8
    assert config.storage.redirect.disable is False
    assert set(config.auth) == {"silly", "token", "htpasswd"}
    assert config.auth["htpasswd"] == {"realm": "basic-realm", "path": "/path/to/htpasswd"}
    assert [m.name for m in config.middleware.storage] == ["cloudfront", "redirect"]
    assert config.http.addr == "localhost:5000"
    assert config.http.prefix == "/my/nested/registry/"
    assert config.http.host == "https://myregistryaddress.org:5000"
    assert config.http.draintimeout == "60s"
    assert config.http.tls.certificate == "/path/to/x509/public"
    assert config.http.tls.clientcas == ["/path/to/ca.pem", "/path/to/another/ca.pem"]
    assert config.http.tls.letsencrypt.hosts == ["myregistryaddress.org"]
    assert config.http.debug.addr == "localhost:5001"
    assert config.http.debug.prometheus.enabled is True
    assert config.http.headers == {"X-Content-Type-Options": ["nosniff"]}
    (endpoint,) = config.notifications.endpoints
    assert endpoint.name == "alistener"
    assert endpoint.url == "https://my.listener.com/event"
    assert endpoint.threshold == 10
    assert endpoint.ignore.mediatypes == ["application/octet-stream"]
    assert endpoint.ignore.actions == ["pull"]
    assert config.notifications.events.includereferences is True
    assert config.redis.addrs == ["localhost:6379"]
    assert config.redis.password == "asecret"
    assert config.redis.poolsize == 64
    assert config.redis.connmaxidletime == "300s"
    assert config.redis.tls.certificate == "/path/to/cert.crt"
    assert config.health.storagedriver.enabled is True
    assert config.health.storagedriver.threshold == 3
    assert config.health.http[0].statuscode == 200
    assert config.health.tcp[0].addr == "redis-server.domain.com:6379"
    assert config.health.file[0].file == "/path/to/checked/file"
    assert config.proxy.remoteurl == "https://registry-1.docker.io"
    assert config.proxy.ttl == "168h"
    assert config.proxy.exec == {"command": "docker-credential-helper", "lifetime": "1h"}
    assert config.proxy.remotenamespace == "namespace"
    assert config.validation.manifests.indexes.platforms == "list"
    assert config.validation.manifests.urls.deny == [r"^https?://www\.example\.com/"]
    assert config.catalog.maxentries == 500


def test_redis_v2_section_parses(tmp_path: Path) -> None:
    config = load(write(tmp_path, REDIS_V2), environ={})
    assert config.redis.addr == "localhost:6379"
    assert config.redis.pool.maxactive == 64
    assert config.redis.pool.idletimeout == "300s"


def test_old_cache_name_layerinfo(tmp_path: Path) -> None:
    text = MINIMAL + "  cache:\n    layerinfo: inmemory\n"
    config = load(write(tmp_path, text), environ={})
    assert config.storage.cache.blobdescriptor == "inmemory"


def test_blobdescriptor_wins_over_layerinfo(tmp_path: Path) -> None:
    text = MINIMAL + "  cache:\n    layerinfo: inmemory\n    blobdescriptor: redis\n"
    config = load(write(tmp_path, text), environ={})
    assert config.storage.cache.blobdescriptor == "redis"


def test_old_top_level_loglevel(tmp_path: Path) -> None:
    config = load(write(tmp_path, MINIMAL + "loglevel: debug\n"), environ={})
    assert config.log.level == "debug"


def test_log_level_wins_over_loglevel(tmp_path: Path) -> None:
    text = MINIMAL + "loglevel: debug\nlog:\n  level: error\n"
    assert load(write(tmp_path, text), environ={}).log.level == "error"


def test_log_levels_case_insensitive(tmp_path: Path) -> None:
    # distribution lower-cases both before checking them
    text = MINIMAL + "loglevel: WARN\n"
    assert load(write(tmp_path, text), environ={}).log.level == "warn"
    text = MINIMAL + "log:\n  level: Debug\n"
    assert load(write(tmp_path, text), environ={}).log.level == "debug"


def test_bad_loglevel_refused(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, MINIMAL + "loglevel: verbose\n")
    assert problem.startswith("loglevel: ")


# refused, with the key path


def test_version_required(tmp_path: Path) -> None:
    assert problems(tmp_path, MINIMAL.replace("version: 0.1", "")) == [
        "version: required key is missing"
    ]


def test_unsupported_version(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, MINIMAL.replace("version: 0.1", "version: 0.2"))
    assert problem.startswith("version: ")


def test_storage_required(tmp_path: Path) -> None:
    assert problems(tmp_path, "version: 0.1\n") == ["storage: required key is missing"]


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ("htp:\n  addr: :5000\n", "htp"),
        ("http:\n  adr: :5000\n", "http.adr"),
        ("http:\n  tls:\n    certficate: /x\n", "http.tls.certficate"),
        ("http:\n  debug:\n    prometheus:\n      enable: true\n", "http.debug.prometheus.enable"),
        ("log:\n  levle: debug\n", "log.levle"),
        (
            "notifications:\n  endpoints:\n    - name: a\n      url: http://x\n      retries: 3\n",
            "notifications.endpoints.0.retries",
        ),
    ],
)
def test_unknown_key_named_by_path(tmp_path: Path, extra: str, path: str) -> None:
    assert problems(tmp_path, MINIMAL + extra) == [f"{path}: unknown key"]


@pytest.mark.parametrize(
    ("storage_extra", "path"),
    [
        ("  delete:\n    enable: true\n", "storage.delete.enable"),
        (
            "  maintenance:\n    readonly:\n      enabeld: true\n",
            "storage.maintenance.readonly.enabeld",
        ),
        ("  cache:\n    blobdesc: inmemory\n", "storage.cache.blobdesc"),
    ],
)
def test_unknown_storage_setting_named_by_path(
    tmp_path: Path, storage_extra: str, path: str
) -> None:
    assert problems(tmp_path, MINIMAL + storage_extra) == [f"{path}: unknown key"]


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ("http:\n  addr: [1, 2]\n", "http.addr"),
        ("http:\n  tls: yes\n", "http.tls"),
        ("log:\n  level: verbose\n", "log.level"),
        ("catalog:\n  maxentries: many\n", "catalog.maxentries"),
        ("catalog:\n  maxentries: 0\n", "catalog.maxentries"),
        ("storage:\n  filesystem:\n  delete:\n    enabled: maybe\n", "storage.delete.enabled"),
    ],
)
def test_wrong_type_named_by_path(tmp_path: Path, extra: str, path: str) -> None:
    text = "version: 0.1\n" + extra if extra.startswith("storage") else MINIMAL + extra
    (problem,) = problems(tmp_path, text)
    assert problem.startswith(f"{path}: ")
    assert "unknown key" not in problem


def test_every_problem_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "http:\n  adr: x\nlog:\n  level: loud\n")
    assert len(found) == 2
    assert "http.adr: unknown key" in found
    assert any(problem.startswith("log.level: ") for problem in found)


def test_unknown_driver_refused(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, "version: 0.1\nstorage:\n  floppy:\n    drive: a\n")
    assert problem.startswith("storage")
    assert "unknown storage driver 'floppy'" in problem
    assert "filesystem" in problem and "inmemory" in problem


def test_distribution_only_driver_refused(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, "version: 0.1\nstorage:\n  swift:\n    username: a\n")
    assert "'swift' is not supported by moorage" in problem


def test_two_drivers_refused(tmp_path: Path) -> None:
    (problem,) = problems(
        tmp_path, "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /x\n  inmemory:\n"
    )
    assert problem.startswith("storage: ")
    assert "exactly one storage driver" in problem


def test_no_driver_refused(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, "version: 0.1\nstorage:\n  delete:\n    enabled: true\n")
    assert problem.startswith("storage: ")
    assert "no storage driver" in problem


def test_driver_parameters_must_be_a_mapping(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, "version: 0.1\nstorage:\n  filesystem: /var/lib/registry\n")
    assert problem.startswith("storage: ")
    assert "storage.filesystem must be a mapping" in problem


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("version: 0.1\nstorage: [\n", "not valid YAML"),
        ("- version\n- storage\n", "expected a mapping"),
        ("", "expected a mapping"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str, fragment: str) -> None:
    (problem,) = problems(tmp_path, text)
    assert fragment in problem
    assert "\n" not in problem


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(tmp_path / "absent.yml"), environ={})


# environment overrides


def test_env_rootdirectory(tmp_path: Path) -> None:
    environ = {"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/somewhere"}
    config = load(write(tmp_path, MINIMAL), environ=environ)
    assert config.storage.parameters == {"rootdirectory": "/somewhere"}


def test_env_delete_enabled_is_a_bool(tmp_path: Path) -> None:
    config = load(write(tmp_path, MINIMAL), environ={"REGISTRY_STORAGE_DELETE_ENABLED": "true"})
    assert config.storage.delete.enabled is True
    config = load(write(tmp_path, MINIMAL), environ={"REGISTRY_STORAGE_DELETE_ENABLED": "false"})
    assert config.storage.delete.enabled is False


@pytest.mark.parametrize("addr", [":6000", "0.0.0.0:5000", "localhost:5000", "[::1]:5000"])
def test_env_http_addr(tmp_path: Path, addr: str) -> None:
    config = load(write(tmp_path, MINIMAL), environ={"REGISTRY_HTTP_ADDR": addr})
    assert config.http.addr == addr


def test_env_creates_missing_sections(tmp_path: Path) -> None:
    environ = {
        "REGISTRY_HTTP_TLS_CERTIFICATE": "/certs/domain.crt",
        "REGISTRY_HTTP_TLS_KEY": "/certs/domain.key",
        "REGISTRY_AUTH_HTPASSWD_REALM": "Registry Realm",
        "REGISTRY_AUTH_HTPASSWD_PATH": "/auth/htpasswd",
        "REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED": "true",
        "REGISTRY_CATALOG_MAXENTRIES": "50",
    }
    config = load(write(tmp_path, MINIMAL), environ=environ)
    assert config.http.tls.certificate == "/certs/domain.crt"
    assert config.http.tls.key == "/certs/domain.key"
    assert config.auth["htpasswd"] == {"realm": "Registry Realm", "path": "/auth/htpasswd"}
    assert config.storage.maintenance.readonly.enabled is True
    assert config.catalog.maxentries == 50


def test_env_storage_replaces_driver_keeps_settings(tmp_path: Path) -> None:
    text = MINIMAL + "  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\n"
    config = load(write(tmp_path, text), environ={"REGISTRY_STORAGE": "inmemory"})
    assert config.storage.driver == "inmemory"
    assert config.storage.parameters == {}
    assert config.storage.delete.enabled is True
    assert config.storage.cache.blobdescriptor == "inmemory"


def test_env_storage_then_its_parameters(tmp_path: Path) -> None:
    # Lexical order: REGISTRY_STORAGE comes before REGISTRY_STORAGE_FILESYSTEM_..., so the
    # driver is replaced first and then given its parameters.
    environ = {
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/new",
        "REGISTRY_STORAGE": "filesystem",
    }
    text = "version: 0.1\nstorage:\n  inmemory:\n  delete:\n    enabled: true\n"
    config = load(write(tmp_path, text), environ=environ)
    assert config.storage.driver == "filesystem"
    assert config.storage.parameters == {"rootdirectory": "/new"}
    assert config.storage.delete.enabled is True


def test_env_applied_in_lexical_order(tmp_path: Path) -> None:
    # REGISTRY_HTTP sets the whole section; REGISTRY_HTTP_ADDR, later in lexical order, then
    # changes one key of it, whatever order the mapping lists them in.
    environ = {
        "REGISTRY_HTTP_ADDR": ":7000",
        "REGISTRY_HTTP": "{addr: ':6000', secret: s3cret}",
    }
    config = load(write(tmp_path, MINIMAL), environ=environ)
    assert config.http.addr == ":7000"
    assert config.http.secret == "s3cret"


def test_env_matches_keys_case_insensitively(tmp_path: Path) -> None:
    text = MINIMAL + "log:\n  fields:\n    myField: a\n"
    environ = {"REGISTRY_LOG_FIELDS_MYFIELD": "b"}
    config = load(write(tmp_path, text), environ=environ)
    assert config.log.fields == {"myField": "b"}


def test_env_unknown_top_level_ignored_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {
        "REGISTRY_NOSUCHSECTION_KEY": "x",
        "REGISTRY_HTTP_ADDR": ":6000",
        "REGISTRY_": "x",
        "OTHER_HTTP_ADDR": ":7000",
    }
    with caplog.at_level(logging.WARNING, logger="moorage.config.loader"):
        config = load(write(tmp_path, MINIMAL), environ=environ)
    assert config.http.addr == ":6000"
    about_variables = [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "environment variable" in record.getMessage()
    ]
    assert about_variables == [
        "ignoring unrecognized environment variable REGISTRY_NOSUCHSECTION_KEY"
    ]


def test_numeric_values_of_string_keys(tmp_path: Path) -> None:
    # distribution reads any scalar into a string key: a numeric secret or password is text.
    text = MINIMAL + "http:\n  secret: 12345\nproxy:\n  password: 4242\n"
    config = load(write(tmp_path, text), environ={})
    assert config.http.secret == "12345"
    assert config.proxy.password == "4242"
    environ = {"REGISTRY_HTTP_SECRET": "987654", "REGISTRY_REDIS_PASSWORD": "31337"}
    config = load(write(tmp_path, MINIMAL), environ=environ)
    assert config.http.secret == "987654"
    assert config.redis.password == "31337"


def test_env_value_of_wrong_type_named_by_path(tmp_path: Path) -> None:
    environ = {"REGISTRY_STORAGE_DELETE_ENABLED": "sometimes"}
    (problem,) = problems(tmp_path, MINIMAL, environ)
    assert problem.startswith("storage.delete.enabled: ")


def test_env_unknown_nested_key_named_by_path(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, MINIMAL, {"REGISTRY_HTTP_ADRR": ":6000"})
    assert problem == "http.adrr: unknown key"


def test_process_environment_used_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGISTRY_HTTP_ADDR", ":6543")
    assert load(write(tmp_path, MINIMAL)).http.addr == ":6543"


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"endpoints": [{"name": "a"}]}, "notifications.endpoints.0.url: required key is missing"),
        (
            {"endpoints": [{"name": "a", "url": "ftp://x/"}]},
            "notifications.endpoints.0.url: expected an http:// or https:// URL",
        ),
        (
            {"endpoints": [{"name": "a", "url": "http://x/", "timeout": "soon"}]},
            "notifications.endpoints.0.timeout: invalid duration",
        ),
        (
            {"endpoints": [{"name": "a", "url": "http://x/", "ignore": {"actions": ["pul"]}}]},
            "notifications.endpoints.0.ignore.actions.0: Input should be",
        ),
        (
            {"endpoints": [{"name": "a", "url": "http://x/", "retries": 3}]},
            "notifications.endpoints.0.retries: unknown key",
        ),
        (
            {"endpoints": [{"name": "a", "url": "http://x/"}, {"name": "a", "url": "http://y/"}]},
            "notifications.endpoints: endpoint names must be unique: a appear twice",
        ),
        (
            {"spool": {"maxevents": 0}},
            "notifications.spool.maxevents: Input should be greater than 0",
        ),
        (
            {"events": {"includereference": True}},
            "notifications.events.includereference: unknown key",
        ),
    ],
)
def test_notification_errors_name_the_key(
    tmp_path: Path, section: dict[str, Any], problem: str
) -> None:
    path = tmp_path / "config.yml"
    path.write_text(
        yaml.safe_dump({"version": "0.1", "storage": {"inmemory": {}}, "notifications": section})
    )
    with pytest.raises(ConfigError) as caught:
        load(str(path), environ={})
    assert any(line.startswith(problem) for line in caught.value.problems), caught.value.problems
