// See Note [One reduction for the norm and the overflow flag] in shard_optimizer.h
// and Note [LAMB on shards needs whole-parameter norms] in optim/reference_step.h.

#include "zero/shard_optimizer.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <ATen/record_function.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <future>

namespace zerotrain::zero {

at::Tensor global_grad_norm_sq(const OwnedState& owned, const ModelLayout& layout, Communicator& comm) {
  RECORD_FUNCTION("zerotrain::grad_norm", std::vector<c10::IValue>());
  std::vector<at::Tensor> grads;
  for (size_t u = 0; u < layout.units().size(); ++u) grads.push_back(owned.owned_grads(static_cast<int>(u)));
  TORCH_INTERNAL_ASSERT(!grads.empty());
  at::Tensor sum = optim::multi_tensor_sum_squares(grads).sum().reshape({1});
  if (layout.sharded()) comm.all_reduce(sum, ReduceOp::kSum).wait();  // NCCL: waits on the stream, not the host
  return sum;
}

namespace {

// `values` on `device` without a host wait: on a GPU through pinned memory
// and a non-blocking copy (a copy from pageable memory blocks the host).
at::Tensor long_tensor_on(const std::vector<int64_t>& values, c10::Device device) {
  if (device.is_cpu()) return at::tensor(values, at::kLong);
  at::Tensor pinned = at::empty({static_cast<int64_t>(values.size())},
                                at::TensorOptions().dtype(at::kLong).pinned_memory(true));
  std::copy(values.begin(), values.end(), pinned.data_ptr<int64_t>());
  return pinned.to(device, /*non_blocking=*/true);
}

// Note [Copy each tile back while the next computes]
// With optimizer offload the update writes rounded parameters into the host
// staging buffer (Note [Offload keeps the step on the host] in owned_state.h).
// Each tile's copy back into the owned parameters runs on a copy thread while
// the CPU kernels compute the next tile; a tile waits only for the copy before
// it, so at most one copy is in flight and a staging tile is never rewritten
// while it is read. Offloaded Adam runs in tiles of at most kOffloadTileNumel
// elements (and of sub_group_size): the update is elementwise, so tiling does
// not change a bit of it.
constexpr int64_t kOffloadTileNumel = int64_t{1} << 22;

struct PublishPiece {
  int unit;
  int64_t begin;
  int64_t numel;
};

class TilePublisher {
 public:
  explicit TilePublisher(OwnedState& owned) : owned_(owned) {}
  TilePublisher(const TilePublisher&) = delete;
  TilePublisher& operator=(const TilePublisher&) = delete;
  ~TilePublisher() {
    if (pending_.valid()) pending_.wait();  // an exception already unwinding wins
  }
  void publish(std::vector<PublishPiece> pieces) {
    wait();
    pending_ = std::async(std::launch::async, [this, pieces = std::move(pieces)] {
      RECORD_FUNCTION("zerotrain::offload_copy_back", std::vector<c10::IValue>());
      c10::NoGradGuard no_grad;
      for (const PublishPiece& p : pieces) owned_.publish(p.unit, p.begin, p.numel);
    });
  }
  void wait() {
    if (pending_.valid()) pending_.get();  // rethrows the copy's error
  }

 private:
  OwnedState& owned_;
  std::future<void> pending_;
};

/// The step's control where the optimizer state lives (host memory when offloaded).
optim::StepControl control_on(const optim::StepControl& c, const c10::Device& device) {
  return {c.inv_scale.to(device), c.overflow.to(device)};  // the same tensors when already there
}

void lamb_update(OwnedState& owned, const ModelLayout& layout, const std::vector<OptimizerGroup>& groups,
                 const std::function<optim::StepHyperParams(int)>& hyper, int64_t step,
                 const optim::StepControl& control, Communicator& comm) {
  // Note [LAMB on shards needs whole-parameter norms]: one "tensor" per owned
  // segment of a parameter; the segments' squared norms are summed per
  // parameter (and across ranks: one all-reduce for every group) between the
  // two stages, on the device.
  std::vector<int> group_of(static_cast<size_t>(layout.num_params()), -1);
  for (size_t g = 0; g < groups.size(); ++g)
    for (int p : groups[g].params) group_of[static_cast<size_t>(p)] = static_cast<int>(g);
  std::vector<optim::LambTensors> tensors(groups.size());
  std::vector<std::vector<int64_t>> segment_param(groups.size());
  const bool copy = !owned.master_aliases_params();
  for (size_t u = 0; u < layout.units().size(); ++u) {
    const int ui = static_cast<int>(u);
    const at::Tensor master = owned.master(ui);
    const at::Tensor grads = owned.step_grads(ui);
    const at::Tensor update = at::empty_like(master);
    const at::Tensor params = owned.step_param_copies(ui);
    const optim::Moments m = owned.moments(ui);
    for (const Segment& s : layout.owned_segments(ui, owned.rank())) {
      const int param = layout.unit(ui).params[static_cast<size_t>(s.param)];
      const size_t g = static_cast<size_t>(group_of[static_cast<size_t>(param)]);
      auto piece = [&](const at::Tensor& x) { return x.narrow(0, s.shard_offset, s.numel); };
      optim::LambTensors& t = tensors[g];
      t.params.push_back(piece(master));
      t.grads.push_back(piece(grads));
      t.exp_avg.push_back(piece(m.exp_avg));
      t.exp_avg_sq.push_back(piece(m.exp_avg_sq));
      t.updates.push_back(piece(update));
      if (copy) t.param_copies.push_back(piece(params));
      segment_param[g].push_back(param);
    }
  }
  const c10::Device device = owned.optimizer_device();
  at::Tensor per_param = at::zeros({layout.num_params(), 2}, at::TensorOptions().dtype(at::kDouble).device(device));
  std::vector<at::Tensor> index(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    if (tensors[g].params.empty()) continue;
    index[g] = long_tensor_on(segment_param[g], device);
    per_param.index_add_(0, index[g], optim::fused_lamb_prepare(tensors[g], hyper(static_cast<int>(g)), control));
  }
  if (layout.sharded()) {
    // On the communicator's device (the model's), also when the state is offloaded.
    at::Tensor on_model = per_param.to(owned.owned_grads(0).device());
    comm.all_reduce(on_model, ReduceOp::kSum).wait();
    if (!on_model.is_same(per_param)) per_param.copy_(on_model);
  }
  for (size_t g = 0; g < groups.size(); ++g)
    if (!tensors[g].params.empty())
      optim::fused_lamb_apply(tensors[g], per_param.index_select(0, index[g]), hyper(static_cast<int>(g)), step,
                              control);
  // LAMB's second stage needs every norm first, so its copy back is not tiled.
  if (owned.stages_params())
    for (size_t u = 0; u < layout.units().size(); ++u)
      owned.publish(static_cast<int>(u), 0, layout.unit(static_cast<int>(u)).owned_numel);
}

}  // namespace

void update(OwnedState& owned, const ModelLayout& layout, const std::vector<OptimizerGroup>& groups,
            OptimizerKind kind, const std::function<optim::StepHyperParams(int)>& hyper, int64_t step,
            const optim::StepControl& control, Communicator& comm, int64_t sub_group_numel) {
  TORCH_CHECK(sub_group_numel >= 1, "zerotrain: zero_optimization.sub_group_size must be at least 1, got ",
              sub_group_numel);
  RECORD_FUNCTION("zerotrain::optimizer_step", std::vector<c10::IValue>());
  c10::NoGradGuard no_grad;
  const optim::StepControl c = control_on(control, owned.optimizer_device());
  if (kind == OptimizerKind::kLamb) return lamb_update(owned, layout, groups, hyper, step, c, comm);
  // One fused pass per group over its runs: unscale and clip, Adam on the fp32
  // master, and the rounded copy into the owned parameters (or the staging
  // buffer, copied back tile by tile: Note [Copy each tile back while the
  // next computes]).
  const bool copy = !owned.master_aliases_params();
  const bool staged = owned.stages_params();  // a copy thread only with a staging buffer
  const int64_t tile = owned.offloads_optimizer() ? std::min(sub_group_numel, kOffloadTileNumel) : sub_group_numel;
  TilePublisher publisher(owned);
  for (size_t g = 0; g < groups.size(); ++g) {
    const optim::StepHyperParams h = hyper(static_cast<int>(g));
    optim::AdamTensors t;
    std::vector<PublishPiece> pieces;
    int64_t filled = 0;
    const auto flush = [&] {
      if (!t.params.empty()) optim::fused_adam(t, h, step, c);
      if (!pieces.empty()) publisher.publish(std::move(pieces));
      t = {};
      pieces = {};
      filled = 0;
    };
    for (const OwnedRun& r : groups[g].runs) {
      const optim::Moments m = owned.moments(r.unit);
      for (int64_t begin = 0; begin < r.numel;) {
        const int64_t n = std::min(r.numel - begin, tile - filled);
        auto piece = [&](const at::Tensor& x) { return x.narrow(0, r.begin + begin, n); };
        t.params.push_back(piece(owned.master(r.unit)));
        t.grads.push_back(piece(owned.step_grads(r.unit)));
        t.exp_avg.push_back(piece(m.exp_avg));
        t.exp_avg_sq.push_back(piece(m.exp_avg_sq));
        if (copy) t.param_copies.push_back(piece(owned.step_param_copies(r.unit)));
        if (staged) pieces.push_back({r.unit, r.begin + begin, n});
        begin += n;
        filled += n;
        if (filled == tile) flush();
      }
    }
    flush();
  }
  publisher.wait();
}

void gather_units(std::vector<FlatUnit>& units, const std::vector<int>& unit_ids, OwnedState& owned,
                  Communicator& comm, int64_t bucket_numel, const GatherEvents& events) {
  RECORD_FUNCTION("zerotrain::gather_params", std::vector<c10::IValue>());
  struct Issued {
    std::vector<int> units;
    CommHandle handle;
  };
  std::vector<Issued> issued;
  size_t k = 0;
  while (k < unit_ids.size()) {
    Issued run;
    std::vector<at::Tensor> outs, ins;
    int64_t total = 0;
    do {
      const int u = unit_ids[k];
      FlatUnit& unit = units[static_cast<size_t>(u)];
      total += unit.layout().flat.padded_numel();
      unit.begin_gather();
      outs.push_back(unit.flat_params());
      ins.push_back(owned.gather_input(u));
      run.units.push_back(u);
      ++k;
    } while (k < unit_ids.size() &&
             total + units[static_cast<size_t>(unit_ids[k])].layout().flat.padded_numel() <= bucket_numel);
    run.handle = outs.size() == 1 ? comm.all_gather(outs[0], ins[0]) : comm.all_gather_coalesced(outs, ins);
    if (events)
      for (int u : run.units) events(EngineEvent::Kind::kGatherLaunched, u);
    issued.push_back(std::move(run));
  }
  for (Issued& run : issued) {
    run.handle.wait();
    for (int u : run.units) {
      units[static_cast<size_t>(u)].end_gather();
      if (events) events(EngineEvent::Kind::kGatherDone, u);
    }
  }
}

}  // namespace zerotrain::zero
