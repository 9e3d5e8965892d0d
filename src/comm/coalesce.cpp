#include "comm/coalesce.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

namespace zerotrain::comm_detail {

PackedLayout PackedLayout::of(const char* what, const std::vector<at::Tensor>& tensors,
                              int chunks) {
  TORCH_CHECK(!tensors.empty(), "zerotrain comm: ", what, ": the tensor list is empty");
  PackedLayout l;
  l.chunks_ = chunks;
  TORCH_CHECK(tensors[0].defined(), "zerotrain comm: ", what, "[0] is undefined");
  l.dtype_ = tensors[0].scalar_type();
  l.device_ = tensors[0].device();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    TORCH_CHECK(t.defined(), "zerotrain comm: ", what, "[", i, "] is undefined");
    TORCH_CHECK(t.is_contiguous(), "zerotrain comm: ", what, "[", i, "] is not contiguous");
    TORCH_CHECK(t.scalar_type() == l.dtype_ && t.device() == l.device_, "zerotrain comm: ", what,
                "[", i, "] is ", t.scalar_type(), " on ", t.device(), ", but [0] is ", l.dtype_,
                " on ", l.device_, ": a coalesced collective takes one dtype and device");
    TORCH_CHECK(t.numel() % chunks == 0, "zerotrain comm: ", what, "[", i, "] has ", t.numel(),
                " elements, not a multiple of the world size ", chunks);
    l.offsets_.push_back(l.total_);
    l.numels_.push_back(t.numel());
    l.total_ += t.numel();
  }
  return l;
}

std::string PackedLayout::describe() const {
  return std::string(c10::toString(dtype_)) + "[" + std::to_string(numels_.size()) + " tensors, " +
         std::to_string(total_) + " elements]";
}

void PackedLayout::check_chunks_of(const PackedLayout& full, const char* what) const {
  TORCH_CHECK(numels_.size() == full.numels_.size(), "zerotrain comm: ", what, ": ",
              numels_.size(), " shards but ", full.numels_.size(), " full tensors");
  TORCH_CHECK(dtype_ == full.dtype_ && device_ == full.device_, "zerotrain comm: ", what,
              ": shards are ", dtype_, " on ", device_, " but full tensors are ", full.dtype_,
              " on ", full.device_);
  for (size_t i = 0; i < numels_.size(); ++i) {
    TORCH_CHECK(numels_[i] * full.chunks_ == full.numels_[i], "zerotrain comm: ", what,
                ": tensor ", i, " has a shard of ", numels_[i], " elements but a full size of ",
                full.numels_[i], " (expected world_size ", full.chunks_, " x shard)");
  }
}

at::Tensor PackedLayout::pack(const std::vector<at::Tensor>& tensors) const {
  std::vector<at::Tensor> flat;
  flat.reserve(tensors.size());
  for (const auto& t : tensors) flat.push_back(t.view({-1}));
  return at::cat(flat);
}

void PackedLayout::unpack(const at::Tensor& flat, const std::vector<at::Tensor>& tensors) const {
  for (size_t i = 0; i < tensors.size(); ++i) {
    tensors[i].view({-1}).copy_(flat.narrow(0, offsets_[i], numels_[i]));
  }
}

at::Tensor PackedLayout::pack_by_rank(const std::vector<at::Tensor>& tensors, int n) const {
  const int64_t per_rank = total_ / n;
  at::Tensor out = at::empty({n, per_rank}, tensors[0].options());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const int64_t chunk = numels_[i] / n;
    out.narrow(1, offsets_[i] / n, chunk).copy_(tensors[i].view({n, chunk}));
  }
  return out.view({-1});
}

void PackedLayout::unpack_by_rank(const at::Tensor& flat, const std::vector<at::Tensor>& tensors,
                                  int n) const {
  const at::Tensor rows = flat.view({n, total_ / n});
  for (size_t i = 0; i < tensors.size(); ++i) {
    const int64_t chunk = numels_[i] / n;
    tensors[i].view({n, chunk}).copy_(rows.narrow(1, offsets_[i] / n, chunk));
  }
}

}  // namespace zerotrain::comm_detail
