#pragma once
// Packing many tensors into one flat buffer for a coalesced collective.

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace zerotrain::comm_detail {

/// The sizes and offsets of a list of tensors of one dtype and device, laid out
/// back to back. With `chunks` = N > 1 each tensor holds N equal chunks (one per
/// rank), and the *_by_rank forms interleave them so that rank r's chunks of
/// every tensor are contiguous: row r of an [N, total/N] buffer.
class PackedLayout {
 public:
  /// Checks the list (non-empty, defined, contiguous, one dtype and device, each
  /// size a multiple of `chunks`); `what` prefixes the error messages.
  static PackedLayout of(const char* what, const std::vector<at::Tensor>& tensors, int chunks);

  int64_t total() const noexcept { return total_; }
  /// "float32[3 tensors, 1234 elements]"
  std::string describe() const;
  /// Checks that `full` holds chunks() x this layout, tensor by tensor.
  void check_chunks_of(const PackedLayout& full, const char* what) const;

  at::Tensor pack(const std::vector<at::Tensor>& tensors) const;
  void unpack(const at::Tensor& flat, const std::vector<at::Tensor>& tensors) const;
  at::Tensor pack_by_rank(const std::vector<at::Tensor>& tensors, int n) const;
  void unpack_by_rank(const at::Tensor& flat, const std::vector<at::Tensor>& tensors, int n) const;

 private:
  std::vector<int64_t> numels_;
  std::vector<int64_t> offsets_;
  int64_t total_ = 0;
  int chunks_ = 1;
  at::ScalarType dtype_ = at::kFloat;
  at::Device device_ = at::kCPU;
};

}  // namespace zerotrain::comm_detail
