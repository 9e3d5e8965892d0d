#!/usr/bin/env bash
# The Python package as a user installs it, against this build: the build is
# installed to a prefix, `pip install --no-build-isolation ./python` builds
# the extension against it and the torch of PYTHON, and pytest runs
# python/tests.
#
#   install_and_pytest.sh PYTHON BUILD_DIR SOURCE_DIR
set -euo pipefail
python=$1 build=$2 src=$3
prefix="$build/python-prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
launcher=()
command -v ccache >/dev/null && launcher=(-Ccmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache)
"$python" -m pip install -q --no-build-isolation --no-deps "$src/python" \
  -Ccmake.define.CMAKE_PREFIX_PATH="$prefix" -Cbuild-dir="$build/python-build" "${launcher[@]}"
cd "$build"
"$python" -m pytest -q -p no:cacheprovider "$src/python/tests"
