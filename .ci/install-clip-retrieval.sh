#!/usr/bin/env bash
# clip-retrieval's own ClipClient and built web front (front/build/ in the wheel),
# for the compatibility tests of `simstd serve` (tests/test_serve_clip_retrieval.py). Installed without its dependencies: the
# wheel's full stack (torch pins, pyspark, flask, ...) is not needed, since
# clip_client.py only needs `requests` (a test extra of simstd).
#
# Caveat: `import clip_retrieval.clip_client` does not work this way, because the
# package's __init__ imports clip_back (flask_restful, ...). The test loads the
# clip_client.py file of the installed wheel by itself; the check below does the
# same, so a wheel whose client grew other imports fails here, loudly.
set -euo pipefail
PY="${PYTHON:-python3}"
CLIP_RETRIEVAL_VERSION="2.45.0"
"$PY" -m pip install --quiet --disable-pip-version-check --no-deps "clip-retrieval==${CLIP_RETRIEVAL_VERSION}"
"$PY" - <<'PYEOF'
import importlib.util
from pathlib import Path

spec = importlib.util.find_spec("clip_retrieval")  # finds the package without running its __init__
path = Path(spec.submodule_search_locations[0]) / "clip_client.py"
mod_spec = importlib.util.spec_from_file_location("clip_client", path)
module = importlib.util.module_from_spec(mod_spec)
mod_spec.loader.exec_module(module)
assert hasattr(module, "ClipClient")
print(f"install-clip-retrieval: ok ({path})")
PYEOF
