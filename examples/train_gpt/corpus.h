#pragma once
// The training text: every fortune in Debian's `fortunes` package
// (/usr/share/games/fortunes), as bytes, with every 20th fortune held out for
// validation so both splits cover every topic.

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>

namespace gpt {

struct Corpus {
  at::Tensor train;  // uint8 [n]
  at::Tensor validation;
  int64_t fortunes = 0;
  int64_t files = 0;
};

/// Reads every fortune file in `dir` (the files with a `.dat` index next to
/// them). Throws naming the directory and the package to install.
Corpus load_fortunes(const std::string& dir, int64_t hold_out_every = 20);

/// `batch` windows of `context + 1` bytes at offsets drawn from `seed`:
/// inputs [batch, context] and next-byte targets, int64.
std::pair<at::Tensor, at::Tensor> sample_batch(const at::Tensor& data, int64_t batch, int64_t context,
                                               uint64_t seed);

/// Up to `count` evenly spaced, non-overlapping windows for a fixed validation set.
std::pair<at::Tensor, at::Tensor> fixed_windows(const at::Tensor& data, int64_t count, int64_t context);

/// A seed from several integers (SplitMix64 over each in turn).
uint64_t mix_seed(std::initializer_list<uint64_t> parts);

}  // namespace gpt
