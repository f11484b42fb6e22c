"""The packages' layers: ``encdec`` at the bottom, imports no framework; the three frameworks on it;
``conversion`` above them; the application (``encdec_app``, the ``encdec`` command) on top."""

import ast
import pathlib
import pkgutil
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Package -> layer. A module imports its own package and lower layers only (lazily too): the
# frameworks do not import each other, and nothing imports the application.
LAYERS = {"encdec": 0, "encdec_pt": 1, "encdec_tf": 1, "encdec_flax": 1, "conversion": 2, "encdec_app": 3}
# The one upward import allowed (DESIGN.md): `from encdec import pipeline`, a lazy re-export in a
# module `__getattr__` of encdec/__init__.py. (path, imported module) pairs, nothing else.
EXEMPT = {("encdec/__init__.py", "encdec_app.pipeline")}


def _imported_modules(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_no_import_runs_up_or_sideways(package):
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for line, module in _imported_modules(path):
            imported = module.split(".")[0]
            if (imported in LAYERS and imported != package and LAYERS[imported] >= LAYERS[package]
                    and (relative, module) not in EXEMPT):
                wrong.append(f"{relative}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_no_encdec_module_imports_a_framework():
    import encdec

    modules = sorted(m.name for m in pkgutil.walk_packages(encdec.__path__, "encdec."))
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "bad = [m for m in ('torch', 'tensorflow', 'jax', 'flax', 'keras', 'transformers') if m in sys.modules]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_one_upward_import_is_lazy():
    """`from encdec import pipeline` works, and importing encdec does not import the application."""
    code = ("import sys, encdec\nassert 'encdec_app' not in sys.modules, 'import encdec imported the application'\n"
            "from encdec import pipeline\nfrom encdec_app.pipeline import pipeline as app_pipeline\n"
            "assert pipeline is app_pipeline\n"
            "bad = [m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules]\nassert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
    for path, module in EXEMPT:  # the exemption is used, and only inside a function (lazily)
        tree = ast.parse((ROOT / path).read_text())
        top_level = {getattr(node, "module", None) for node in tree.body if isinstance(node, ast.ImportFrom)}
        assert module not in top_level, f"{path} imports {module} at module level"
        assert module in {m for _, m in _imported_modules(ROOT / path)}, f"unused exemption {path}: {module}"


def test_the_encdec_command_is_the_application():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["encdec"] == "encdec_app.cli:main"
    module, _, name = scripts["encdec"].partition(":")
    result = subprocess.run([sys.executable, "-c", f"import sys; from {module} import {name}; sys.exit({name}(['--help']))"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "demo" in result.stdout and "generate" in result.stdout
