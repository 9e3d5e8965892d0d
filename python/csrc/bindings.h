#pragma once
// The pieces of zerotrain._C, one function per concern, called by module.cpp.

#include <pybind11/pybind11.h>

namespace zerotrain::python {

/// ConfigError (a ValueError carrying `source` and `problems`), config
/// resolution and the checks initialize() makes, and the memory estimate.
void bind_config(pybind11::module_& m);

/// The communicator over torch.distributed's group, CommError, the engine on
/// a described model and its methods.
void bind_engine(pybind11::module_& m);

}  // namespace zerotrain::python
