"""The import layering of STYLE.md section 2, pinned by import-linter.

The contracts live in setup.cfg (``[importlinter]`` sections); ``lint-imports``
from the repo root runs the same check.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason='pip install "simstd[test]" (import-linter)')

ROOT = Path(__file__).resolve().parents[1]
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))"


def _lint(package_parent: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([sys.executable, "-c", LINT, str(ROOT / "setup.cfg")], cwd=package_parent,
                          env=env, capture_output=True, text=True, timeout=120)


def test_import_contracts_kept():
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("stats.py", "from . import index", "layers"),
    ("mining.py", "from .storage import lock", "layers"),
    ("engines/numpy.py", "from .. import standardizer", "layers"),
    ("hubness.py", "from .engines import faiss", "concrete engine"),
    ("storage/layout.py", "def _f():\n    from ..index import mixed", "layers"),  # inside a function
    ("uncertainty/model.py", "if TYPE_CHECKING:\n    from ..index import MixedIndex", "layers"),  # typing only
    ("index/shards.py", "from . import search", "facade over components"),
    ("standardizer/method.py", "from . import core", "one backend per method"),
    ("methods/base.py", "from . import registry", "one module per family"),
])
def test_a_statistics_module_importing_upwards_breaks_the_contract(tmp_path, module, line, contract):
    # A copy of the package with one upward import added: the check must fail and name it.
    shutil.copytree(ROOT / "simstd", tmp_path / "simstd", ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / "simstd" / module
    path.write_text(path.read_text() + f"\n{line}  # injected\n")
    out = _lint(tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "BROKEN" in out.stdout and contract in out.stdout
    assert "simstd." + module.removesuffix(".py").replace("/", ".") in out.stdout
