#pragma once
// The CPU optimizer kernels, compiled once per instruction set. Each
// cpu_kernels_<isa>.cpp includes cpu_kernels_impl.h with its own compiler
// flags and exports one KernelTable; cpu_optim.cpp picks a table at run time
// and splits the work across threads.
//
// Note [Every CPU instruction set gives the same bits]
// The loops are element-wise and every table is compiled with
// -ffp-contract=off (no fused multiply-add contraction), so the scalar, AVX2
// and AVX-512 tables compute the same IEEE operations in the same order and
// produce identical results: sqrt and division are correctly rounded at every
// width. Reductions (sums of squares) use a fixed number of accumulator lanes
// written out in the source, never the vector width, and cpu_optim.cpp sums
// fixed-size blocks in order, so norms do not depend on the instruction set or
// the thread count either. Choosing the fastest table by measurement therefore
// never changes a result, and a resumed run is bitwise identical on another
// machine of the same architecture.

#include "kernels/optim_math.h"

#include <cstdint>

namespace zerotrain::optim::cpu {

using kernels::AdamScalars;
using kernels::DType;
using kernels::LambScalars;

/// One fp32 master buffer and its moments, with the gradient in `grad_dtype`
/// and an optional copy (fp32, bf16 or fp16) of the updated parameters (`param_copy` null
/// when there is none). All pointers index the same elements.
struct AdamArgs {
  float* param;
  float* exp_avg;
  float* exp_avg_sq;
  const void* grad;
  DType grad_dtype;
  void* param_copy;
  DType copy_dtype;
  float inv_scale;  // the gradient is multiplied by it first
  AdamScalars scalars;
};

struct LambPrepareArgs {
  const float* param;
  float* exp_avg;
  float* exp_avg_sq;
  const void* grad;
  DType grad_dtype;
  float* update;
  float inv_scale;
  LambScalars scalars;
};

struct LambApplyArgs {
  float* param;
  const float* update;
  void* param_copy;
  DType copy_dtype;
  float step_size;
};

/// Squared norms of one range, in fp64.
struct SquaredNorms {
  double param = 0.0;
  double update = 0.0;
  SquaredNorms& operator+=(const SquaredNorms& o) {
    param += o.param;
    update += o.update;
    return *this;
  }
};

/// The kernels of one instruction set, each over elements [begin, end).
struct KernelTable {
  const char* name;
  void (*adam)(const AdamArgs& a, int64_t begin, int64_t end);
  SquaredNorms (*lamb_prepare)(const LambPrepareArgs& a, int64_t begin, int64_t end);
  void (*lamb_apply)(const LambApplyArgs& a, int64_t begin, int64_t end);
  /// Sum of x^2 in fp64; inf or nan when any element is.
  double (*sum_squares)(const void* x, DType dtype, int64_t begin, int64_t end);
};

namespace scalar {
extern const KernelTable kTable;
}
#if defined(ZEROTRAIN_CPU_X86_KERNELS)
namespace avx2 {
extern const KernelTable kTable;
}
namespace avx512 {
extern const KernelTable kTable;
}
#endif

}  // namespace zerotrain::optim::cpu
