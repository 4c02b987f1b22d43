"""simstd.encoders as a subpackage: every module imports cheaply (no torch,
no pillow, no hub client), each imports only the layers below it, and the
package re-exports the names callers use."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import simstd.encoders as encoders

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "simstd" / "encoders"

# module -> sibling modules it may import (a layer sees only those below it)
LAYERS = {
    "base": set(),
    "_torch_compat": {"base"},
    "_hub": set(),
    "readers": {"base", "_torch_compat"},
    "open_clip": {"base", "_torch_compat", "_hub", "readers"},
    "__init__": {"base", "_torch_compat", "readers", "open_clip"},
}
HEAVY = ("torch", "torchvision", "open_clip", "PIL", "huggingface_hub", "safetensors")


def test_layers_cover_every_module():
    assert {p.stem for p in PACKAGE.glob("*.py")} == set(LAYERS)


def test_every_submodule_imports_without_the_heavy_stack():
    modules = ", ".join(f"simstd.encoders.{name}" for name in LAYERS if name != "__init__")
    code = (
        f"import sys, {modules}\n"
        f"print(','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=120, check=True,
    )
    assert out.stdout.strip() == ""


def _sibling_imports(path: Path) -> set[str]:
    """Sibling modules ``path`` imports at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # from . import x
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("simstd.encoders."):
            found.add(node.module.split(".")[2])
    return found


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_module_imports_only_lower_layers(name):
    imported = _sibling_imports(PACKAGE / f"{name}.py")
    assert imported <= LAYERS[name], f"{name}.py imports {sorted(imported - LAYERS[name])} from a layer above it"


# where each public name is defined
HOMES = {
    "base": ["CHECKPOINT_SUFFIXES", "IMAGE_EXTENSIONS", "RANDOM_WEIGHTS", "TEST_MODEL", "Encoder",
             "EncoderUnavailableError", "InputDataError", "WeightsUnavailableError"],
    "open_clip": ["OpenClipEncoder", "encoder_for_index", "load_encoder", "save_random_checkpoint"],
    "readers": ["ImageEmbeddings", "LoadedImages", "TextRecords", "encode_image_files", "iter_image_files",
                "load_images", "read_texts"],
}


def test_package_reexports_public_and_test_names():
    import importlib

    assert sorted(encoders.__all__) == sorted(n for names in HOMES.values() for n in names)
    for home, names in HOMES.items():
        module = importlib.import_module(f"simstd.encoders.{home}")
        for name in names:
            assert getattr(encoders, name) is getattr(module, name), name
    from simstd.encoders import _torch_compat, base

    assert encoders.ImageInput == base.ImageInput
    # private names that tests and .ci/install-clip-extra.sh reach through the package
    assert encoders._import_clip_stack is _torch_compat._import_clip_stack
