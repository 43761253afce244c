"""The code's structure as docs/design.md states it: who may import whom, and no reach into private names.

Read from the source (``ast``), nothing imported: a new import that breaks a
rule fails here with the file and line, whoever adds it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("manifests", "renderers", "covisibility", "pairgen", "pretrain")
#: what each package may import of the project's others, packages or modules (docs/design.md, Structure)
ALLOWED = {
    "manifests": set(),
    "renderers": {"manifests"},
    "covisibility": {"manifests", "renderers.camera"},
    "pairgen": {"manifests", "renderers", "covisibility"},
    "pretrain": {"manifests", "covisibility.pixel_rule", "renderers.camera"},  # pure numpy: the probe's geometry
}
#: the comment that lets an import reach a private name: a test that pins a private kernel on purpose says why
ON_PURPOSE = "# private on purpose:"


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts)


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every import in ``path`` (``import a.b`` gives names ``[]``)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def test_every_package_imports_only_what_the_design_allows():
    wrong = []
    for package in PACKAGES:
        for path in sources(package):
            for line, module, _ in imports(path):
                top = module.split(".")[0]
                allowed = any(module == a or module.startswith(a + ".") for a in ALLOWED[package])
                if top in PACKAGES and top != package and not allowed:
                    wrong.append(f"{path.relative_to(ROOT)}:{line}: {package} imports {module}")
    assert not wrong, "\n".join(wrong)


def private_reaches(path: Path) -> list[str]:
    """Names starting with ``_`` that ``path`` imports from, or reads off, another of the project's modules."""
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text, str(path))
    modules: set[str] = set()  # local names bound to the project's modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in (*PACKAGES, "tests", "benchmarks"):
                    modules.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] not in (*PACKAGES, "tests", "benchmarks"):
                continue
            said = any(ON_PURPOSE in line for line in lines[node.lineno - 1 : node.end_lineno])
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__") and not said:
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
                else:
                    modules.add(alias.asname or alias.name)  # maybe a module (from pkg import module)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in modules):  # fmt: skip
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("folder", [*PACKAGES, "tests", "benchmarks", "scripts"])
def test_no_module_reaches_into_another_modules_private_names(folder):
    wrong = []
    for path in sources(folder):
        relative = path.relative_to(ROOT).as_posix()
        wrong += [f"{relative}:{reach}" for reach in private_reaches(path)]
    assert not wrong, "\n".join(wrong)


def test_tests_import_no_other_test_module():
    """Shared test helpers live in helper modules (``tests/rooms.py``, ``tests/writers/``), not in test files."""
    wrong = []
    for path in sources("tests", "benchmarks"):
        for line, module, _ in imports(path):
            if module.startswith("tests.") and module.split(".")[-1].startswith("test_"):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
    assert not wrong, "\n".join(wrong)


def module_graph() -> dict[str, set[str]]:
    """The project's modules and the ones each imports when it is imported (module-level imports only).

    ``from pkg import sub`` counts as importing ``sub`` when ``sub`` is a module; a
    package's ``__init__`` is the module ``pkg``.
    """
    modules = {}
    for package in PACKAGES:
        for path in sources(package):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                subs = [f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in modules]
                targets = subs or [node.module]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def test_the_import_graph_has_no_cycle():
    """Registries keep their interface in ``base.py``: the package imports its entries, the entries import ``base``."""
    graph = module_graph()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(name):] + [name]))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, path + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])

