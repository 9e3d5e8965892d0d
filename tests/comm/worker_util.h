#pragma once
// Checks for code running inside a rank: they print what failed (the harness
// shows a failing rank's output) and count failures for the exit code.

#include <ATen/ATen.h>

#include <iostream>
#include <sstream>
#include <string>

namespace zerotrain::testing {

class RankChecks {
 public:
  explicit RankChecks(int rank) : rank_(rank) {}

  void require(bool ok, const std::string& what) {
    if (ok) return;
    ++failures_;
    std::cerr << "rank " << rank_ << ": FAILED: " << what << std::endl;
  }

  /// Element by element against an fp64 reference: |a - e| <= atol + rtol |e|.
  void elementwise(const at::Tensor& actual, const at::Tensor& expected, double rtol, double atol,
                   const std::string& what) {
    const at::Tensor a = actual.to(at::kDouble).reshape({-1}).contiguous();
    const at::Tensor e = expected.to(at::kDouble).reshape({-1}).contiguous();
    if (a.numel() != e.numel()) {
      require(false, what + ": " + std::to_string(a.numel()) + " elements, expected " +
                         std::to_string(e.numel()));
      return;
    }
    const double* pa = a.data_ptr<double>();
    const double* pe = e.data_ptr<double>();
    for (int64_t i = 0; i < a.numel(); ++i) {
      if (std::abs(pa[i] - pe[i]) <= atol + rtol * std::abs(pe[i])) continue;
      std::ostringstream s;
      s << what << ": element " << i << " of " << a.numel() << " is " << pa[i] << ", expected "
        << pe[i];
      require(false, s.str());
      return;
    }
  }

  int exit_code() const { return failures_ == 0 ? 0 : 1; }
  int failures() const { return failures_; }

 private:
  int rank_;
  int failures_ = 0;
};

/// Relative tolerance of one rounding in `dtype`.
inline double rounding_tolerance(at::ScalarType dtype) {
  switch (dtype) {
    case at::kBFloat16: return 1.0 / 128;
    case at::kHalf: return 1.0 / 1024;
    default: return 1e-6;
  }
}

}  // namespace zerotrain::testing
