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


def _imported_packages(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_no_import_runs_up_or_sideways(package):
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, imported in _imported_packages(path):
            if imported in LAYERS and imported != package and LAYERS[imported] >= LAYERS[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_no_encdec_module_imports_a_framework():
    import encdec

    modules = sorted(m.name for m in pkgutil.walk_packages(encdec.__path__, "encdec."))
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "bad = [m for m in ('torch', 'tensorflow', 'jax', 'flax', 'keras', 'transformers') if m in sys.modules]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_encdec_command_is_the_application():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["encdec"] == "encdec_app.cli:main"
    module, _, name = scripts["encdec"].partition(":")
    result = subprocess.run([sys.executable, "-c", f"import sys; from {module} import {name}; sys.exit({name}(['--help']))"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "demo" in result.stdout and "generate" in result.stdout
