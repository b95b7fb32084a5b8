"""The packages form one stack and import only downward, including imports inside functions.

    dataio  <-  demo, train  <-  curate  <-  mitigation  <-  commands  <-  cli.py
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> the packages of ours it may import (besides itself)
ALLOWED = {
    "dataio": set(),
    "demo": {"dataio"},
    "train": {"dataio"},
    "curate": {"dataio", "train"},
    "mitigation": {"dataio", "train", "curate"},
    "commands": {"dataio", "demo", "train", "curate", "mitigation"},
    "cli": {"dataio", "commands"},
}


def our_modules() -> list:
    files = [ROOT / "cli.py"]
    for package in ALLOWED:
        if (ROOT / package).is_dir():
            files += sorted((ROOT / package).rglob("*.py"))
    return files


def imported_packages(path: Path) -> set:
    """Top-level names of every import in the file: module level, inside functions, inside try blocks.

    importlib.import_module("x.y") with a literal string counts too; cli.py builds its command module
    names from a prefix, which counts as an import of that prefix's package.
    """
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args:
            first = node.args[0]
            literal = first.left if isinstance(first, ast.BinOp) else first
            if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
                names.add(literal.value.split(".")[0])
    return names & set(ALLOWED)


def package_of(path: Path) -> str:
    relative = path.relative_to(ROOT)
    return "cli" if relative.parts == ("cli.py",) else relative.parts[0]


@pytest.mark.parametrize("path", our_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_only_down_the_stack(path):
    package = package_of(path)
    upward = imported_packages(path) - ALLOWED[package] - {package}
    assert not upward, f"{path.relative_to(ROOT)} ({package}) imports {sorted(upward)}, which sit above it or beside it"


def test_the_checker_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "sample.py"
    module.write_text("def late():\n    from mitigation.strategies import mitigate\n    import curate.rankings\n"
                      "importlib.import_module('train.loop')\n")
    assert imported_packages(module) == {"mitigation", "curate", "train"}


def test_every_package_is_covered():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages == set(ALLOWED) - {"cli"}, "a new package needs its place in ALLOWED (and in architecture.md)"
