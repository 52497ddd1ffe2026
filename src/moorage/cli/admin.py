"""`moorage user add|passwd|remove|list` and `moorage acl check`: managing the built-in token
server's users file and explaining its ACL. Passwords are prompted for, or read from standard
input with --password-stdin; never taken from the command line."""

from __future__ import annotations

import argparse
import getpass
import sys

from moorage.auth import acl as acls
from moorage.auth import htpasswd
from moorage.config.loader import ConfigError, load


class AdminError(Exception):
    """One readable line for the user."""


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = commands.add_parser("user", help="manage the built-in token server's users")
    actions = user.add_subparsers(dest="user_command", required=True)
    for name, text in (("add", "add a user"), ("passwd", "change a password")):
        parser = actions.add_parser(name, help=text)
        _users_file(parser)
        parser.add_argument("name")
        parser.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
    remove = actions.add_parser("remove", help="remove a user")
    _users_file(remove)
    remove.add_argument("name")
    listing = actions.add_parser("list", help="list the users")
    _users_file(listing)

    acl = commands.add_parser("acl", help="explain the built-in token server's ACL")
    acl_actions = acl.add_subparsers(dest="acl_command", required=True)
    check = acl_actions.add_parser("check", help="which rule decides USER's ACTION on REPO")
    check.add_argument("--acl", help="the ACL file (default: auth.builtin.acl of --config)")
    check.add_argument("-c", "--config", help="moorage config file")
    check.add_argument("user", help='a user name, or "anonymous"')
    check.add_argument("repository")
    check.add_argument("action", choices=[*acls.ACTIONS])


def _users_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--users", help="the htpasswd file (default: auth.builtin.users of --config)"
    )
    parser.add_argument("-c", "--config", help="moorage config file")


def _builtin_option(args: argparse.Namespace, key: str) -> str:
    explicit = getattr(args, key, None)
    if explicit:
        return str(explicit)
    if not args.config:
        raise AdminError(f"name the file with --{key} or a config with -c")
    try:
        config = load(args.config, serving=False)
    except ConfigError as exc:
        raise AdminError(exc.problems[0]) from None
    value = (config.auth.get("builtin") or {}).get(key)
    if not value:
        raise AdminError(f"{args.config} has no auth.builtin.{key}")
    return str(value)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        if not sys.stdin.isatty():
            raise AdminError("no terminal to ask for the password on; pipe it to --password-stdin")
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise AdminError("the passwords differ")
    if not password:
        raise AdminError("the password is empty")
    return password


def run_user(args: argparse.Namespace) -> int:
    path = _builtin_option(args, "users")
    try:
        users = htpasswd.read_for_edit(path)
    except ValueError as exc:
        raise AdminError(str(exc)) from None
    command = args.user_command
    if command == "list":
        for name in sorted(users):
            print(name)
        return 0
    name = args.name
    if ":" in name or not name.strip():
        raise AdminError(f"invalid user name {name!r}")
    if command == "add" and name in users:
        raise AdminError(f"user {name!r} exists; use passwd to change the password")
    if command in ("passwd", "remove") and name not in users:
        raise AdminError(f"no user {name!r} in {path}")
    if command == "remove":
        del users[name]
    else:
        users[name] = htpasswd.hash_password(_password(args))
    htpasswd.write(path, users)
    print(f"{command}: {name}")
    return 0


def run_acl(args: argparse.Namespace) -> int:
    path = _builtin_option(args, "acl")
    try:
        acl = acls.parse(path)
    except ValueError as exc:
        raise AdminError(str(exc)) from None
    user = None if args.user == acls.ANONYMOUS else args.user
    deciding = acl.deciding(user, args.repository, args.action)
    who = "anonymous" if user is None else f"user {user!r}"
    if not deciding:
        print(f"denied: no rule grants {who} {args.action} on {args.repository}")
        return 1
    print(f"allowed: {who} may {args.action} {args.repository}")
    for rule in deciding:
        print(f"  by {rule.describe()}")
    return 0
