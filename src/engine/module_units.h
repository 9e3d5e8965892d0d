#pragma once
// From a LibTorch module to what the ZeRO core is given: the trainable
// parameters by name (each tensor once), cut into units by a wrap policy
// (include/zerotrain/units.h), and the zerotrain::Unit wrappers to attach to
// the core's triggers. The only place the engine walks torch::nn::Module; a
// front end without LibTorch modules describes its tree instead.

#include <zerotrain/model_description.h>
#include <zerotrain/unit_module.h>

#include "zero/model_spec.h"

#include <memory>
#include <utility>
#include <vector>

namespace torch::nn {
class Module;
}

namespace zerotrain::detail {

struct ModuleUnits {
  zero::ModelSpec spec;  // params and units; the caller adds the optimizer groups
  /// The marked subtrees' wrappers and their unit index.
  std::vector<std::pair<UnitBoundary*, int>> boundaries;
};

/// Cuts `root`'s trainable parameters into units. A parameter registered in
/// several modules (tied weights) is taken once, under its first name, and
/// belongs to the unit of the modules' nearest common ancestor.
/// `reduce_bucket_size` bounds the default policy's units.
ModuleUnits cut_into_units(torch::nn::Module& root, const WrapPolicy& policy, int64_t reduce_bucket_size);
/// The same on a described tree (the Python package's nn.Module). Every unit,
/// the root unit too, has triggers: the front end hooks each unit's module.
ModuleUnits cut_into_units(const std::vector<ModuleNode>& modules, const WrapPolicy& policy,
                           int64_t reduce_bucket_size);

/// Points every wrapper at `triggers`.
/// Every marked layer's triggers, and its activation checkpointing (the
/// config's options; every layer recomputed when `recompute_all`).
void attach_units(const ModuleUnits& units, const std::weak_ptr<UnitTriggers>& triggers,
                  const checkpointing::CheckpointOptions& options, bool recompute_all);

}  // namespace zerotrain::detail
