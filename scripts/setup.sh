#!/usr/bin/env bash
# Fresh machine -> working install in ./.venv (Debian/Ubuntu, Python >= 3.10).
#  - Debian packages Open3D needs (libusb-1.0-0 libgl1 libgomp1), when missing;
#  - a virtual environment in .venv (or $PAIRGEN_VENV);
#  - PyTorch first, pinned to the CPU wheel (torch==2.13.0, or $PAIRGEN_TORCH),
#    so nothing later resolves the multi-GB CUDA build; skipped when the venv
#    already has a torch (install your CUDA build there first on GPU machines);
#  - the project itself, editable, with the test extra.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${PAIRGEN_VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${PAIRGEN_TORCH:-torch==2.13.0}
SYSTEM_PACKAGES=(libusb-1.0-0 libgl1 libgomp1)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  "$PYTHON" -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
fi
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtual environment $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip setuptools wheel
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing $TORCH_SPEC (CPU wheel)" >&2
  "${PIP[@]}" install "$TORCH_SPEC"
fi
echo "setup: installing pairgen and its dependencies" >&2
"${PIP[@]}" install -e ".[dev]"
"$VENV/bin/python" -c "import open3d, pyarrow, ray, torch, opengl_basisu, renderers.sources" \
  || { echo "setup: the install is incomplete (an import failed above)" >&2; exit 1; }
echo "setup: done; commands are in $VENV/bin (pairgen, pretrain)" >&2
