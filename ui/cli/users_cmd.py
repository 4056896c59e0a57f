"""``privsynth users add|role|remove|list|unlock|passwd``: the browser app's accounts and their
roles (the operator's commands: whoever can run them on the server is the operator).

Roles (see :mod:`privsynth_ui.auth`): ``analyst`` trains within a data source's budget;
``custodian`` sets budgets, fixes domains and reads the evaluations (NOT DP). Only this command
changes a role.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import print_table


def register(subparsers: Any) -> None:
    """Add the ``users`` command group."""
    parser = subparsers.add_parser("users", help="manage the accounts of the browser app")
    sub = parser.add_subparsers(dest="users_command", metavar="SUBCOMMAND")
    from privsynth_ui.auth import ANALYST, ROLES

    add = sub.add_parser("add", help="create an account (asks for the password)")
    add.add_argument("name")
    add.add_argument(
        "--role",
        choices=ROLES,
        default=ANALYST,
        help="analyst (default): trains within budgets; custodian: sets budgets, "
        "fixes domains, reads evaluations (NOT DP)",
    )
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    add.set_defaults(func=add_cmd)
    role = sub.add_parser("role", help="change an account's role (applies to its next request)")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    role.set_defaults(func=role_cmd)
    passwd = sub.add_parser("passwd", help="set a new password (ends the user's sessions)")
    passwd.add_argument("name")
    passwd.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    passwd.set_defaults(func=passwd_cmd)
    remove = sub.add_parser("remove", help="delete an account and end its sessions")
    remove.add_argument("name")
    remove.add_argument(
        "--delete-data",
        action="store_true",
        help="also delete the user's workspace (datasets, runs; the shared "
        "ledger keeps what they spent)",
    )
    remove.set_defaults(func=remove_cmd)
    listing = sub.add_parser("list", help="list the accounts")
    listing.set_defaults(func=list_cmd)
    unlock = sub.add_parser("unlock", help="lift the lock after too many failed sign-ins")
    unlock.add_argument("name")
    unlock.set_defaults(func=unlock_cmd)


def _store() -> Any:
    from privsynth_ui.auth import UserStore
    from privsynth_ui.settings import UISettings

    return UserStore(UISettings.from_env().users_db)


def _password(args: argparse.Namespace) -> str:
    from privsynth_core.errors import ConfigError

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise ConfigError("the two passwords differ; nothing was changed")
    return first


def add_cmd(args: argparse.Namespace) -> int:
    """Create an account."""
    _store().add_user(args.name, _password(args), role=args.role)
    print(f"user {args.name} added ({args.role})")
    return 0


def role_cmd(args: argparse.Namespace) -> int:
    """Change an account's role."""
    _store().set_role(args.name, args.role)
    print(f"{args.name} is now a{'n' if args.role[0] in 'aeiou' else ''} {args.role}")
    return 0


def passwd_cmd(args: argparse.Namespace) -> int:
    """Change a password."""
    _store().set_password(args.name, _password(args))
    print(f"password of {args.name} changed; their sessions are ended")
    return 0


def remove_cmd(args: argparse.Namespace) -> int:
    """Delete an account (and, if asked, its workspace)."""
    import shutil

    from privsynth_core.errors import ConfigError
    from privsynth_ui.settings import UISettings
    from privsynth_ui.workspace import Workspace

    if not _store().remove_user(args.name):
        raise ConfigError(f"no user {args.name!r}")
    print(f"user {args.name} removed; their sessions are ended")
    if args.delete_data:
        root = Workspace(UISettings.from_env().home, args.name).root
        shutil.rmtree(root, ignore_errors=True)
        print(f"deleted their workspace {root}")
    return 0


def list_cmd(args: argparse.Namespace) -> int:
    """List the accounts."""
    users = _store().users()
    if not users:
        print("no accounts yet; add one with `privsynth users add NAME [--role custodian]`")
        return 0
    print_table(
        ["USER", "ROLE", "CREATED", "LAST SIGN-IN", "LOCKED"],
        [
            [u.username, u.role, u.created, u.last_login or "-", "yes" if u.locked else ""]
            for u in users
        ],
    )
    return 0


def unlock_cmd(args: argparse.Namespace) -> int:
    """Lift a sign-in lock."""
    _store().unlock(args.name)
    print(f"{args.name} may sign in again")
    return 0
