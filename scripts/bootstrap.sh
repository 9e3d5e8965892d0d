#!/usr/bin/env bash
# Installs everything zerotrain needs to build and test. Idempotent: when the
# dependencies are already present it returns in about a second.
#
#   scripts/bootstrap.sh            # prints `export` lines for the environment
#
# Debian packages: compiler tools and header libraries (apt-get, root only,
# skipped when every package is installed). LibTorch: the pinned PyPI `torch`
# wheel in a virtualenv outside the clone, under $ZEROTRAIN_CACHE
# (default ~/.cache/zerotrain), so that repeated CI runs reuse it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${ZEROTRAIN_CACHE:-$HOME/.cache/zerotrain}"
venv="$cache/venv-torch-$ZEROTRAIN_TORCH_VERSION"
log() { echo "[bootstrap] $*" >&2; }

debian_packages=(
  build-essential cmake ninja-build ccache git clang libclang-rt-dev
  nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev libxxhash-dev
  libgtest-dev libgmock-dev pybind11-dev python3-venv
  libgloo-dev openmpi-bin
  zlib1g-dev dataset-fashion-mnist fortunes
)
missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# Python packages besides torch: safetensors and numpy read exported
# checkpoints back in the tests, tensorboard reads the event files, matplotlib
# draws scripts/plot_run.py's curves; pytest runs the Python package's tests and
# scikit-build-core builds it (pip install --no-build-isolation ./python).
python_packages=(numpy safetensors tensorboard matplotlib pytest scikit-build-core)
stamp="$venv/.zerotrain-installed"
if [[ ! -f "$stamp" ]]; then
  log "creating $venv with torch==$ZEROTRAIN_TORCH_VERSION (one-time, a few minutes)"
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q "torch==$ZEROTRAIN_TORCH_VERSION" >&2
  touch "$stamp"
fi
# The stamp lists the extra packages installed; a new one is added in place.
if [[ "$(cat "$stamp")" != "${python_packages[*]}" ]]; then
  log "installing ${python_packages[*]} into $venv"
  "$venv/bin/python" -m pip install -q "${python_packages[@]}" >&2
  echo "${python_packages[*]}" >"$stamp"
fi

torch_prefix="$("$venv/bin/python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
echo "export ZEROTRAIN_VENV='$venv'"
echo "export ZEROTRAIN_PYTHON='$venv/bin/python'"
echo "export ZEROTRAIN_TORCH_PREFIX='$torch_prefix'"
echo "export CCACHE_DIR='${CCACHE_DIR:-$cache/ccache}'"
