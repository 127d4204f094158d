"""Architecture: the core is pure, dependencies point down, optional extras stay optional."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import flowy

PACKAGE = Path(flowy.__file__).resolve().parent
CORE_FILES = sorted((PACKAGE / "core").glob("*.py"))
TRACING_FILES = sorted((PACKAGE / "tracing").glob("*.py"))
IMPURE = frozenset({"threading", "time", "datetime", "socket", "os", "subprocess", "asyncio",
                    "multiprocessing", "concurrent", "boto3", "botocore", "aioboto3", "graphviz",
                    "random", "logging", "io"})


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, module: str | None = None) -> list[tuple[str, int, bool]]:
    """(absolute module name, relative level, inside a function) of every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = (module or module_name(path)).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name, 0, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[:len(package) - (child.level - 1)]
                    name = ".".join(base + ([child.module] if child.module else []))
                else:
                    name = child.module or ""
                found.append((name, child.level, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=60, cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- helpers checked on their own ------------------------------------------------

def test_the_import_scanner_resolves_relative_imports(tmp_path: Path) -> None:
    assert module_name(PACKAGE / "core" / "replay.py") == "flowy.core.replay"
    assert module_name(PACKAGE / "core" / "__init__.py") == "flowy.core"
    found = imports(PACKAGE / "tracing" / "trace.py")
    assert ("flowy.core.errors", 2, False) in found
    assert ("flowy.tracing.render", 1, False) in found
    assert ("flowy.tracing.dot", 1, True) in found
    assert ("flowy.core.events", 1, False) in imports(PACKAGE / "core" / "workflow.py")
    bad = tmp_path / "bad.py"
    bad.write_text("import threading, os.path\nfrom ..engines import local\n"
                   "from flowy.worker.activity import heartbeat\nfrom . import spec\n"
                   "def f():\n    import graphviz\n")
    assert imports(bad, "flowy.core.bad") == [
        ("threading", 0, False), ("os.path", 0, False), ("flowy.engines", 2, False),
        ("flowy.worker.activity", 0, False), ("flowy.core", 1, False), ("graphviz", 0, True)]


def test_there_is_a_core_to_check() -> None:
    assert {p.name for p in CORE_FILES} >= {"__init__.py", "events.py", "workflow.py",
                                            "replay.py", "combinators.py", "spec.py",
                                            "result.py", "errors.py", "codec.py"}


# -- (a) purity of flowy.core ------------------------------------------------------

@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_imports_nothing_impure(path: Path) -> None:
    impure = [name for name, _, _ in imports(path) if name.split(".")[0] in IMPURE]
    assert impure == []


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_imports_nothing_above_it(path: Path) -> None:
    found = imports(path)
    assert [name for name, level, _ in found if level > 1] == []  # no "from .." imports
    outside = [name for name, _, _ in found
               if name.split(".")[0] == "flowy" and not name.startswith("flowy.core")]
    assert outside == []


def test_importing_the_core_loads_nothing_impure() -> None:
    """Import every core module alone (flowy/__init__ is skipped) and list what came with it."""
    names = [module_name(p) for p in CORE_FILES]
    out = run_python(f"""
        import importlib, json, sys, types
        before = set(sys.modules)
        package = types.ModuleType("flowy")
        package.__path__ = [{str(PACKAGE)!r}]
        sys.modules["flowy"] = package
        for name in {names!r}:
            importlib.import_module(name)
        print(json.dumps(sorted(set(sys.modules) - before)))
    """)
    loaded = json.loads(out)
    assert {name for name in names} <= set(loaded)
    assert [m for m in loaded if m.split(".")[0] in IMPURE] == []
    assert [m for m in loaded if m.startswith("flowy.") and not m.startswith("flowy.core")] == []


# -- (b) dependency direction of flowy.tracing ----------------------------------------

@pytest.mark.parametrize("path", TRACING_FILES, ids=lambda p: p.name)
def test_tracing_depends_only_on_the_core(path: Path) -> None:
    flowy_imports = {name for name, _, _ in imports(path) if name.split(".")[0] == "flowy"}
    assert {name for name in flowy_imports
            if not name.startswith(("flowy.core.", "flowy.tracing."))} == set()


@pytest.mark.parametrize("path", TRACING_FILES, ids=lambda p: p.name)
def test_tracing_imports_graphviz_only_lazily(path: Path) -> None:
    eager = [name for name, _, lazy in imports(path)
             if name.split(".")[0] == "graphviz" and not lazy]
    assert eager == []


def test_graphviz_is_imported_somewhere_lazily() -> None:
    lazy = [(path.name, name) for path in TRACING_FILES
            for name, _, in_function in imports(path) if name == "graphviz" and in_function]
    assert lazy == [("render.py", "graphviz")]


# -- (c) optional extras ---------------------------------------------------------------

def test_import_flowy_works_without_graphviz() -> None:
    out = run_python("""
        import json, sys
        sys.modules["graphviz"] = None  # makes "import graphviz" raise ImportError
        import flowy
        import flowy.tracing
        from flowy import LocalWorkflow, wait
        print(json.dumps([flowy.__version__, sys.modules["graphviz"] is None]))
    """)
    assert json.loads(out) == [flowy.__version__, True]


def test_import_flowy_loads_no_aws_or_graphviz() -> None:
    out = run_python("""
        import json, sys
        import flowy
        print(json.dumps(sorted(m for m in sys.modules
                                if m.split(".")[0] in {"boto3", "botocore", "aioboto3",
                                                       "aiobotocore", "graphviz"})))
    """)
    assert json.loads(out) == []


# -- (d) the AWS engine -------------------------------------------------------------------

AWS_FILES = sorted((PACKAGE / "aws").glob("*.py"))


@pytest.mark.parametrize("path", AWS_FILES, ids=lambda p: p.name)
def test_aws_engine_does_not_depend_on_the_local_engine_or_the_cli(path: Path) -> None:
    flowy_imports = {name for name, _, _ in imports(path) if name.split(".")[0] == "flowy"}
    assert {n for n in flowy_imports if n.startswith(("flowy.engines", "flowy.cli"))} == set()


def test_flowy_aws_without_its_extra_says_what_to_install() -> None:
    out = run_python("""
        import sys
        sys.modules["aioboto3"] = None
        try:
            import flowy.aws
        except ImportError as exc:
            print(exc)
    """)
    assert "pip install 'flowy[aws]'" in out


def test_the_cli_loads_aws_only_for_aws_commands() -> None:
    out = run_python("""
        import json, sys
        import flowy.cli.main
        flowy.cli.main._parser()
        aws = {"boto3", "aioboto3"}
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in aws)))
    """)
    assert json.loads(out) == []
