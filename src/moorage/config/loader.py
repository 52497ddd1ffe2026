"""Loading the configuration: the YAML file (or the embedded default), then `REGISTRY_*`
environment overrides, then validation into the typed tree.

Overrides work as distribution's do: `REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/x` sets
`storage.filesystem.rootdirectory`; each value is read as YAML (`true`, `5`, `[a, b]`); variables
apply in lexical order. `REGISTRY_STORAGE=inmemory` replaces the driver and keeps the storage
settings (delete, cache, maintenance). Secrets may come from files (moorage.config.secrets).
"""

from __future__ import annotations

import logging
import os
import secrets as random
from collections.abc import MutableMapping
from typing import Any

import yaml
from pydantic import ValidationError

from moorage.config import secrets
from moorage.config.schema import STORAGE_SETTINGS, Config, without_effect

log = logging.getLogger(__name__)

ENV_PREFIX = "REGISTRY_"
DEFAULT_DATA_DIR = "data"
DEFAULT_ADDR = "127.0.0.1:5000"


class ConfigError(Exception):
    """The configuration cannot be used: one line per problem, each naming the key path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def embedded_default() -> dict[str, Any]:
    """The configuration of `moorage serve` with no file: the filesystem driver under ./data,
    on 127.0.0.1:5000, deletes enabled, the in-memory blob descriptor cache."""
    return {
        "version": "0.1",
        "storage": {
            "filesystem": {"rootdirectory": os.path.abspath(DEFAULT_DATA_DIR)},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {"addr": DEFAULT_ADDR},
    }


def read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as file:
            document = yaml.safe_load(file)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}".replace("\n", " ")]) from exc
    if not isinstance(document, dict):
        raise ConfigError([f"{path}: expected a mapping of configuration sections"])
    return document


def apply_environment(
    tree: dict[str, Any], environ: MutableMapping[str, str], strict_secrets: bool = False
) -> dict[str, Any]:
    """Returns the tree with the `REGISTRY_*` overrides applied. `..._FILE` variables of secret
    keys name files to read the secret from; a secret given directly is taken with a warning
    and removed from `environ`."""
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("_")
        if path[0] not in Config.model_fields:
            log.warning("ignoring unrecognized environment variable %s", name)
            continue
        value: Any
        if path[-1] == "file" and len(path) > 1 and secrets.is_secret(tuple(path[:-1])):
            path = path[:-1]
            value = secrets.read_secret_file(environ[name], ".".join(path), strict_secrets, environ)
        elif secrets.is_secret(tuple(path)):
            value = environ[name]
            secrets.take_from_environment(environ, name)
        else:
            try:
                value = yaml.safe_load(environ[name])
            except yaml.YAMLError:
                value = environ[name]
        _set(tree, path, value)
    return tree


def _set(tree: dict[str, Any], path: list[str], value: Any) -> None:
    if path == ["storage"] and isinstance(value, str):
        storage = tree.get("storage") if isinstance(tree.get("storage"), dict) else {}
        settings = {k: v for k, v in storage.items() if k in STORAGE_SETTINGS}  # type: ignore[union-attr]
        tree["storage"] = {value: {}, **settings}
        return
    node = tree
    for key in path[:-1]:
        # YAML keys are matched case-insensitively, as distribution does.
        match = next((k for k in node if isinstance(k, str) and k.lower() == key), key)
        child = node.get(match)
        if not isinstance(child, dict):
            child = node[match] = {}
        node = child
    leaf = next((k for k in node if isinstance(k, str) and k.lower() == path[-1]), path[-1])
    node[leaf] = value


def load(
    path: str | None,
    environ: MutableMapping[str, str] | None = None,
    *,
    strict_secrets: bool = False,
    serving: bool = True,
) -> Config:
    """The validated configuration of a file (or the embedded default when `path` is None)
    with secrets read from their files and the environment's overrides applied. Raises
    ConfigError. With `strict_secrets`, secret files (or a config file holding secrets inline)
    that others can read or write are refused instead of warned about. Without `serving` (a
    command that serves nothing: fsck, user, acl), a missing http.secret and the keys that have
    no effect are not warned about."""
    tree = read_file(path) if path else embedded_default()
    environ = os.environ if environ is None else environ
    try:
        if path and any(secrets.values(tree)):
            secrets.check_private(path, "config file holding secrets inline", strict_secrets)
        secrets.resolve_files(tree, strict_secrets, environ)
        tree = apply_environment(tree, environ, strict_secrets)
    except secrets.SecretProblem as exc:
        raise ConfigError([str(exc)]) from None
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        # Some messages quote the value they refuse, which may be a secret put in the wrong key.
        redactor = secrets.Redactor(list(secrets.values(tree)))
        raise ConfigError([redactor.redact(_describe(e)) for e in exc.errors()]) from None
    if serving:
        for line in without_effect(config):
            log.warning("%s", line)
    if not config.http.secret:
        config.http.secret = random.token_urlsafe(32)
        if serving:
            log.warning(
                "http.secret is not set: using a random one for this process; replicas behind "
                "a load balancer need one shared http.secret"
            )
    _warn_retention(config, serving)
    return config


def _warn_retention(config: Config, serving: bool) -> None:
    maintenance = config.storage.maintenance
    if maintenance.retention.interval is not None:
        log.warning(
            "storage.maintenance.retention.interval is deprecated and ignored: retention "
            "policies are applied right before each garbage collection, every "
            "storage.maintenance.gc.interval"
        )
    if serving and maintenance.retention.policies and not maintenance.gc.enabled:
        log.warning(
            "storage.maintenance.retention: the policies untag only before a scheduled garbage "
            "collection, and storage.maintenance.gc.enabled is false: nothing is untagged"
        )


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required key is missing"
    message = message.removeprefix("Value error, ")
    return f"{location}: {message}"
