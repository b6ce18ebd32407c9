"""The README's Python snippets: every one parses and names only things plex has; the ones that need
no trained model (marked ``<!-- runs as written in tests -->``) run as written."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
RUNS = "<!-- runs as written in tests -->"


def snippets() -> list[tuple[int, str, bool]]:
    """(line, code, runs) of each ```python block of the README."""
    text = README.read_text(encoding="utf-8")
    found = []
    for m in re.finditer(r"```python\n(.*?)```", text, flags=re.DOTALL):
        before = text[: m.start()].rstrip().splitlines()
        found.append((text[: m.start()].count("\n") + 1, m.group(1), bool(before) and before[-1].strip() == RUNS))
    return found


def resolve(dotted: str):
    """``plex.a.b.C.d`` -> the object, importing submodules on the way."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        if not hasattr(obj, part):
            obj = importlib.import_module(".".join(parts[: i + 1]))
        else:
            obj = getattr(obj, part)
    return obj


def plex_names(tree: ast.AST) -> set[str]:
    """Every dotted ``plex.x.y`` chain and every ``from plex... import name`` of a snippet."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, inner = [], node
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id == "plex":
                names.add(".".join(["plex", *reversed(chain)]))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "plex":
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_readme_has_snippets_and_some_run():
    found = snippets()
    assert len(found) >= 2 and any(runs for _, _, runs in found)


@pytest.mark.parametrize("line,code", [(line, code) for line, code, _ in snippets()])
def test_snippet_parses_and_names_what_exists(line, code):
    tree = ast.parse(code, filename=f"README.md:{line}")
    missing = []
    for name in sorted(plex_names(tree)):
        try:
            resolve(name)
        except (AttributeError, ImportError):
            missing.append(name)
    assert not missing, f"README.md line {line} names what plex lacks: {missing}"


@pytest.mark.parametrize("line,code", [(line, code) for line, code, runs in snippets() if runs])
def test_snippet_runs_as_written(line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})
