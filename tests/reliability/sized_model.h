// The two-layer model of the reliability tests, with a hidden width to vary:
// ranks (misuse_test.cpp) or checkpoints (bad_files_test.cpp) that disagree
// about the model differ only in `hidden`.
#pragma once

#include "engine/training.h"

namespace zerotrain::testing {

struct Sized : TestModel {
  torch::nn::Linear l1{nullptr}, l2{nullptr};
  explicit Sized(int64_t hidden) {
    l1 = register_module("l1", torch::nn::Linear(6, hidden));
    l2 = register_module("l2", torch::nn::Linear(hidden, 3));
  }
  at::Tensor forward(const at::Tensor& x) override { return l2->forward(torch::tanh(l1->forward(x))); }
  std::vector<int64_t> input_shape(int64_t b) const override { return {b, 6}; }
  std::vector<int64_t> output_shape(int64_t b) const override { return {b, 3}; }
};

}  // namespace zerotrain::testing
