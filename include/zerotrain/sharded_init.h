#pragma once
// zerotrain::ShardedInit: building a model larger than one rank (DeepSpeed's
// zero.Init), for ZeRO stage 3.
//
//   auto comm = zerotrain::init_distributed(opts);
//   zerotrain::ShardedInit sharded(comm, config);   // config at stage 3
//   auto model = std::make_shared<Net>();            // marked layers shard as they are built
//   sharded.finish();
//   zerotrain::InitOptions init;
//   init.communicator = comm;
//   init.sharded_init = sharded.parameters();
//   auto engine = zerotrain::initialize(model, config, init);
//
// While the scope is open, each zerotrain::Unit layer, as soon as its
// constructor returns, has its trainable parameters made equal to rank 0's
// (one broadcast per parameter), cast to the model dtype, cut into one even
// piece per rank, and its full storage freed: the rank keeps its piece only.
// So no rank holds more than one layer's full parameters at a time, and
// initialize() builds each unit from the pieces one unit at a time (Note
// [Sharded at creation] in src/engine/sharded_init.cpp). Parameters outside
// marked layers (the root unit) are built whole, as usual.
//
// Between finish() and initialize(), a sharded parameter keeps its shape but
// holds no values: read or change weights after initialize(), in
// Engine::gathered_parameters(). Every rank must build the same model in the
// scope (the broadcasts are collectives). The scope is per thread.

#include <zerotrain/comm.h>
#include <zerotrain/config.h>

#include <memory>

namespace torch::nn {
class Module;
}

namespace zerotrain {

/// The pieces a ShardedInit scope kept, handed to initialize() through
/// InitOptions::sharded_init. Opaque.
class ShardedParameters;

class ShardedInit {
 public:
  /// Opens the scope on this thread. `config` must be resolved and at ZeRO
  /// stage 3 (it gives the model dtype); the world is `comm`'s.
  ShardedInit(std::shared_ptr<Communicator> comm, const Config& config);
  /// Closes the scope if finish() was not called.
  ~ShardedInit();
  ShardedInit(const ShardedInit&) = delete;
  ShardedInit& operator=(const ShardedInit&) = delete;

  /// Closes the scope: layers built afterwards keep their parameters whole.
  void finish();
  /// What initialize() needs (InitOptions::sharded_init).
  std::shared_ptr<ShardedParameters> parameters() const { return params_; }
  /// Parameters sharded so far, and their elements.
  int64_t sharded_count() const;
  int64_t sharded_numel() const;

 private:
  std::shared_ptr<ShardedParameters> params_;
  ShardedInit* outer_ = nullptr;  // the scope open before this one on this thread
  bool open_ = false;
};

namespace detail {
/// Called by every zerotrain::Unit as its constructor ends: shards `layer`'s
/// trainable parameters when a ShardedInit scope is open on this thread.
void shard_if_in_scope(torch::nn::Module& layer);

/// A member of zerotrain::Unit, initialised after the layer is built.
class ShardAtCreation {
 public:
  explicit ShardAtCreation(torch::nn::Module& layer) { shard_if_in_scope(layer); }
  ShardAtCreation(const ShardAtCreation&) {}  // a clone() copies values already sharded or whole
  ShardAtCreation& operator=(const ShardAtCreation&) { return *this; }
};
}  // namespace detail

}  // namespace zerotrain
