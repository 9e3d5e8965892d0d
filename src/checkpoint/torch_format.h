#pragma once
// Writes a flat {name: tensor} state dict in the zip format of torch.save,
// one tensor at a time, so memory stays bounded by the largest tensor. The
// pickle (data.pkl) is written by hand at the end: a dict whose values are
// torch._utils._rebuild_tensor_v2 calls on persistent storages, exactly the
// objects torch.load(weights_only=True) accepts. The zip records go through
// LibTorch's own PyTorchStreamWriter.

#include "checkpoint/file_io.h"

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

namespace caffe2::serialize {
class PyTorchStreamWriter;
}

namespace zerotrain::ckpt {

class TorchStateDictWriter {
 public:
  explicit TorchStateDictWriter(std::string path);
  ~TorchStateDictWriter();
  TorchStateDictWriter(const TorchStateDictWriter&) = delete;
  TorchStateDictWriter& operator=(const TorchStateDictWriter&) = delete;

  /// Writes `t`'s bytes now (a CPU copy is made when needed).
  void add(const std::string& name, const at::Tensor& t);
  /// Writes the pickle and the zip directory, then fsync; returns the file's size.
  uint64_t finish();

 private:
  struct Entry {
    std::string name;
    at::ScalarType dtype;
    std::vector<int64_t> shape;
    int64_t numel;
  };
  OutputFile file_;
  std::unique_ptr<caffe2::serialize::PyTorchStreamWriter> zip_;
  std::vector<Entry> entries_;
};

}  // namespace zerotrain::ckpt
