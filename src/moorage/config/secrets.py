"""Secrets in the configuration: which keys hold them, reading them from files, and keeping
them out of every output.

Any secret key may be given as a file instead: `secretkeyfile: /run/secrets/s3` beside where
`secretkey` would be, or `REGISTRY_STORAGE_S3_SECRETKEY_FILE=/run/secrets/s3` in the
environment; the file's content, less one trailing newline, is the secret. A secret given
directly in the environment still works, with a warning, and the variable is removed from the
process environment once read so that no child process inherits it (`/proc/<pid>/environ`
keeps the value the process started with: files are the safe way).

A secret file's path may name `${CREDENTIALS_DIRECTORY}` (or `$CREDENTIALS_DIRECTORY`): the
directory systemd gives a unit the files of its `LoadCredential=` lines in, for example
`secretfile: ${CREDENTIALS_DIRECTORY}/http-secret`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import re
import stat
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("moorage.config")

MASK = "********"
FILE_SUFFIX = "file"
# Dotted key paths that hold secrets; `*` stands for any one key or list index.
SECRET_PATHS = (
    "http.secret",
    "storage.s3.accesskey",
    "storage.s3.secretkey",
    "storage.gcs.credentials",  # the JSON document, as given by credentialsfile
    "storage.gcs.credentials.private_key",
    "storage.gcs.credentials.private_key_id",
    "storage.azure.accountkey",
    "storage.azure.connectionstring",
    "storage.azure.credentials.secret",
    "storage.swift.password",
    "storage.swift.secretkey",
    "redis.password",
    "redis.sentinelpassword",
    "proxy.password",
    "proxy.upstreams.*.password",
    "notifications.endpoints.*.headers.*",
    "auth.token.jwks.*",
    "reporting.bugsnag.apikey",
    "reporting.newrelic.licensekey",
    "log.hooks.*.options.smtp.password",
)
# Dotted key paths of URLs whose password (`scheme://user:password@host`) is a secret.
URL_PATHS = (
    "notifications.endpoints.*.url",
    "proxy.remoteurl",
    "proxy.upstreams.*.remoteurl",
)
# Dotted key paths whose value names a file holding secrets that the component configured
# reads itself: checked for exposure like a secret file, `${CREDENTIALS_DIRECTORY}` allowed.
SECRET_FILE_PATHS = ("storage.gcs.keyfile", "middleware.storage.*.options.privatekey")
# Shorter values are not masked in free text: masking every "abc" would make logs unreadable.
MIN_REDACTED_LENGTH = 4
# `Authorization`-style values: the credentials after the scheme are a secret on their own.
_AUTH_VALUE = re.compile(r"(?i)(?:basic|bearer|token|digest|apikey)\s+(\S+)")
CREDENTIALS_DIRECTORY = "CREDENTIALS_DIRECTORY"
_CREDENTIALS_REFERENCE = re.compile(r"\$(?:\{CREDENTIALS_DIRECTORY\}|CREDENTIALS_DIRECTORY\b)")


class SecretProblem(Exception):
    """A secret cannot be used as configured: names the key or file, never the value."""


def is_secret(path: tuple[str | int, ...]) -> bool:
    dotted = ".".join(str(part).lower() for part in path)
    return any(fnmatch.fnmatchcase(dotted, pattern) for pattern in SECRET_PATHS)


def url_password(path: tuple[str | int, ...], value: str) -> str | None:
    """The password in a URL the key holds, when it is one of URL_PATHS and has one."""
    dotted = ".".join(str(part).lower() for part in path)
    if not any(fnmatch.fnmatchcase(dotted, pattern) for pattern in URL_PATHS):
        return None
    try:
        return urlsplit(value).password or None
    except ValueError:
        return None


def _exposure(path: str) -> str | None:
    """Why the file is exposed to other users, or None when only its owner can use it."""
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"mode {stat.S_IMODE(mode):04o}: others can read or write it"
    return None


def check_private(path: str, what: str, strict: bool) -> None:
    """Warns (or, when strict, raises SecretProblem) when others can read or write the file."""
    exposure = _exposure(path)
    if exposure is None:
        return
    message = f"{what} {path} is exposed ({exposure}); fix with: chmod 600 {path}"
    if strict:
        raise SecretProblem(message)
    log.warning(message)


def secret_path(path: str, key: str, environ: Mapping[str, str]) -> str:
    """The path with `${CREDENTIALS_DIRECTORY}` replaced by that variable's value; raises
    SecretProblem when the path names it and it is not set."""
    if not _CREDENTIALS_REFERENCE.search(path):
        return path
    directory = environ.get(CREDENTIALS_DIRECTORY)
    if not directory:
        raise SecretProblem(
            f"{key}: secret file {path} names ${CREDENTIALS_DIRECTORY}, which is not set "
            "(systemd sets it for a unit with LoadCredential=)"
        )
    return _CREDENTIALS_REFERENCE.sub(lambda _: directory, path)


def read_secret_file(path: str, key: str, strict: bool, environ: Mapping[str, str]) -> str:
    path = secret_path(path, key, environ)
    try:
        with open(path, encoding="utf-8") as file:
            content = file.read()
    except OSError as exc:
        raise SecretProblem(f"{key}: cannot read secret file {path}: {exc.strerror}") from exc
    check_private(path, f"secret file for {key}", strict)
    return content.removesuffix("\n")


def resolve_files(
    tree: Any, strict: bool, environ: Mapping[str, str], path: tuple[str | int, ...] = ()
) -> None:
    """Replaces every `<secret>file: PATH` in the tree by `<secret>: content`, in place;
    `environ` gives `CREDENTIALS_DIRECTORY`."""
    if isinstance(tree, dict):
        for key in list(tree):
            where = ".".join(str(p) for p in (*path, key)).lower()
            if (
                any(fnmatch.fnmatchcase(where, pattern) for pattern in SECRET_FILE_PATHS)
                and isinstance(tree[key], str)
                and tree[key]
            ):
                tree[key] = secret_path(tree[key], where, environ)
                with contextlib.suppress(FileNotFoundError):  # its reader says it is missing
                    check_private(tree[key], f"secret file for {where}", strict)
                continue
            # A file reference's value is one path: a list (a header's values) is data.
            if (
                isinstance(key, str)
                and key.lower().endswith(FILE_SUFFIX)
                and isinstance(tree[key], str)
                and is_secret((*path, key[: -len(FILE_SUFFIX)]))
            ):
                base = key[: -len(FILE_SUFFIX)]
                dotted = ".".join(str(p) for p in (*path, base))
                if tree.get(base):
                    raise SecretProblem(f"{dotted}: given both inline and as {key}; keep one")
                tree[base] = read_secret_file(str(tree.pop(key)), dotted, strict, environ)
            else:
                resolve_files(tree[key], strict, environ, (*path, key))
    elif isinstance(tree, list):
        for index, item in enumerate(tree):
            resolve_files(item, strict, environ, (*path, index))


def values(tree: Any, path: tuple[str | int, ...] = ()) -> Iterator[str]:
    """Every secret value in a config tree, as text (YAML reads `secret: 12345` as a number)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from values(value, (*path, key))
    elif isinstance(tree, list):
        for index, item in enumerate(tree):
            yield from values(item, (*path, index))
    elif isinstance(tree, str | int | float) and not isinstance(tree, bool) and is_secret(path):
        text = str(tree)
        if text:
            yield text
    elif isinstance(tree, str) and (password := url_password(path, tree)):
        yield password


def masked(tree: Any, path: tuple[str | int, ...] = ()) -> Any:
    """A copy of a (plain) config tree with every secret value replaced by the mask."""
    if isinstance(tree, dict):
        return {key: masked(value, (*path, key)) for key, value in tree.items()}
    if isinstance(tree, list):
        return [masked(item, (*path, index)) for index, item in enumerate(tree)]
    if isinstance(tree, str) and tree and is_secret(path):
        return MASK
    if isinstance(tree, str) and (password := url_password(path, tree)):
        userinfo, _, rest = tree.partition("@")
        return userinfo.replace(f":{password}", f":{MASK}") + "@" + rest
    return tree


def shown(tree: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """A config tree fit to show anyone: secrets masked by key, and by value wherever else
    they appear."""
    return json.loads(redactor.redact(json.dumps(masked(tree))))  # type: ignore[no-any-return]


def take_from_environment(environ: MutableMapping[str, str], name: str) -> None:
    """Warns about a secret passed directly in the environment and removes the variable."""
    log.warning(
        "secret passed in environment variable %s: prefer %s_FILE with a file only the "
        "registry can read; the variable was removed from the process environment",
        name,
        name,
    )
    environ.pop(name, None)


class Redactor(logging.Filter):
    """Masks secret values in text: installed on every log handler, applied to anything else
    the registry prints about its configuration."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.add(secrets or [])

    def add(self, secrets: list[str]) -> None:
        credentials = [m.group(1) for s in secrets if (m := _AUTH_VALUE.fullmatch(s.strip()))]
        fresh = {s for s in [*secrets, *credentials] if len(s) >= MIN_REDACTED_LENGTH}
        fresh |= set(self.secrets)
        # Longest first, so a secret containing another is masked whole.
        self.secrets = sorted(fresh, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Redacts every text of the record: message, traceback and `extra` fields alike."""
        if self.secrets:
            record.msg = record.getMessage()
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            texts = {k: v for k, v in vars(record).items() if isinstance(v, str)}
            every = "\n".join(texts.values())  # one scan per secret for the usual clean record
            if any(secret in every for secret in self.secrets):
                vars(record).update({k: self.redact(v) for k, v in texts.items()})
        return True
