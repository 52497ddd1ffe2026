"""The configuration tree: distribution's `config.yml` (version 0.1), typed and validated.

Every section of distribution's schema parses here, so an existing config moves over unchanged.
What moorage cannot honour is refused by the validators, saying why; what it accepts without
effect is listed by `without_effect`, for a warning. Old key names are accepted beside the new
(`storage.cache.layerinfo` for `blobdescriptor`, top-level `loglevel` for `log.level`). Keys no
section knows are errors, so a typo fails at start-up, with its path.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from moorage.durations import seconds

# Keys of the `storage` section that are settings, not the driver.
STORAGE_SETTINGS = ("delete", "cache", "maintenance", "redirect", "tag", "quotas")
# Drivers distribution has that moorage does not: named in the error so the user knows why.
FOREIGN_DRIVERS = ("swift", "oss", "s3-aws", "cloudfront")

Duration = int | float | str  # distribution takes "10s", "24h" or nanoseconds
Size = int | str  # bytes, or a number and a unit: "10GiB", "500MB"
# whole bytes, or a number (with a fraction) and a unit larger than a byte
_SIZE_TEXT = re.compile(r"\s*(?:[0-9]+\s*B?|[0-9]+(?:\.[0-9]+)?\s*[KMGTPE]i?B)\s*", re.IGNORECASE)


def byte_size(value: Size) -> int:
    """A size in bytes: a whole number, or a number and a unit, decimal (`kB`, `MB`, `GB`,
    `TB`: powers of 1000) or binary (`KiB`, `MiB`, `GiB`, `TiB`: powers of 1024), case
    insensitive. Raises ValueError."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _SIZE_TEXT.fullmatch(value):
        return int(TypeAdapter(ByteSize).validate_python(value.strip()))
    raise ValueError(
        f"invalid size {value!r}: expected a number of bytes or a number and a unit "
        "(500MB, 10GiB, 1.5TiB)"
    )


# Case-insensitive, as distribution reads it.
LogLevel = Annotated[
    Literal["error", "warn", "warning", "info", "debug"],
    BeforeValidator(lambda value: value.lower() if isinstance(value, str) else value),
]


class Section(BaseModel):
    # A number given for a string key is its text, as distribution reads it (`secret: 12345`).
    model_config = ConfigDict(extra="forbid", populate_by_name=True, coerce_numbers_to_str=True)


class AccessLog(Section):
    disabled: bool = False


class SMTP(Section):
    addr: str = ""
    username: str = ""
    password: str = ""
    insecure: bool = False


class MailOptions(Section):
    model_config = ConfigDict(serialize_by_alias=True)

    smtp: SMTP = Field(default_factory=SMTP)
    sender: str = Field(default="", alias="from")
    to: list[str] = Field(default_factory=list)


class LogHook(Section):
    """distribution's log hook: a mail for log entries of `levels`. moorage sends no mail, so
    only a disabled hook is accepted."""

    type: str = ""
    disabled: bool = False
    levels: list[str] = Field(default_factory=list)
    options: MailOptions = Field(default_factory=MailOptions)

    @model_validator(mode="after")
    def _refused_unless_disabled(self) -> LogHook:
        if not self.disabled:
            raise ValueError(
                f"moorage sends no mail from its log (a {self.type or 'mail'} hook); alert on "
                "its log lines instead (log.formatter: json), or set disabled: true"
            )
        return self


class Log(Section):
    level: LogLevel = "info"
    formatter: Literal["text", "json", "logstash"] = "text"
    fields: dict[str, Any] = Field(default_factory=dict)
    hooks: list[LogHook] = Field(default_factory=list)
    accesslog: AccessLog = Field(default_factory=AccessLog)
    reportcaller: bool = False


class Delete(Section):
    enabled: bool = False


class Cache(Section):
    blobdescriptor: Literal["inmemory", "redis", ""] = ""
    blobdescriptorsize: int | None = None
    layerinfo: Literal["inmemory", "redis", ""] | None = None  # old name of blobdescriptor

    @model_validator(mode="after")
    def _old_name(self) -> Cache:
        if self.layerinfo and not self.blobdescriptor:
            self.blobdescriptor = self.layerinfo
        return self


class UploadPurging(Section):
    enabled: bool = True
    age: Duration = "168h"
    interval: Duration = "24h"
    dryrun: bool = False


class ReadOnly(Section):
    enabled: bool = False


def _duration(value: Duration) -> Duration:
    seconds(value)  # ValueError says what a duration looks like
    return value


def _size(value: Any) -> Any:
    byte_size(value)  # ValueError says what a size looks like; before any coercion
    return value


def _pattern(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return value


CheckedDuration = Annotated[Duration, AfterValidator(_duration)]
CheckedSize = Annotated[Size, BeforeValidator(_size)]


class KeepTags(Section):
    """One rule of a retention policy (moorage/lifecycle/retention.py has the meaning)."""

    patterns: list[Annotated[str, AfterValidator(_pattern)]] = Field(default_factory=list)
    mostrecentlypushedcount: int = Field(default=0, ge=0)
    mostrecentlypulledcount: int = Field(default=0, ge=0)
    pushedwithin: CheckedDuration | None = None
    pulledwithin: CheckedDuration | None = None


class RetentionPolicy(Section):
    repositories: list[str] = Field(min_length=1)  # globs, as the ACL's
    deleteuntagged: bool | None = None  # None: as the collector's own setting says
    deletereferrers: bool = False
    keeptags: list[KeepTags] = Field(default_factory=list)


class Retention(Section):
    dryrun: bool = False
    # deprecated and ignored (the loader warns): the policies are applied right before each
    # garbage collection, every storage.maintenance.gc.interval
    interval: CheckedDuration | None = None
    # moorage's: pull times are written at most once per tag and manifest per this interval
    pullinterval: CheckedDuration = "1h"
    policies: list[RetentionPolicy] = Field(default_factory=list)


class UsageSettings(Section):
    """moorage's: the periodic computation of what each repository holds."""

    enabled: bool = True
    interval: CheckedDuration = "10m"


class GarbageCollection(Section):
    """moorage's: the garbage collection the server runs by itself (lifecycle/gc.py). `delay`
    applies to `moorage garbage-collect` too, and to what the server records of uses, enabled
    or not."""

    enabled: bool = False
    interval: CheckedDuration = "24h"
    delay: CheckedDuration = "1h"  # content used within this is kept
    deleteuntagged: bool = False
    dryrun: bool = False

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: Duration) -> Duration:
        if seconds(value) <= 0:
            raise ValueError("expected a duration above zero")
        return value


class Maintenance(Section):
    uploadpurging: UploadPurging = Field(default_factory=UploadPurging)
    readonly: ReadOnly = Field(default_factory=ReadOnly)
    gc: GarbageCollection = Field(default_factory=GarbageCollection)
    retention: Retention = Field(default_factory=Retention)
    usage: UsageSettings = Field(default_factory=UsageSettings)


class Quotas(Section):
    """moorage's: the most each repository may hold (its total: moorage/lifecycle/quotas.py)."""

    default: CheckedSize | None = None
    repositories: dict[str, CheckedSize] = Field(default_factory=dict)  # glob -> limit


class Redirect(Section):
    disable: bool = False


class TagSettings(Section):
    concurrencylimit: int = 0


class Storage(Section):
    """One driver, named by its key, plus settings. `driver` and `parameters` are filled from
    whichever key of the section is not a setting."""

    driver: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    delete: Delete = Field(default_factory=Delete)
    cache: Cache = Field(default_factory=Cache)
    maintenance: Maintenance = Field(default_factory=Maintenance)
    redirect: Redirect = Field(default_factory=Redirect)
    tag: TagSettings = Field(default_factory=TagSettings)
    quotas: Quotas = Field(default_factory=Quotas)

    @model_validator(mode="before")
    @classmethod
    def _split_driver(cls, value: Any) -> Any:
        if isinstance(value, str):  # `storage: inmemory`
            value = {value: {}}
        if not isinstance(value, dict) or "driver" in value:
            return value
        drivers = [key for key in value if key not in STORAGE_SETTINGS]
        if not drivers:
            raise ValueError("no storage driver configured (e.g. filesystem, inmemory)")
        if len(drivers) > 1:
            raise ValueError(f"exactly one storage driver may be configured, found {drivers}")
        driver = drivers[0]
        settings = {key: value[key] for key in value if key in STORAGE_SETTINGS}
        parameters = value[driver] or {}
        if not isinstance(parameters, dict):
            raise ValueError(f"storage.{driver} must be a mapping of driver parameters")
        return {"driver": driver, "parameters": parameters, **settings}

    @model_validator(mode="after")
    def _quotas_need_usage(self) -> Storage:
        quotas = self.quotas
        if (quotas.default is not None or quotas.repositories) and not (
            self.maintenance.usage.enabled
        ):
            raise ValueError(
                "quotas are enforced from the computed usage: "
                "storage.maintenance.usage.enabled must stay true"
            )
        return self

    @field_validator("driver")
    @classmethod
    def _known_driver(cls, driver: str) -> str:
        from moorage.storage.driver import registered

        if driver in FOREIGN_DRIVERS:
            raise ValueError(f"storage driver {driver!r} is not supported by moorage")
        if driver not in registered():
            raise ValueError(
                f"unknown storage driver {driver!r}; expected one of {', '.join(registered())}"
            )
        return driver


# Go's names of the cipher suites distribution takes, to OpenSSL's; TLS 1.3's are always on
# (neither Go nor OpenSSL through Python lets them be chosen), so they map to nothing.
CIPHER_SUITES = {
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256": "",
    "TLS_AES_256_GCM_SHA384": "",
    "TLS_CHACHA20_POLY1305_SHA256": "",
}


class LetsEncrypt(Section):
    cachefile: str = ""
    email: str = ""
    hosts: list[str] = Field(default_factory=list)
    directoryurl: str = ""


class TLS(Section):
    certificate: str = ""
    key: str = ""
    clientcas: list[str] = Field(default_factory=list)
    # How client certificates are asked for (with clientcas): Python's TLS verifies every
    # certificate it asks for, so the two modes that accept unverified ones are refused.
    clientauth: Literal[
        "", "require-and-verify-client-cert", "verify-client-cert-if-given"
    ] = ""
    minimumtls: str = ""
    ciphersuites: list[str] = Field(default_factory=list)
    letsencrypt: LetsEncrypt = Field(default_factory=LetsEncrypt)

    @field_validator("clientauth", mode="before")
    @classmethod
    def _unverified_modes(cls, mode: Any) -> Any:
        if mode in ("request-client-cert", "require-any-client-cert"):
            raise ValueError(
                f"{mode} takes client certificates without verifying them, which moorage does "
                "not do; use verify-client-cert-if-given or require-and-verify-client-cert"
            )
        return mode

    @field_validator("ciphersuites")
    @classmethod
    def _known_suites(cls, suites: list[str]) -> list[str]:
        unknown = [suite for suite in suites if suite not in CIPHER_SUITES]
        if unknown:
            raise ValueError(f"unknown cipher suite {', '.join(unknown)}")
        return suites

    @field_validator("letsencrypt")
    @classmethod
    def _no_acme(cls, letsencrypt: LetsEncrypt, info: ValidationInfo) -> LetsEncrypt:
        # distribution asks Let's Encrypt only when no certificate is given.
        if letsencrypt != LetsEncrypt() and not info.data.get("certificate"):
            raise ValueError(
                "moorage does not obtain certificates (ACME); give http.tls.certificate and "
                "key, kept renewed by certbot or by a proxy in front"
            )
        return letsencrypt


class Prometheus(Section):
    enabled: bool = True  # moorage serves /metrics on the debug server unless switched off
    path: str = "/metrics"


class Debug(Section):
    addr: str = ""
    prometheus: Prometheus = Field(default_factory=Prometheus)


class HTTP2(Section):
    disabled: bool = False


class H2C(Section):
    enabled: bool = False

    @field_validator("enabled")
    @classmethod
    def _http1_only(cls, enabled: bool) -> bool:
        if enabled:
            raise ValueError(
                "moorage serves HTTP/1.1 only: a proxy that speaks HTTP/2 cleartext (h2c) to "
                "the registry cannot reach it; let the proxy speak HTTP/1.1"
            )
        return enabled


class HTTP(Section):
    addr: str = ":5000"
    # moorage's: proxies whose X-Forwarded-For / Forwarded name the client in the access log
    trustedproxies: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    net: Literal["tcp", "unix", ""] = "tcp"
    prefix: str = ""
    host: str = ""
    secret: str = ""
    relativeurls: bool = False
    draintimeout: Duration = 0
    tls: TLS = Field(default_factory=TLS)
    headers: dict[str, list[str]] = Field(default_factory=dict)
    debug: Debug = Field(default_factory=Debug)
    http2: HTTP2 = Field(default_factory=HTTP2)
    h2c: H2C = Field(default_factory=H2C)
    # moorage's: processes serving the API on the one address; "auto" is one per CPU, where
    # the storage is shared (inmemory serves from one: moorage/workers.py count)
    workers: int | Literal["auto"] = "auto"

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> int | str:
        if value == "auto":
            return "auto"
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError('expected a number of processes (1 or more) or "auto"')
        return value

    @field_validator("trustedproxies")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad entry
        return networks

    @field_validator("draintimeout")
    @classmethod
    def _duration(cls, value: Duration) -> Duration:
        return _duration(value)


class RedisPool(Section):
    maxidle: int = 0
    maxactive: int = 0
    idletimeout: Duration = 0
    size: int = 0
    maxlifetime: Duration = 0


class RedisTLS(Section):
    enabled: bool = False
    certificate: str = ""
    key: str = ""
    clientcas: list[str] = Field(default_factory=list)


class Redis(Section):
    """distribution's v2 shape (`addr`) and v3 shape (`addrs`, `username`, ...)."""

    addr: str = ""
    addrs: list[str] = Field(default_factory=list)
    username: str = ""
    password: str = ""
    db: int = 0
    dialtimeout: Duration = 0
    readtimeout: Duration = 0
    writetimeout: Duration = 0
    pool: RedisPool = Field(default_factory=RedisPool)
    tls: RedisTLS = Field(default_factory=RedisTLS)
    mastername: str = ""
    clientname: str = ""
    protocol: int = 0
    poolsize: int = 0
    maxretries: int = 0
    minidleconns: int = 0
    maxidleconns: int = 0
    # the rest of go-redis's UniversalOptions, which distribution 3 reads this section into
    sentinelusername: str = ""
    sentinelpassword: str = ""
    minretrybackoff: Duration = 0
    maxretrybackoff: Duration = 0
    contexttimeoutenabled: bool = False
    poolfifo: bool = False
    pooltimeout: Duration = 0
    maxactiveconns: int = 0
    connmaxidletime: Duration = 0
    connmaxlifetime: Duration = 0
    maxredirects: int = 0
    readonly: bool = False
    routebylatency: bool = False
    routerandomly: bool = False

    @field_validator("addrs")
    @classmethod
    def _one_server(cls, addrs: list[str]) -> list[str]:
        if len(addrs) > 1:
            raise ValueError(
                "several addresses make distribution a Redis Cluster client; moorage talks to "
                "one Redis server: give its one address"
            )
        return addrs

    @field_validator("mastername")
    @classmethod
    def _no_sentinel(cls, name: str) -> str:
        if name:
            raise ValueError(
                "Redis Sentinel is not supported: give the address of the Redis server (or of "
                "a proxy that follows the master)"
            )
        return name


EVENT_ACTIONS = ("pull", "push", "mount", "delete")


class Ignore(Section):
    mediatypes: list[str] = Field(default_factory=list)
    actions: list[Literal["pull", "push", "mount", "delete"]] = Field(default_factory=list)


class Endpoint(Section):
    name: str = Field(min_length=1)
    url: str
    disabled: bool = False
    headers: dict[str, list[str]] = Field(default_factory=dict)
    timeout: Duration = "1s"
    threshold: int = 10
    backoff: Duration = "1s"
    ignoredmediatypes: list[str] = Field(default_factory=list)
    ignore: Ignore = Field(default_factory=Ignore)

    @field_validator("headers", mode="before")
    @classmethod
    def _one_value(cls, headers: Any) -> Any:
        """A header given as one string (as `<header>file:` gives it) is that one value."""
        if isinstance(headers, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in headers.items()}
        return headers

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL")
        return url

    @field_validator("timeout", "backoff")
    @classmethod
    def _duration(cls, value: Duration) -> Duration:
        seconds(value)
        return value


class Events(Section):
    includereferences: bool = False


class Spool(Section):
    """moorage's: where events wait for their endpoints (moorage.notifications)."""

    driver: Literal["filesystem", "redis"] = "filesystem"
    directory: str = ""  # filesystem; default: beside the data (see notifications.spool_directory)
    maxevents: int = Field(default=1_000_000, gt=0)  # per endpoint; the oldest go beyond it


class Notifications(Section):
    events: Events = Field(default_factory=Events)
    endpoints: list[Endpoint] = Field(default_factory=list)
    spool: Spool = Field(default_factory=Spool)

    @field_validator("endpoints")
    @classmethod
    def _unique_names(cls, endpoints: list[Endpoint]) -> list[Endpoint]:
        names = [endpoint.name for endpoint in endpoints]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"endpoint names must be unique: {', '.join(twice)} appear twice")
        return endpoints


class StorageDriverHealth(Section):
    enabled: bool = False
    interval: CheckedDuration = "10s"
    threshold: int = Field(default=0, ge=0)


class FileCheck(Section):
    """Unhealthy while `file` exists (an operator's switch to take a replica out)."""

    file: str = Field(min_length=1)
    interval: CheckedDuration = "10s"
    threshold: int = Field(default=0, ge=0)


class HTTPCheck(Section):
    """Unhealthy when a HEAD of `uri` does not answer `statuscode`."""

    uri: str
    headers: dict[str, list[str]] = Field(default_factory=dict)
    statuscode: int = Field(default=200, ge=100, le=599)
    timeout: CheckedDuration = "1s"
    interval: CheckedDuration = "10s"
    threshold: int = Field(default=0, ge=0)

    @field_validator("uri")
    @classmethod
    def _http_url(cls, uri: str) -> str:
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL")
        return uri


class TCPCheck(Section):
    """Unhealthy when no TCP connection to `addr` opens within `timeout`."""

    addr: str = Field(min_length=1)
    timeout: CheckedDuration = "1s"
    interval: CheckedDuration = "10s"
    threshold: int = Field(default=0, ge=0)

    @field_validator("addr")
    @classmethod
    def _host_port(cls, addr: str) -> str:
        host, sep, port = addr.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected host:port, got {addr!r}")
        return addr


class Health(Section):
    storagedriver: StorageDriverHealth = Field(default_factory=StorageDriverHealth)
    file: list[FileCheck] = Field(default_factory=list)
    http: list[HTTPCheck] = Field(default_factory=list)
    tcp: list[TCPCheck] = Field(default_factory=list)

    @property
    def any(self) -> bool:
        return self.storagedriver.enabled or bool(self.file or self.http or self.tcp)


def _remote_url(url: str) -> str:
    """An upstream registry's base URL: http(s), a host, no query or fragment."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(
            f"expected an http or https URL of a registry (https://registry-1.docker.io), "
            f"got {url!r}"
        )
    return url


def _ttl(value: Duration | None) -> Duration | None:
    if value is not None and seconds(value) < 0:
        raise ValueError("expected a duration of 0 (keep forever) or more")
    return value


class Upstream(Section):
    """moorage's: the registry the names under `prefix` are a pull-through cache of."""

    prefix: str
    remoteurl: str
    username: str = ""
    password: str = ""
    ttl: Duration | None = None  # None: distribution's default, 168h; 0: kept forever

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        """One or more name components (`hub`, `mirrors/ghcr`); a trailing `/` is dropped."""
        from moorage.registry.errors import NameInvalid
        from moorage.registry.names import check_name

        try:
            return check_name(prefix.strip().rstrip("/"))
        except NameInvalid as exc:
            raise ValueError(exc.message.replace("repository name", "prefix")) from None

    @field_validator("remoteurl")
    @classmethod
    def _url(cls, url: str) -> str:
        return _remote_url(url)

    @field_validator("ttl")
    @classmethod
    def _duration(cls, value: Duration | None) -> Duration | None:
        return _ttl(value)


class Proxy(Section):
    """distribution's pull-through cache (`remoteurl`: every name), and moorage's `upstreams`
    (one per name prefix). `remoteurl` with `upstreams` is the upstream of the names no
    prefix covers."""

    remoteurl: str = ""
    username: str = ""
    password: str = ""
    ttl: Duration | None = None  # None: 168h, as distribution; 0: kept forever
    exec: dict[str, Any] = Field(default_factory=dict)
    remotenamespace: str = ""
    upstreams: list[Upstream] = Field(default_factory=list)

    @field_validator("remoteurl")
    @classmethod
    def _url(cls, url: str) -> str:
        return _remote_url(url) if url else url

    @field_validator("ttl")
    @classmethod
    def _duration(cls, value: Duration | None) -> Duration | None:
        return _ttl(value)

    @field_validator("upstreams")
    @classmethod
    def _distinct(cls, upstreams: list[Upstream]) -> list[Upstream]:
        """No prefix may hold another: each name has one upstream at most."""
        for index, upstream in enumerate(upstreams):
            for other in upstreams[:index]:
                a, b = upstream.prefix + "/", other.prefix + "/"
                if a.startswith(b) or b.startswith(a):
                    raise ValueError(
                        f"prefixes {other.prefix!r} and {upstream.prefix!r} overlap: each name "
                        "may have one upstream"
                    )
        return upstreams


class Catalog(Section):
    maxentries: int = Field(default=1000, gt=0)


class MiddlewareEntry(Section):
    name: str = Field(min_length=1)
    disabled: bool = False
    options: dict[str, Any] = Field(default_factory=dict)


def _redirect_options(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - {"baseurl"})
    if unknown:
        raise ValueError(f"options.{unknown[0]}: unknown key")
    base = options.get("baseurl")
    if not isinstance(base, str) or not base:
        raise ValueError("options.baseurl: required, the URL blobs are redirected under")
    parts = urlsplit(base)
    if not parts.scheme or not parts.netloc:
        raise ValueError("options.baseurl: expected a URL with a scheme and a host")


CLOUDFRONT_OPTIONS = (
    "baseurl",
    "privatekey",
    "keypairid",
    "duration",
    "ipfilteredby",
    "awsregion",
    "updatefrequency",
    "updatefrenquency",  # distribution's old misspelling, still read
    "iprangesurl",
)


def _cloudfront_options(options: dict[str, Any]) -> None:
    for key, value in options.items():
        if key not in CLOUDFRONT_OPTIONS:
            raise ValueError(f"options.{key}: unknown key")
        if not isinstance(value, str):
            raise ValueError(f"options.{key}: expected a string")
    for key, what in (
        ("baseurl", "the CloudFront distribution's URL"),
        ("privatekey", "the PEM file of the key pair's private key"),
        ("keypairid", "the CloudFront key pair's id"),
    ):
        if not options.get(key):
            raise ValueError(f"options.{key}: required, {what}")
    for key in ("duration", "updatefrequency", "updatefrenquency"):
        if key in options:
            try:
                if seconds(options[key]) <= 0:
                    raise ValueError("expected a duration above zero")
            except ValueError as exc:
                raise ValueError(f"options.{key}: {exc}") from None
    filtered = options.get("ipfilteredby", "").strip().lower()
    if filtered not in ("", "none", "aws", "awsregion"):
        raise ValueError("options.ipfilteredby: expected none, aws or awsregion")
    if filtered == "awsregion" and not options.get("awsregion", "").strip(", "):
        raise ValueError(
            "options.awsregion: required with ipfilteredby: awsregion, the regions (comma "
            "separated) whose clients go to S3 directly"
        )
    url = options.get("iprangesurl")
    if url is not None and urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("options.iprangesurl: expected an http:// or https:// URL")


def _rewrite_options(options: dict[str, Any]) -> None:
    for key, value in options.items():
        if key not in ("scheme", "host", "trimpathprefix"):
            raise ValueError(f"options.{key}: unknown key")
        if not isinstance(value, str):
            raise ValueError(f"options.{key}: expected a string")


# Each storage middleware moorage has, and the check of its options.
STORAGE_MIDDLEWARE: dict[str, Callable[[dict[str, Any]], None]] = {
    "redirect": _redirect_options,
    "cloudfront": _cloudfront_options,
    "rewrite": _rewrite_options,
}


class Middleware(Section):
    """distribution's named middleware. moorage has the storage middleware that changes
    where blob GETs redirect to (moorage/storage/middleware.py); the others are refused."""

    registry: list[MiddlewareEntry] = Field(default_factory=list)
    repository: list[MiddlewareEntry] = Field(default_factory=list)
    storage: list[MiddlewareEntry] = Field(default_factory=list)

    @field_validator("registry", "repository")
    @classmethod
    def _none_here(cls, entries: list[MiddlewareEntry]) -> list[MiddlewareEntry]:
        for index, entry in enumerate(entries):
            if not entry.disabled:
                raise ValueError(
                    f"[{index}] {entry.name}: moorage has no registry or repository "
                    "middleware (Go plug-ins built into distribution); remove the entry or "
                    "set disabled: true"
                )
        return entries

    @field_validator("storage")
    @classmethod
    def _storage(cls, entries: list[MiddlewareEntry]) -> list[MiddlewareEntry]:
        for index, entry in enumerate(entries):
            if entry.disabled:
                continue
            where = f"[{index}] {entry.name}"
            check = STORAGE_MIDDLEWARE.get(entry.name)
            if check is None:
                raise ValueError(
                    f"{where}: unknown storage middleware; expected one of "
                    f"{', '.join(STORAGE_MIDDLEWARE)}"
                )
            try:
                check(entry.options)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        return entries

    @property
    def active_storage(self) -> list[MiddlewareEntry]:
        return [entry for entry in self.storage if not entry.disabled]


class Bugsnag(Section):
    apikey: str = ""
    releasestage: str = ""
    endpoint: str = ""


class NewRelic(Section):
    licensekey: str = ""
    name: str = ""
    verbose: bool = False


class Reporting(Section):
    """Accepted so that a config moves over; moorage reports nowhere (see `without_effect`)."""

    bugsnag: Bugsnag = Field(default_factory=Bugsnag)
    newrelic: NewRelic = Field(default_factory=NewRelic)


class ManifestURLs(Section):
    allow: list[Annotated[str, AfterValidator(_pattern)]] = Field(default_factory=list)
    deny: list[Annotated[str, AfterValidator(_pattern)]] = Field(default_factory=list)


class Platform(Section):
    architecture: str
    os: str


class IndexValidation(Section):
    platforms: Annotated[
        Literal["all", "list", "none", ""],
        BeforeValidator(lambda value: value.lower() if isinstance(value, str) else value),
    ] = ""
    platformlist: list[Platform] = Field(default_factory=list)


class ManifestValidation(Section):
    urls: ManifestURLs = Field(default_factory=ManifestURLs)
    indexes: IndexValidation = Field(default_factory=IndexValidation)


class Validation(Section):
    enabled: bool = False  # distribution 2's switch; `disabled` is distribution 3's
    disabled: bool = False
    manifests: ManifestValidation = Field(default_factory=ManifestValidation)


class Schema1(Section):
    enabled: bool = False
    signingkeyfile: str = ""

    @model_validator(mode="after")
    def _no_schema1(self) -> Schema1:
        if self.enabled or self.signingkeyfile:
            raise ValueError(
                "Docker image manifest schema 1 is not supported: moorage refuses schema 1 "
                "manifests (push schema 2 or OCI); remove compatibility.schema1"
            )
        return self


class Compatibility(Section):
    schema1: Schema1 = Field(default_factory=Schema1)


class RepositoryPolicy(Section):
    classes: list[str] = Field(default_factory=list)

    @field_validator("classes")
    @classmethod
    def _no_classes(cls, classes: list[str]) -> list[str]:
        if classes:
            raise ValueError(
                "repository classes are not enforced by moorage (distribution 2's token "
                "auth feature); remove policy.repository.classes"
            )
        return classes


class Policy(Section):
    repository: RepositoryPolicy = Field(default_factory=RepositoryPolicy)
_ORIGIN = re.compile(r"https?://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
# A URL path of plain segments, as `ui.path` takes it.
_UI_PATH = re.compile(r"/(?:[A-Za-z0-9._~-]+/)*[A-Za-z0-9._~-]+/?")


class UICors(Section):
    """moorage's: the origins of web pages (an external registry UI) whose scripts may call the
    API from a browser: preflights from them are answered without credentials."""

    origins: list[str] = Field(default_factory=list)  # scheme://host[:port], or "*"

    @field_validator("origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: expected scheme://host[:port] (no path), or *"
                )
        return origins


class UI(Section):
    """moorage's: the built-in web UI (moorage/ui), on the API listener."""

    enabled: bool = True
    path: str = "/ui/"  # under http.prefix
    sessionlifetime: CheckedDuration = "12h"  # how long a sign-in lasts
    cors: UICors = Field(default_factory=UICors)

    @field_validator("path")
    @classmethod
    def _path(cls, path: str) -> str:
        if not _UI_PATH.fullmatch(path):
            raise ValueError(f"{path!r} is not a URL path below / (e.g. /ui/)")
        first = path.strip("/").split("/")[0]
        if first in ("v2", "auth"):
            raise ValueError(f"{path!r} is the API's: choose a path outside /v2/ and /auth/")
        return "/" + path.strip("/") + "/"


class Config(Section):
    version: Literal["0.1"]
    log: Log = Field(default_factory=Log)
    loglevel: LogLevel | None = None  # old name of log.level
    storage: Storage
    auth: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    middleware: Middleware = Field(default_factory=Middleware)
    reporting: Reporting = Field(default_factory=Reporting)
    http: HTTP = Field(default_factory=HTTP)
    notifications: Notifications = Field(default_factory=Notifications)
    redis: Redis = Field(default_factory=Redis)
    health: Health = Field(default_factory=Health)
    proxy: Proxy = Field(default_factory=Proxy)
    validation: Validation = Field(default_factory=Validation)
    compatibility: Compatibility = Field(default_factory=Compatibility)
    policy: Policy = Field(default_factory=Policy)
    catalog: Catalog = Field(default_factory=Catalog)
    ui: UI = Field(default_factory=UI)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, float) else value  # YAML reads `0.1` as a float

    def as_tree(self) -> dict[str, Any]:
        """The configuration in distribution's shape: the driver a key of `storage`."""
        tree = self.model_dump(mode="json", exclude={"storage": {"driver", "parameters"}})
        tree["storage"] = {self.storage.driver: self.storage.parameters, **tree["storage"]}
        return tree

    @model_validator(mode="after")
    def _old_loglevel(self) -> Config:
        if self.loglevel and "level" not in self.log.model_fields_set:
            self.log.level = self.loglevel
        return self



# go-redis tuning distribution 3 passes through that moorage's client has no equivalent of
# (its pool opens connections as needed, keeps them, and retries nothing).
REDIS_WITHOUT_EFFECT = (
    "writetimeout",
    "protocol",
    "maxretries",
    "minidleconns",
    "maxidleconns",
    "minretrybackoff",
    "maxretrybackoff",
    "contexttimeoutenabled",
    "poolfifo",
    "pooltimeout",
    "maxactiveconns",
    "connmaxidletime",
    "connmaxlifetime",
    "maxredirects",
    "readonly",
    "routebylatency",
    "routerandomly",
    "sentinelusername",
    "sentinelpassword",
)
REDIS_POOL_WITHOUT_EFFECT = ("maxidle", "idletimeout", "size", "maxlifetime")


def without_effect(config: Config) -> list[str]:
    """The keys given that moorage accepts, so that a distribution config moves over, but
    does nothing with: one line each, with why, for a start-up warning."""
    lines = []
    if config.log.reportcaller:
        lines.append("log.reportcaller: no effect; moorage's lines name their logger instead")
    storage = config.storage
    if storage.tag.concurrencylimit:
        lines.append(
            "storage.tag.concurrencylimit: no effect in moorage (distribution's bound on the "
            "tag lookups in parallel when a manifest is deleted)"
        )
    if storage.driver == "filesystem" and "maxthreads" in storage.parameters:
        lines.append(
            "storage.filesystem.maxthreads: no effect; moorage's file calls run in a pool of "
            "its own"
        )
    if storage.driver == "s3":
        if "loglevel" in storage.parameters:
            lines.append("storage.s3.loglevel: no effect; moorage logs S3 errors at log.level")
        if str(storage.parameters.get("v4auth", True)).lower() == "false":
            lines.append("storage.s3.v4auth: false has no effect; moorage always signs with v4")
    reporting = config.reporting
    for name, section in (("bugsnag", reporting.bugsnag), ("newrelic", reporting.newrelic)):
        if section.model_fields_set:
            lines.append(
                f"reporting.{name}: moorage reports no errors to {name}; its errors are in "
                "its log (log.formatter: json) and its metrics (http.debug)"
            )
    redis = config.redis
    for key in REDIS_WITHOUT_EFFECT:
        if key in redis.model_fields_set:
            lines.append(f"redis.{key}: no effect in moorage's Redis client")
    for key in REDIS_POOL_WITHOUT_EFFECT:
        if key in redis.pool.model_fields_set:
            lines.append(f"redis.pool.{key}: no effect in moorage's Redis client")
    validation = config.validation
    if validation.disabled:
        lines.append(
            "validation.disabled: moorage still checks that the blobs a manifest names are in "
            "the repository (and an index's manifests, as validation.manifests.indexes says)"
        )
    tls = config.http.tls
    if tls.certificate and tls.letsencrypt != LetsEncrypt():
        lines.append(
            "http.tls.letsencrypt: not used when http.tls.certificate is given (as in "
            "distribution)"
        )
    return lines
