#pragma once
// The ATen dtype of a config dtype, for everything that turns a config into tensors.

#include <zerotrain/config.h>

#include <c10/core/ScalarType.h>

namespace zerotrain::precision {

inline at::ScalarType scalar_type(DType d) {
  switch (d) {
    case DType::kFloat16: return at::kHalf;
    case DType::kBFloat16: return at::kBFloat16;
    case DType::kFloat32: return at::kFloat;
  }
  return at::kFloat;
}

}  // namespace zerotrain::precision
