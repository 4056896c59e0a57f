"""Parameter forms generated from a plugin's pydantic ``Params`` model (no per-plugin UI code).

:func:`field_specs` reads ``Params.model_json_schema()`` and describes one input per field:
integers and numbers (with their bounds), optional numbers (left empty for "none"), choices
(``Literal``/enum), booleans, text; anything structured (lists of layers, mappings) becomes a
JSON text box holding the default. :func:`collect_params` turns the form's values back into a
dict that the generator's own ``make_params`` validates, so every rule of the model applies and
its messages reach the user as they are.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from privsynth_core.errors import ConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel

FieldKind = Literal["int", "float", "bool", "choice", "text", "json"]


@dataclass(frozen=True)
class FieldSpec:
    """One input of a generated form.

    Attributes:
        name: the parameter's name.
        kind: int, float, bool, choice, text or json.
        label: what the form shows.
        info: the field's description.
        default: its default value (JSON text for ``json`` fields).
        optional: an empty input means None (optional numbers are text boxes, because a
            number box cannot be empty).
        minimum, maximum: inclusive bounds of numbers, when the model has them.
        choices: the allowed values of a ``choice`` field.
    """

    name: str
    kind: FieldKind
    label: str
    info: str
    default: Any
    optional: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return dict(defs.get(ref.removeprefix("#/$defs/"), {}))
    return node


def _spec(name: str, prop: dict[str, Any], defs: dict[str, Any]) -> FieldSpec:
    variants = [_resolve(v, defs) for v in prop.get("anyOf", [prop])]
    optional = any(v.get("type") == "null" for v in variants)
    variants = [v for v in variants if v.get("type") != "null"] or [{}]
    node = variants[0] if len(variants) == 1 else {}
    default = prop.get("default")
    label = name.replace("_", " ")
    info = str(prop.get("description") or "")
    if optional and info:
        info += " (leave empty for none)"
    kind: FieldKind
    if "enum" in node or "const" in node:
        choices = tuple(node.get("enum") or [node["const"]])
        return FieldSpec(name, "choice", label, info, default, optional, choices=choices)
    json_type = node.get("type")
    if json_type in ("integer", "number"):
        kind = "int" if json_type == "integer" else "float"
        return FieldSpec(
            name,
            kind,
            label,
            info,
            default,
            optional,
            minimum=node.get("minimum"),
            maximum=node.get("maximum"),
        )
    if json_type == "boolean":
        return FieldSpec(name, "bool", label, info, bool(default), optional)
    if json_type == "string":
        return FieldSpec(name, "text", label, info, "" if default is None else default, optional)
    text = "" if default is None else json.dumps(default)
    return FieldSpec(name, "json", label, info + " (JSON)", text, optional)


def field_specs(params_cls: type[BaseModel]) -> list[FieldSpec]:
    """One :class:`FieldSpec` per field of ``params_cls``, in declaration order."""
    schema = params_cls.model_json_schema()
    defs = schema.get("$defs", {})
    return [_spec(name, prop, defs) for name, prop in schema.get("properties", {}).items()]


def _number(spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            return text  # the model rejects it with its own message
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if spec.kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def collect_params(specs: list[FieldSpec], values: list[Any]) -> dict[str, Any]:
    """The parameter dict of a form's ``values`` (in the order of ``specs``).

    Empty inputs of optional fields become None; empty required inputs are left out so the
    model's default applies. JSON fields are parsed; text that is not JSON is passed on as it
    is, for the model's own validators to accept or reject.

    Raises:
        ConfigError: the number of values does not match the form.
    """
    if len(values) != len(specs):
        raise ConfigError(f"the form has {len(specs)} fields but {len(values)} values came")
    out: dict[str, Any] = {}
    for spec, value in zip(specs, values, strict=True):
        if spec.kind in ("int", "float"):
            value = _number(spec, value)
        elif spec.kind in ("text", "json"):
            text = "" if value is None else str(value).strip()
            if spec.kind == "json" and text:
                try:
                    value = json.loads(text)
                except ValueError:
                    value = text
            else:
                value = text or None
        elif spec.kind == "bool":
            value = bool(value)
        if value is None and not spec.optional:
            continue
        out[spec.name] = value
    return out


__all__ = ["FieldSpec", "collect_params", "field_specs"]
