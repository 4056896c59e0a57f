"""``privsynth plugins list|show``: every registered plugin, its kind, id, version and origin;
and one plugin in full, with each parameter's type, default and meaning."""

from __future__ import annotations

import argparse
import json
import textwrap
from typing import Any

from ._common import print_table


def register(subparsers: Any) -> None:
    """Add the ``plugins`` command group."""
    parser = subparsers.add_parser("plugins", help="list installed plugins, or show one")
    sub = parser.add_subparsers(dest="plugins_command", metavar="SUBCOMMAND")
    listing = sub.add_parser("list", help="show every generator, accountant and metric plugin")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(func=list_plugins)
    show = sub.add_parser(
        "show",
        help="one plugin in full: what it is and every parameter it takes",
        description="Describe a plugin; for a generator, list each parameter with its type, "
        "allowed values, default and meaning (give them to `privsynth fit` as --param "
        "NAME=VALUE, or under `params:` in a run configuration).",
    )
    show.add_argument("plugin_id", metavar="ID", help="a plugin id from `privsynth plugins list`")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(func=show_plugin)


def list_plugins(args: argparse.Namespace) -> int:
    """Print the registered plugins (imports no plugin's heavy dependencies)."""
    from privsynth_core.registry import all_entries

    entries = all_entries()
    if args.json:
        rows = [
            {
                "kind": e.kind,
                "id": e.plugin_id,
                "plugin": e.plugin_name,
                "distribution": e.distribution,
                "version": e.version,
                "description": e.description,
                **_flags(e.cls),
            }
            for e in entries
        ]
        print(json.dumps(rows, indent=2))
        return 0
    print_table(
        ["KIND", "ID", "PACKAGE", "VERSION", "PLUGIN", "DESCRIPTION"],
        [
            [
                e.kind,
                e.plugin_id,
                e.distribution,
                e.version,
                e.plugin_name,
                _label(e.cls) + e.description,
            ]
            for e in entries
        ],
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


def show_plugin(args: argparse.Namespace) -> int:
    """Print one plugin (of any kind) and, for a generator, its parameters."""
    from privsynth_core.errors import UnknownPluginError
    from privsynth_core.registry import all_entries

    found = [e for e in all_entries() if e.plugin_id == args.plugin_id]
    if not found:
        raise UnknownPluginError("plugin", args.plugin_id, {e.plugin_id for e in all_entries()})
    rows = [
        {
            "kind": e.kind,
            "id": e.plugin_id,
            "distribution": e.distribution,
            "version": e.version,
            "description": e.description,
            **_flags(e.cls),
            "parameters": parameter_rows(e.cls),
        }
        for e in found
    ]
    if args.json:
        print(json.dumps(rows if len(rows) > 1 else rows[0], indent=2, default=str))
        return 0
    for entry, row in zip(found, rows, strict=True):
        print(
            f"{entry.kind} {entry.plugin_id} ({entry.distribution} {entry.version}): "
            f"{_label(entry.cls)}{entry.description}"
        )
        if getattr(entry.cls, "pure_epsilon", False):
            print("pure epsilon-DP: its delta is 0 (no --delta needed)")
        params = row["parameters"]
        if params:
            print("parameters (privsynth fit ... --param NAME=VALUE):")
            for p in params:
                print(f"  {p['name']}: {p['type']}; default {p['default']}")
                for line in textwrap.wrap(p["meaning"], width=92):
                    print(f"      {line}")
        elif entry.kind == "generator":
            print("parameters: none")
    return 0


def parameter_rows(cls: type) -> list[dict[str, str]]:
    """A generator's parameters from its pydantic model: name, type (with the allowed values),
    default and meaning. Empty for a plugin without a ``Params`` model."""
    params = getattr(cls, "Params", None)
    if params is None or not hasattr(params, "model_json_schema"):
        return []
    schema = params.model_json_schema()
    defs = schema.get("$defs", {})
    rows = []
    for name, prop in schema.get("properties", {}).items():
        default = prop.get("default", "(required)")
        rows.append(
            {
                "name": name,
                "type": _type_text(prop, defs),
                "default": "empty"
                if default is None
                else json.dumps(default)
                if isinstance(default, list | dict)
                else str(default),
                "meaning": " ".join(str(prop.get("description", "")).split()),
            }
        )
    return rows


def _type_text(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """A JSON-schema property in a few words: ``integer 1..1000``, ``one of: a, b``, ..."""
    if "anyOf" in prop:
        kinds = [_type_text(p, defs) for p in prop["anyOf"] if p.get("type") != "null"]
        optional = any(p.get("type") == "null" for p in prop["anyOf"])
        return " or ".join(kinds) + (" (or empty)" if optional else "")
    if "$ref" in prop:
        ref = defs.get(prop["$ref"].rsplit("/", 1)[-1], {})
        fields = ", ".join(ref.get("properties", {}))
        return f"{ref.get('title', 'object').lower()} ({fields})" if fields else "object"
    if "enum" in prop:
        return "one of: " + ", ".join(str(v) for v in prop["enum"])
    kind = str(prop.get("type", "any"))
    if kind == "array":
        return f"list of {_type_text(prop.get('items', {}), defs)}"
    low = prop.get("minimum", prop.get("exclusiveMinimum"))
    high = prop.get("maximum", prop.get("exclusiveMaximum"))
    if low is None and high is None:
        return kind
    if high is None:
        return f"{kind} {'>' if 'exclusiveMinimum' in prop else '≥'} {_number(low)}"
    if low is None:
        return f"{kind} {'<' if 'exclusiveMaximum' in prop else '≤'} {_number(high)}"
    left = "(" if "exclusiveMinimum" in prop else "["
    right = ")" if "exclusiveMaximum" in prop else "]"
    return f"{kind} in {left}{_number(low)}, {_number(high)}{right}"


def _number(value: Any) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"
