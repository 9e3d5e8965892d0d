#pragma once
// What a ShardedInit scope keeps (include/zerotrain/sharded_init.h) and how
// initialize() takes it. See Note [Sharded at creation] in sharded_init.cpp.

#include <zerotrain/comm.h>
#include <zerotrain/sharded_init.h>

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <memory>
#include <mutex>
#include <unordered_map>

namespace zerotrain {

class ShardedParameters {
 public:
  ShardedParameters(std::shared_ptr<Communicator> comm, at::ScalarType dtype) : comm_(std::move(comm)), dtype_(dtype) {}

  /// Shards `param` (collective: every rank shards the same parameters in
  /// the same order); a no-op for one sharded already.
  void shard(const at::Tensor& param);
  /// Hands `param`'s piece over (the piece is no longer kept here); undefined
  /// when it was not sharded.
  at::Tensor take(const at::Tensor& param);
  /// The parameters sharded and not yet taken.
  std::vector<at::Tensor> untaken() const;

  const Communicator& comm() const noexcept { return *comm_; }
  at::ScalarType dtype() const noexcept { return dtype_; }
  int64_t count() const;
  int64_t numel() const;

 private:
  struct Entry {
    at::Tensor param;  // keeps the key alive
    at::Tensor piece;
  };
  std::shared_ptr<Communicator> comm_;
  at::ScalarType dtype_;
  mutable std::mutex mutex_;
  std::unordered_map<const c10::TensorImpl*, Entry> pieces_;
  int64_t count_ = 0;
  int64_t numel_ = 0;
};

}  // namespace zerotrain
