// zerotrain::ShardedInit (include/zerotrain/sharded_init.h).
//
// Note [Sharded at creation]
// DeepSpeed's zero.Init shards each parameter as its module is built, so that
// a model larger than one rank can be built at all. Here the moment is the end
// of a zerotrain::Unit layer's constructor (a member of UnitImpl is
// initialised after the layer's own constructor ran, reset() included): each
// trainable parameter of the layer not sharded yet is cast to the model dtype,
// broadcast from rank 0 (so every rank starts from rank 0's values, as the
// engine does for a model built whole), cut into one even piece per rank (the
// last zero-padded; zero::piece_numel), and its storage freed in place: the
// tensor keeps its shape and identity, so the module's structure, names and
// ties are untouched. A layer nested in a marked layer shards first; the
// outer one shards what is left. The pieces are per parameter because the
// unit layout (optimizer groups, padding, which ranks own what) is decided in
// initialize(); the core gathers each unit's parameters from the pieces just
// before building that unit's flat buffer, takes its owned part, and releases
// it before the next unit (zero::ShardedModel's constructor), so the peak is
// the shards plus about twice the largest unit.

#include <zerotrain/sharded_init.h>

#include "engine/sharded_params.h"
#include "precision/scalar_type.h"
#include "zero/flat_unit.h"
#include "zero/model_spec.h"

#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>

namespace zerotrain {

namespace {
thread_local ShardedInit* open_scope = nullptr;
}

void ShardedParameters::shard(const at::Tensor& param) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (pieces_.count(param.unsafeGetTensorImpl()) != 0 || param.numel() == 0) return;
  c10::NoGradGuard no_grad;
  const int world = comm_->world_size();
  const int64_t numel = param.numel();
  // In the model dtype; a copy unless the parameter owns a contiguous storage of it.
  const bool owns_storage = param.scalar_type() == dtype_ && param.is_contiguous() &&
                            param.storage_offset() == 0 && param.storage().nbytes() == param.nbytes();
  at::Tensor full = owns_storage ? param.detach()
                                 : param.detach().to(param.options().dtype(dtype_), /*non_blocking=*/false,
                                                     /*copy=*/true, c10::MemoryFormat::Contiguous);
  comm_->broadcast(full, 0).wait();
  const int64_t c = zero::piece_numel(numel, world);
  at::Tensor piece = at::zeros({c}, full.options());
  const int64_t begin = std::min(numel, c * comm_->rank()), end = std::min(numel, begin + c);
  if (end > begin) piece.narrow(0, 0, end - begin).copy_(full.reshape({-1}).narrow(0, begin, end - begin));
  if (!owns_storage) param.set_data(full.view(param.sizes()));
  full = at::Tensor();
  zero::free_storage(param);
  pieces_.emplace(param.unsafeGetTensorImpl(), Entry{param, piece});
  ++count_;
  numel_ += numel;
}

at::Tensor ShardedParameters::take(const at::Tensor& param) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = pieces_.find(param.unsafeGetTensorImpl());
  if (it == pieces_.end()) return at::Tensor();
  at::Tensor piece = std::move(it->second.piece);
  pieces_.erase(it);
  return piece;
}

std::vector<at::Tensor> ShardedParameters::untaken() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<at::Tensor> out;
  for (const auto& [impl, e] : pieces_) out.push_back(e.param);
  return out;
}

int64_t ShardedParameters::count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return count_;
}

int64_t ShardedParameters::numel() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return numel_;
}

ShardedInit::ShardedInit(std::shared_ptr<Communicator> comm, const Config& config) {
  TORCH_CHECK(comm, "zerotrain::ShardedInit: the communicator is null");
  TORCH_CHECK(config.zero().stage == 3, "zerotrain::ShardedInit: ", config.source(),
              ": zero_optimization.stage is ", config.zero().stage,
              "; building a model sharded at creation needs stage 3 (parameters sharded at rest)");
  params_ = std::make_shared<ShardedParameters>(std::move(comm), precision::scalar_type(config.model_dtype()));
  outer_ = open_scope;
  open_scope = this;
  open_ = true;
}

ShardedInit::~ShardedInit() {
  // Without finish() (an exception while building): close without throwing.
  if (open_ && open_scope == this) open_scope = outer_;
}

void ShardedInit::finish() {
  TORCH_CHECK(open_, "zerotrain::ShardedInit: finish() called twice");
  TORCH_CHECK(open_scope == this, "zerotrain::ShardedInit: scopes must close in the reverse order they opened, "
              "on the thread that opened them");
  open_scope = outer_;
  open_ = false;
}

int64_t ShardedInit::sharded_count() const { return params_->count(); }
int64_t ShardedInit::sharded_numel() const { return params_->numel(); }

namespace detail {

void shard_if_in_scope(torch::nn::Module& layer) {
  if (open_scope == nullptr) return;
  ShardedParameters& params = *open_scope->parameters();
  for (const at::Tensor& p : layer.parameters(/*recurse=*/true))
    if (p.requires_grad()) params.shard(p);
}

}  // namespace detail

}  // namespace zerotrain
