#!/usr/bin/env bash
# Install the optional `clip` extra of simstd (torch + torchvision + open_clip
# + pillow) into the Python that `python3` is, without multi-gigabyte downloads.
#
# Usage:  bash .ci/install-clip-extra.sh        (idempotent: re-running is a no-op
#                                                apart from pip's "already satisfied")
#
# Why these exact pins (measured on a fresh python3 -m venv, 2 cores, x86_64):
#
#   torch==2.13.0        The CPU-only build of 2.13.0 lies on disk
#                        (/opt/wheels/torch-2.13.0+cpu-*.whl, 192 MB). It is
#                        the only torch that installs without downloading CUDA
#                        libraries: any other version/range that pip resolves
#                        to a PyPI release pulls a CUDA build plus nvidia-*
#                        wheels (torch 2.14.1 + torchvision 0.29.1: ~5.5 GB).
#                        `==2.13.0` also matches the local label `2.13.0+cpu`.
#
#   torchvision==0.28.0  The torchvision release built for torch 2.13.0 (it
#                        requires torch==2.13.0, so pip keeps the CPU torch).
#                        Without the pin pip picks 0.29.x, which requires
#                        torch==2.14.1 and replaces the CPU torch with the CUDA
#                        one. Caveat: PyPI's wheel is linked against CUDA torch,
#                        so its compiled ops (_C.so: nms, roi_align, ...) do not
#                        load beside the CPU torch and a plain `import
#                        torchvision` fails with "operator torchvision::nms does
#                        not exist". open_clip only needs the pure-Python
#                        transforms; simstd.encoders imports torchvision through
#                        a small shim (simstd/encoders/_torch_compat.py) that
#                        declares the two missing op schemas
#                        (nms/qnms), after which torchvision imports and its
#                        transforms work (calling torchvision.ops.nms would still
#                        fail: no kernel). A plain `import open_clip` outside
#                        simstd.encoders still fails in this environment.
#
#   open-clip-torch==3.3.0  The release simstd.encoders was written and tested
#                        against (factory/pretrained internals used for error
#                        handling). Pulls timm, huggingface_hub, safetensors,
#                        ftfy, regex, tqdm (all small, pure Python or wheels).
#
#   pillow>=9.1          Image decoding (torchvision needs it anyway); a floor,
#                        not a pin: the installed pillow is kept if recent.
#
# Measured cost on a fresh venv (PIP_NO_CACHE_DIR=1; torch from /opt/wheels,
# ~20 MB of small wheels from the index): ~28-30 s wall time, venv grows from
# 26 MB to 1.1 GB (torch CPU is 754 MB of site-packages). Re-running when all is
# installed: ~7 s.
set -euo pipefail

TORCH_VERSION="2.13.0"
TORCHVISION_VERSION="0.28.0"
OPEN_CLIP_VERSION="3.3.0"
PILLOW_SPEC="pillow>=9.1"
LOCAL_WHEELS="${SIMSTD_TORCH_WHEEL_DIR:-/opt/wheels}"

PY="${PYTHON:-python3}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"

installed_version() {  # prints the installed version of a distribution, or nothing
    "$PY" - "$1" <<'EOF'
import sys
from importlib import metadata
try:
    print(metadata.version(sys.argv[1]))
except metadata.PackageNotFoundError:
    pass
EOF
}

find_links=()
if [[ -d "$LOCAL_WHEELS" ]]; then
    find_links=(--find-links "$LOCAL_WHEELS")
fi

# Guard against the silent multi-GB path: if torch 2.13.0 is not installed yet
# and its CPU wheel is not on disk, pip would fetch the CUDA build from PyPI.
current_torch="$(installed_version torch)"
if [[ "${current_torch%%+*}" != "$TORCH_VERSION" ]]; then
    if ! compgen -G "$LOCAL_WHEELS/torch-${TORCH_VERSION}+cpu-*.whl" >/dev/null; then
        if [[ "${SIMSTD_ALLOW_TORCH_DOWNLOAD:-0}" != "1" ]]; then
            echo "install-clip-extra: no CPU wheel torch-${TORCH_VERSION}+cpu in $LOCAL_WHEELS" >&2
            echo "  and torch ${TORCH_VERSION} is not installed (found: '${current_torch:-none}')." >&2
            echo "  pip would download the multi-GB CUDA build. Set SIMSTD_TORCH_WHEEL_DIR to a" >&2
            echo "  directory holding the CPU wheel, or SIMSTD_ALLOW_TORCH_DOWNLOAD=1 to accept it." >&2
            exit 1
        fi
    fi
fi

# One resolver run with every pin, so pip can never pick a torchvision/open_clip
# combination that upgrades torch behind our back.
"$PY" -m pip install --quiet --disable-pip-version-check "${find_links[@]}" \
    "torch==${TORCH_VERSION}" \
    "torchvision==${TORCHVISION_VERSION}" \
    "open-clip-torch==${OPEN_CLIP_VERSION}" \
    "$PILLOW_SPEC" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

# Smoke test through simstd.encoders' own import path (it carries the
# torchvision shim). Imported from this checkout, so it also works before
# simstd is pip-installed; it needs simstd's core dependencies (numpy, faiss,
# ...), so run this script after installing those.
"$PY" - "$repo" <<'EOF'
import sys

sys.path.insert(0, sys.argv[1])
from simstd import encoders

torch, open_clip = encoders._import_clip_stack()
import torchvision

print(
    f"install-clip-extra: ok (torch {torch.__version__}, torchvision "
    f"{torchvision.__version__}, open_clip {open_clip.__version__})"
)
EOF
