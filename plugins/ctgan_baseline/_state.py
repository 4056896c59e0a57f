"""A fitted SDV synthesizer as JSON plus tensors: no pickle, nothing executed on load.

SDV can only save a synthesizer with cloudpickle, and unpickling a file runs whatever code it
names. Here the fitted object graph is written as a JSON *state tree* (classes by name, their
attributes as data) and a ``torch.save`` of plain tensors (numeric arrays, network weights),
which ``torch.load(weights_only=True)`` reads without executing anything.

Loading creates objects only of classes from an allow-list of modules (SDV, RDT, CTGAN,
scikit-learn, torch.nn, numpy/pandas value types) with ``cls.__new__`` and fills in their
attributes; no constructor, ``__reduce__`` or ``__setstate__`` runs. Shared references and cycles
are kept (``__id__`` / ``__ref__``). What cannot be written (the metadata objects, the unfitted
transformer templates holding a Faker instance) is taken from a freshly constructed synthesizer
with the same metadata and parameters, onto which the saved state is laid.
"""

from __future__ import annotations

import collections
import importlib
from typing import Any

import numpy as np

ALLOWED_MODULES = ("sdv.", "rdt.", "ctgan.", "sklearn.", "torch.nn.", "copulas.")
_STATE_VERSION = 1


class StateError(ValueError):
    """The object graph holds something the state tree cannot represent, or a bad tree."""


def _allowed(cls: type) -> bool:
    return cls.__module__.startswith(ALLOWED_MODULES) or cls is collections.OrderedDict


def _class(path: str) -> Any:
    module, _, name = path.partition(":")
    if not (module + ".").startswith(ALLOWED_MODULES) and path != "collections:OrderedDict":
        raise StateError(f"class {path} is not on the allow-list; refusing to create it")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise StateError(f"{path} is not a class")
    return obj


class Encoder:
    """Turns an object graph into a JSON-able tree plus a dict of tensors."""

    def __init__(self, skip: dict[int, str] | None = None) -> None:
        self.tensors: dict[str, Any] = {}
        self.memo: dict[int, int] = {}
        self.keep: list[Any] = []  # keeps encoded objects alive so their ids stay unique
        self.skip = skip or {}

    def tensor(self, value: Any) -> str:
        import torch

        key = f"t{len(self.tensors)}"
        self.tensors[key] = (
            value.detach().cpu().clone()
            if isinstance(value, torch.Tensor)
            else torch.from_numpy(np.ascontiguousarray(value).copy())
        )
        return key

    def __call__(self, obj: Any) -> Any:
        import pandas as pd
        import torch

        if obj is None or isinstance(obj, bool | int | str):
            return obj
        if isinstance(obj, float):
            return obj if np.isfinite(obj) else {"__float__": repr(obj)}
        if id(obj) in self.skip:
            return {"__skip__": self.skip[id(obj)]}
        if isinstance(obj, np.generic):
            return {"__np__": obj.dtype.str, "v": self(obj.item())}
        if isinstance(obj, np.dtype | pd.api.extensions.ExtensionDtype):
            return {"__dtype__": str(obj)}
        if isinstance(obj, type):
            if not _allowed(obj) and obj not in (int, float, str, bool, object):
                raise StateError(f"cannot store a reference to class {obj!r}")
            return {"__class__": f"{obj.__module__}:{obj.__qualname__}"}
        if id(obj) in self.memo:
            return {"__ref__": self.memo[id(obj)]}
        ref = self.memo[id(obj)] = len(self.memo)
        self.keep.append(obj)
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind in "biuf":
                return {"__id__": ref, "__array__": self.tensor(obj)}
            return {"__id__": ref, "__objarray__": self(obj.tolist()), "dtype": str(obj.dtype)}
        if isinstance(obj, torch.nn.Parameter):
            return {
                "__id__": ref,
                "__param__": self.tensor(obj),
                "requires_grad": obj.requires_grad,
            }
        if isinstance(obj, torch.Tensor):
            return {"__id__": ref, "__tensor__": self.tensor(obj)}
        if isinstance(obj, torch.device):
            return {"__id__": ref, "__device__": str(obj)}
        if isinstance(obj, np.random.RandomState):
            return {"__id__": ref, "__randomstate__": self(obj.get_state())}
        if isinstance(obj, torch.Generator):
            return {
                "__id__": ref,
                "__torchrng__": self.tensor(obj.get_state()),
                "device": str(obj.device),
            }
        if isinstance(obj, pd.DataFrame):
            return {
                "__id__": ref,
                "__frame__": self({c: obj[c].tolist() for c in obj.columns}),
                "columns": self(list(obj.columns)),
            }
        if isinstance(obj, pd.Series):
            return {
                "__id__": ref,
                "__series__": self(obj.tolist()),
                "index": self(list(obj.index)),
                "dtype": str(obj.dtype),
                "name": self(obj.name),
            }
        if isinstance(obj, pd.Index):
            return {"__id__": ref, "__index__": self(obj.tolist()), "dtype": str(obj.dtype)}
        if isinstance(obj, list):
            return {"__id__": ref, "__list__": [self(v) for v in obj]}
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            cls = type(obj)
            if not _allowed(cls):
                raise StateError(f"cannot store a {cls.__module__}.{cls.__qualname__}")
            return {
                "__id__": ref,
                "__namedtuple__": f"{cls.__module__}:{cls.__qualname__}",
                "fields": [self(v) for v in obj],
            }
        if isinstance(obj, tuple | set | frozenset):
            kind = "tuple" if isinstance(obj, tuple) else "set"
            return {"__id__": ref, f"__{kind}__": [self(v) for v in obj]}
        if type(obj) is dict or type(obj) is collections.OrderedDict:
            return {
                "__id__": ref,
                "__dict__": [[self(k), self(v)] for k, v in obj.items()],
                "ordered": type(obj) is collections.OrderedDict,
            }
        cls = type(obj)
        if _allowed(cls) and hasattr(obj, "__dict__"):
            return {
                "__id__": ref,
                "__object__": f"{cls.__module__}:{cls.__qualname__}",
                "state": self(dict(vars(obj))),
            }
        raise StateError(f"cannot store a {cls.__module__}.{cls.__qualname__} object")


class Decoder:
    """Rebuilds the object graph from a tree and its tensors (see :class:`Encoder`)."""

    def __init__(self, tensors: dict[str, Any], skipped: dict[str, Any]) -> None:
        self.tensors, self.skipped = tensors, skipped
        self.objects: dict[int, Any] = {}

    def _array(self, key: str) -> Any:
        return self.tensors[key].numpy().copy()

    def __call__(self, node: Any) -> Any:
        import pandas as pd
        import torch

        if not isinstance(node, dict):
            return node
        if "__float__" in node:
            return float(node["__float__"])
        if "__skip__" in node:
            return self.skipped[node["__skip__"]]
        if "__np__" in node:
            return np.dtype(node["__np__"]).type(self(node["v"]))
        if "__dtype__" in node:
            return pd.api.types.pandas_dtype(node["__dtype__"])
        if "__class__" in node:
            path = node["__class__"]
            return {
                "builtins:int": int,
                "builtins:float": float,
                "builtins:str": str,
                "builtins:bool": bool,
                "builtins:object": object,
            }.get(path) or _class(path)
        if "__ref__" in node:
            return self.objects[node["__ref__"]]
        ref = node["__id__"]
        out: Any
        if "__array__" in node:
            out = self._array(node["__array__"])
        elif "__objarray__" in node:
            out = np.array(self(node["__objarray__"]), dtype=node["dtype"])
        elif "__param__" in node:
            out = torch.nn.Parameter(
                self.tensors[node["__param__"]].clone(), requires_grad=node["requires_grad"]
            )
        elif "__tensor__" in node:
            out = self.tensors[node["__tensor__"]].clone()
        elif "__device__" in node:
            out = torch.device(node["__device__"])
        elif "__randomstate__" in node:
            out = np.random.RandomState()
            out.set_state(self(node["__randomstate__"]))
        elif "__torchrng__" in node:
            out = torch.Generator(device=node["device"])
            out.set_state(self.tensors[node["__torchrng__"]])
        elif "__frame__" in node:
            out = pd.DataFrame(self(node["__frame__"]), columns=self(node["columns"]))
        elif "__series__" in node:
            values = self(node["__series__"])
            dtype = None if node["dtype"] == "object" else node["dtype"]
            out = pd.Series(
                values, index=self(node["index"]), dtype=dtype or object, name=self(node["name"])
            )
        elif "__index__" in node:
            out = pd.Index(self(node["__index__"]), dtype=node["dtype"])
        elif "__list__" in node:
            out = []
            self.objects[ref] = out
            out.extend(self(v) for v in node["__list__"])
        elif "__namedtuple__" in node:
            out = _class(node["__namedtuple__"])(*(self(v) for v in node["fields"]))
        elif "__tuple__" in node:
            out = tuple(self(v) for v in node["__tuple__"])
        elif "__set__" in node:
            out = {self(v) for v in node["__set__"]}
        elif "__dict__" in node:
            out = collections.OrderedDict() if node["ordered"] else {}
            self.objects[ref] = out
            for key, value in node["__dict__"]:
                out[self(key)] = self(value)
        elif "__object__" in node:
            cls = _class(node["__object__"])
            out = cls.__new__(cls)
            self.objects[ref] = out
            out.__dict__.update(self(node["state"]))
        else:
            raise StateError(f"unknown node in the state tree: {sorted(node)}")
        self.objects[ref] = out
        return out


def dump(obj: Any, *, skip: dict[int, str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(tree, tensors)`` for ``obj``; objects whose ``id`` is in ``skip`` become placeholders."""
    encoder = Encoder(skip)
    tree = {"version": _STATE_VERSION, "root": encoder(obj)}
    return tree, encoder.tensors


def load(tree: dict[str, Any], tensors: dict[str, Any], *, skipped: dict[str, Any]) -> Any:
    """Rebuild the object of :func:`dump`; ``skipped`` supplies the placeholders' objects.

    Raises:
        StateError: an unknown version, node or class outside the allow-list.
    """
    if tree.get("version") != _STATE_VERSION:
        raise StateError(f"unsupported state version {tree.get('version')!r}")
    return Decoder(tensors, skipped)(tree["root"])
