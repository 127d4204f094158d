"""Architecture: the core is pure, dependencies point down, optional extras stay optional.

What the static imports may be is written down as import-linter contracts in
pyproject.toml (``[tool.importlinter]``): the layers from the CLI down to the
core, no cycles between siblings anywhere under flowy, a core that imports
nothing impure, and backends that don't know each other.  ``lint-imports``
checks them; the first test runs it.  The other tests check what the static
graph can't: what importing something loads at run time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from importlinter import api

import flowy

PACKAGE = Path(flowy.__file__).resolve().parent
ROOT = PACKAGE.parent
PYPROJECT = ROOT / "pyproject.toml"
CORE_FILES = sorted((PACKAGE / "core").glob("*.py"))
AWS_MODULES = frozenset({"boto3", "botocore"})


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout


def contracts() -> list[dict[str, object]]:
    options: list[dict[str, object]] = api.read_configuration(str(PYPROJECT))["contracts_options"]
    return options


def core_forbidden_modules() -> frozenset[str]:
    """The modules the core must not import, as the forbidden contract names them."""
    forbidden = [c for c in contracts()
                 if c["type"] == "forbidden" and c["source_modules"] == ["flowy.core"]]
    assert len(forbidden) == 1, "pyproject.toml lost the contract that keeps flowy.core pure"
    modules = forbidden[0]["forbidden_modules"]
    assert isinstance(modules, list)
    return frozenset(str(module) for module in modules)


# -- static imports: the import-linter contracts --------------------------------------

def test_the_contracts_are_there() -> None:
    assert sorted(str(c["type"]) for c in contracts()) == [
        "acyclic_siblings", "forbidden", "independence", "layers"]
    assert {"threading", "time", "os", "asyncio", "logging", "boto3",
            "graphviz"} <= core_forbidden_modules()


def test_the_imports_keep_the_contracts() -> None:
    script = Path(sys.executable).with_name("lint-imports")
    command = str(script) if script.exists() else shutil.which("lint-imports")
    assert command is not None, "lint-imports is missing: pip install -e '.[dev]'"
    result = subprocess.run([command, "--no-cache", "--no-logo", str(PYPROJECT)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


# -- (a) purity of flowy.core at run time ------------------------------------------------

def test_there_is_a_core_to_check() -> None:
    assert {p.name for p in CORE_FILES} >= {"__init__.py", "events.py", "workflow.py",
                                            "replay.py", "combinators.py", "spec.py",
                                            "result.py", "errors.py", "codec.py"}


def test_importing_the_core_loads_nothing_impure() -> None:
    """Import every core module alone (flowy/__init__ is skipped) and list what came with it.

    This also catches what the static contract can't see: imports made by the
    core's own third-party dependencies.
    """
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
    assert set(names) <= set(loaded)
    impure = core_forbidden_modules()
    assert [m for m in loaded if m.split(".")[0] in impure] == []
    assert [m for m in loaded if m.startswith("flowy.") and not m.startswith("flowy.core")] == []


# -- (b) optional extras ---------------------------------------------------------------

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
    out = run_python(f"""
        import json, sys
        import flowy
        import flowy.tracing
        unwanted = {sorted(AWS_MODULES | {"graphviz"})!r}
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in unwanted)))
    """)
    assert json.loads(out) == []


def test_the_aws_backend_without_its_extra_says_what_to_install() -> None:
    out = run_python("""
        import sys
        sys.modules["boto3"] = None
        try:
            import flowy.backends.aws
        except ImportError as exc:
            print(exc)
        else:
            print("imported")
    """)
    assert "pip install 'flowy[aws]'" in out


def test_the_cli_loads_aws_only_for_aws_commands() -> None:
    out = run_python("""
        import json, sys
        import flowy.cli.main
        flowy.cli.main._parser()
        aws = {"boto3", "botocore"}
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in aws)))
    """)
    assert json.loads(out) == []
