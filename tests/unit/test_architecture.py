"""The package's one-way imports (DESIGN.md), checked by the import-linter contract in
pyproject.toml, so that `make test` alone catches an import of a higher layer."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = "import sys; from importlinter.cli import lint_imports_command; " \
       "sys.exit(lint_imports_command())"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` over the ``actclust`` package found in ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", LINT, "--no-cache", "--no-logo",
                           str(root / "pyproject.toml")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_imports_go_one_way():
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "1 kept, 0 broken" in run.stdout


def copy_package(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "actclust", tmp_path / "actclust",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_a_lazy_import_of_a_higher_layer_breaks_the_contract(tmp_path):
    root = copy_package(tmp_path)
    with open(root / "actclust" / "store" / "format.py", "a") as fh:
        fh.write("\n\ndef _report(store):\n    from ..viz import write_report\n\n"
                 "    return write_report(store)\n")
    run = lint_imports(root)
    assert run.returncode == 1, run.stdout[-4000:] + run.stderr[-2000:]
    assert "actclust.store is not allowed to import actclust.viz" in run.stdout
    assert "actclust.store.format -> actclust.viz" in run.stdout


def test_a_stage_that_imports_the_package_root_breaks_the_contract(tmp_path):
    # The root's lazy map names capture, compare and store: a stage below them that takes
    # __version__ from the root instead of actclust._util reaches up through it.
    root = copy_package(tmp_path)
    with open(root / "actclust" / "data" / "base.py", "a") as fh:
        fh.write("\n\ndef _version():\n    from .. import __version__\n\n"
                 "    return __version__\n")
    run = lint_imports(root)
    assert run.returncode == 1, run.stdout[-4000:] + run.stderr[-2000:]
    assert "actclust.data is not allowed to import actclust.capture" in run.stdout


def test_a_new_module_needs_a_layer(tmp_path):
    root = copy_package(tmp_path)
    (root / "actclust" / "stray.py").write_text('"""A module no layer names."""\n')
    run = lint_imports(root)
    assert run.returncode != 0
    assert "not listed as layers" in run.stdout and "- actclust.stray" in run.stdout
