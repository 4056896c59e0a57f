"""The architecture as the code has it: ``ui -> flows -> privsynth_core <- plugins``.

Read from the source with :mod:`ast` (every import, module level or inside a function), so a
lazy import cannot hide a back arrow or a cycle. The packages are the installed ones, so a new
subpackage that ``pyproject.toml`` does not list (and a non-editable install would leave out)
fails here too.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
#: Where each layer's code lives (the marginal plugins are a distribution of their own).
FOLDERS = {**PACKAGE_DIRS, "privsynth_marginal": "plugins/marginal/src/privsynth_marginal"}
#: What each layer may never import (third-party libraries core must not need at all included).
FORBIDDEN = {
    "privsynth_core": (
        "privsynth_plugins",
        "privsynth_flows",
        "privsynth_ui",
        "privsynth_marginal",
        "evidently",
        "gradio",
        "prefect",
        "dask",
        "sdv",
    ),
    "privsynth_plugins": ("privsynth_flows", "privsynth_ui"),
    "privsynth_marginal": ("privsynth_plugins", "privsynth_flows", "privsynth_ui"),
    "privsynth_flows": ("privsynth_ui",),
}


def _modules(package: str) -> dict[str, Path]:
    """Every module of a top-level package, by dotted name (its tests are not its code)."""
    folder = ROOT / FOLDERS[package]
    out = {}
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        if "tests" in parts or (package == "privsynth_plugins" and parts[0] == "marginal"):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package, *parts])] = path
    return out


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (never run)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
                continue
            todo.append(child)
    return out


def _imports(name: str, path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports when it runs, at any depth of the file."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.update(f"{module}.{alias.name}" for alias in node.names)
            found.add(module)
    return found


def _core_graph() -> dict[str, set[str]]:
    """Core module -> the core modules it imports (a name imported from a package counts as
    the submodule of that name when there is one, else as the package)."""
    modules = _modules("privsynth_core")
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        names = _imports(name, path)
        for imported in names:
            target = imported
            while target and target not in modules:
                target = target.rpartition(".")[0]
            # ``from pkg import sub`` names both pkg and pkg.sub: keep only the submodule.
            if (
                target
                and target != name
                and not any(other.startswith(target + ".") and other in modules for other in names)
            ):
                edges.add(target)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_package_folder_is_installed() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    for package, folder in PACKAGE_DIRS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            if any(part in ("tests", "__pycache__") for part in init.parent.parts):
                continue
            relative = init.parent.relative_to(ROOT / folder).parts
            if (ROOT / folder / relative[0] / "pyproject.toml").exists() if relative else False:
                continue  # a separate distribution (privsynth-marginal)
            assert ".".join([package, *relative]) in listed, init


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_what_is_above_it(layer: str) -> None:
    offences = [
        f"{name} imports {imported}"
        for name, path in _modules(layer).items()
        for imported in _imports(name, path)
        if imported.split(".")[0] in FORBIDDEN[layer]
    ]
    assert offences == []


def test_core_has_no_import_cycle() -> None:
    assert _cycles(_core_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    # The test above must be able to fail.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _defined(path: Path) -> set[str] | None:
    """The names a module defines at its top level (a def, class, assignment or import, also
    under a top-level ``if`` or ``try``); None when it may define more than the source says
    (a module ``__getattr__`` or a ``*`` import)."""
    names: set[str] = set()
    todo = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == "__getattr__":
                return None
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody"):
                todo.extend(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                todo.extend(handler.body)
    return names


def _dangling_imports(
    modules: dict[str, Path], root: Path = ROOT, also: dict[str, Path] | None = None
) -> list[str]:
    """Each import, at any depth of a module in ``modules``, of one of those packages' modules
    that does not exist, or of a name that module does not define (nor a submodule of it).
    ``also``: more files to read (tests, benchmarks), by a dotted name of their own."""
    ours = {name.split(".")[0] for name in modules}
    defined: dict[str, set[str] | None] = {}
    offences = []
    for name, path in {**modules, **(also or {})}.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                wanted = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - (node.level - 1)]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                wanted = [(module, alias.name) for alias in node.names]
            else:
                continue
            for module, attribute in wanted:
                if module.split(".")[0] not in ours:
                    continue
                where = f"{path.relative_to(root)}:{node.lineno}"
                if module not in modules:
                    offences.append(f"{where} imports {module}, which does not exist")
                    continue
                if attribute is None or attribute == "*" or f"{module}.{attribute}" in modules:
                    continue
                if module not in defined:
                    defined[module] = _defined(modules[module])
                known = defined[module]
                if known is not None and attribute not in known:
                    offences.append(f"{where} imports {attribute} from {module}, which has none")
    return sorted(offences)


def test_every_import_of_our_modules_names_one_that_exists() -> None:
    # The checks above read a name they do not know as its package, so an import left on a
    # moved module's old path (``privsynth_core.domain`` inside a function of
    # ui/domain_handlers.py after the move to privacy/) passed them and failed only when the
    # web app learned a domain. Read from the source, lazy imports included (issue #17).
    modules = {name: path for package in FOLDERS for name, path in _modules(package).items()}
    tests = {
        "tests_." + ".".join(path.relative_to(ROOT).with_suffix("").parts): path
        for folder in ("tests", "plugins/marginal/tests", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
    }
    assert _dangling_imports(modules, also=tests) == []


def test_the_dangling_import_finder_finds_one(tmp_path: Path) -> None:
    # The test above must be able to fail: a lazy import of a module that is not there, and of
    # a name a module does not define, are both reported; a submodule and a defined name are not.
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub.py").write_text("X = 1\n")
    (tmp_path / "pkg" / "user.py").write_text(
        "from . import sub\nfrom .sub import X\n\n\ndef f():\n    from .gone import Y\n"
        "    from .sub import Z\n"
    )
    modules = {
        name: tmp_path / "pkg" / f"{file}.py"
        for name, file in (("pkg", "__init__"), ("pkg.sub", "sub"), ("pkg.user", "user"))
    }
    assert _dangling_imports(modules, tmp_path) == [
        "pkg/user.py:6 imports pkg.gone, which does not exist",
        "pkg/user.py:7 imports Z from pkg.sub, which has none",
    ]


#: The ui modules that may import Gradio: the page's layout and its adapters (issue #17).
GRADIO_ADAPTERS = {
    "privsynth_ui.app",
    "privsynth_ui.gate",
    "privsynth_ui.guard",
    "privsynth_ui.web",
}
#: What starts the web app (``privsynth ui``): it imports the app, so Gradio, when it runs.
GRADIO_LAUNCHERS = {"privsynth_ui.cli.ui_cmd"}


def _reaching_gradio(modules: dict[str, Path], adapters: set[str]) -> list[str]:
    """Each module outside ``adapters`` that imports Gradio, directly or through another of
    ``modules``, with the chain of imports that gets there."""
    edges = {name: _imports(name, path) for name, path in modules.items()}
    offences = []
    for start in sorted(set(modules) - adapters):
        seen, todo = {start: [start]}, [start]
        while todo:
            name = todo.pop()
            for imported in sorted(edges[name]):
                if imported.split(".")[0] == "gradio":
                    offences.append(" -> ".join([*seen[name], imported]))
                    todo.clear()
                    break
                target = imported
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target not in seen:
                    seen[target] = [*seen[name], target]
                    todo.append(target)
    return offences


def test_only_the_pages_adapters_import_gradio() -> None:
    # Every rule of the web app (events, server, custody of files, views, handlers) runs and is
    # tested without Gradio; Gradio's code is the page's layout and the adapters to it.
    modules = _modules("privsynth_ui")
    assert set(modules) >= GRADIO_ADAPTERS | GRADIO_LAUNCHERS
    assert _reaching_gradio(modules, GRADIO_ADAPTERS | GRADIO_LAUNCHERS) == []


def test_the_gradio_finder_finds_an_import_through_another_module(tmp_path: Path) -> None:
    # The test above must be able to fail: a lazy import of Gradio two modules away is found.
    (tmp_path / "a.py").write_text("from pkg import b\n")
    (tmp_path / "b.py").write_text("def f():\n    import gradio.processing_utils\n")
    (tmp_path / "c.py").write_text("import gradio as gr\n")
    modules = {f"pkg.{n}": tmp_path / f"{n}.py" for n in "abc"}
    assert _reaching_gradio(modules, {"pkg.c"}) == [
        "pkg.a -> pkg.b -> gradio.processing_utils",
        "pkg.b -> gradio.processing_utils",
    ]
