// zerotrain._C: the C++ engine's bindings. Python code imports torch first
// (zerotrain/__init__.py), so LibTorch and torch_python are loaded before
// this module is.

#include "bindings.h"

#include <torch/csrc/utils/pybind.h>

PYBIND11_MODULE(_C, m) {
  m.doc() = "zerotrain's C++ engine (use the zerotrain package, not this module)";
  zerotrain::python::bind_config(m);
  zerotrain::python::bind_engine(m);
}
