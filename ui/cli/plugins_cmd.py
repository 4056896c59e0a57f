"""``privsynth plugins list``: every registered plugin, its kind, id, version and origin."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import print_table


def register(subparsers: Any) -> None:
    """Add the ``plugins`` command group."""
    parser = subparsers.add_parser("plugins", help="list installed plugins")
    sub = parser.add_subparsers(dest="plugins_command", metavar="SUBCOMMAND")
    listing = sub.add_parser("list", help="show every generator, accountant and metric plugin")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(func=list_plugins)


def list_plugins(args: argparse.Namespace) -> int:
    """Print the registered plugins (imports no plugin's heavy dependencies)."""
    from privsynth_core.registry import all_entries

    entries = all_entries()
    if args.json:
        rows = [
            {"kind": e.kind, "id": e.plugin_id, "plugin": e.plugin_name,
             "distribution": e.distribution, "version": e.version, "description": e.description,
             **_flags(e.cls)}
            for e in entries
        ]
        print(json.dumps(rows, indent=2))
        return 0
    print_table(
        ["KIND", "ID", "PACKAGE", "VERSION", "PLUGIN", "DESCRIPTION"],
        [[e.kind, e.plugin_id, e.distribution, e.version, e.plugin_name,
          _label(e.cls) + e.description] for e in entries],
    )
    return 0


def _flags(cls: type) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    if hasattr(cls, "is_dp"):
        flags["differentially_private"] = bool(cls.is_dp)
    if hasattr(cls, "approximate"):
        flags["approximate"] = bool(cls.approximate)
    return flags


def _label(cls: type) -> str:
    if getattr(cls, "is_dp", True) is False:
        return "[NOT DP] "
    if getattr(cls, "approximate", False):
        return "[approximation] "
    return ""
