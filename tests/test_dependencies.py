"""Every third-party module that plex imports is a declared dependency of pyproject.toml.

A module installed by hand on one machine (captum was, once) must not hide a missing declaration:
the check reads the code, not the environment, and maps each imported top-level module to the
distribution that provides it here through ``importlib.metadata.packages_distributions()``.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "plex"


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {normalise(re.match(r"[A-Za-z0-9._-]+", r).group(0)) for r in requirements}


def imported_modules(package: Path, root: Path = ROOT) -> dict[str, str]:
    """Top-level module name -> the first file importing it (imports inside functions included)."""
    found: dict[str, str] = {}
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.partition(".")[0], str(path.relative_to(root)))
    return found


def third_party(modules: dict[str, str]) -> dict[str, str]:
    skip = set(sys.stdlib_module_names) | {"__future__", "plex"}
    return {m: where for m, where in modules.items() if m not in skip}


def test_every_third_party_import_is_declared():
    declared = declared_distributions()
    providers = packages_distributions()
    problems = []
    for module, where in sorted(third_party(imported_modules(PACKAGE)).items()):
        dists = {normalise(d) for d in providers.get(module, [])}
        if not dists:
            if normalise(module) not in declared:
                problems.append(f"{module} ({where}): not installed and not declared")
        elif not dists & declared:
            problems.append(f"{module} ({where}): comes from {', '.join(sorted(dists))}, not declared")
    assert not problems, "add these to pyproject.toml dependencies:\n" + "\n".join(problems)


def test_the_scan_sees_function_level_imports(tmp_path):
    """The scan itself: imports inside functions and ``from x.y import z`` count; relative ones do not."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("import os\nfrom .b import c\n\ndef f():\n    import captum.attr\n"
                              "    from matplotlib import pyplot\n")
    found = third_party(imported_modules(pkg, root=tmp_path))
    assert set(found) == {"captum", "matplotlib"}

