"""Every hook in privsynth_core/hookspecs.py is documented in docs/plugins.md, and vice versa."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from privsynth_core import hookspecs

DOCS = Path(__file__).parents[1] / "docs" / "plugins.md"


def _hookspecs() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, "privsynth_spec")
    }


def test_every_hookspec_has_a_docs_section_with_its_signature() -> None:
    text = DOCS.read_text()
    specs = _hookspecs()
    assert specs, "no hookspecs found"
    for name, signature in specs.items():
        params = ", ".join(signature.parameters)
        assert f"## {name}({params})" in text, f"docs/plugins.md lacks '## {name}({params})'"


def test_docs_document_no_hook_that_does_not_exist() -> None:
    documented = set(re.findall(r"^## (\w+)\(", DOCS.read_text(), flags=re.M))
    assert documented == set(_hookspecs())


def test_every_hookspec_has_a_docstring_with_args_and_example() -> None:
    for name in _hookspecs():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert "Args:" in doc and "Example" in doc, name
