#pragma once
// What the ZeRO core is given about a model: its trainable parameters by name,
// the units they are cut into, and the optimizer groups. A front end builds
// it: src/engine/module_units.cpp from a LibTorch module, the Python package
// from an nn.Module. Nothing in src/zero knows either kind of module.
//
// Note [The unit is a module subtree]
// A unit holds the trainable parameters of one module subtree, less the
// subtrees that are units of their own; the parameters left over form the
// root unit. A unit is what moves as one: it has a flat buffer of its own (so
// that stage 3 can free and re-materialise it without touching its
// neighbours), one reduce-scatter of its gradients and one all-gather of its
// parameters. Because units follow the model's structure rather than bucket
// sizes, a unit's backward ends when its module's backward ends, and its
// gradients can be reduced and dropped right then (Note [Stage 2 never holds
// the full gradient] in grad_reducer.h). Units are independent of optimizer
// groups: one unit may hold parameters of several groups, each keeping its
// own lr and weight decay (Note [Optimizer groups run over units] in
// model_layout.h). Which subtrees become units is the wrap policy's choice
// (include/zerotrain/units.h).

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace zerotrain::zero {

struct NamedParameter {
  std::string name;  // as named_parameters() names it; checkpoints use it
  at::Tensor tensor;
  /// Stage 3, when the front end sharded the parameter as it was created
  /// (Note [Sharded at creation] in src/engine/sharded_init.cpp): this rank's
  /// piece of its values, piece_numel(numel, world) elements, and `tensor`
  /// holds no storage. Undefined when `tensor` holds the values.
  at::Tensor piece;
};

/// A parameter sharded at creation is cut into `world` even pieces of its
/// flattened values, the last zero-padded: rank r holds [r*c, (r+1)*c).
inline int64_t piece_numel(int64_t numel, int world) { return (numel + world - 1) / world; }

struct UnitSpec {
  std::string name;         // the subtree's module path; "" for the root unit
  std::vector<int> params;  // indices into ModelSpec::params
  /// A front end calls this unit's forward triggers (a C++ zerotrain::Unit
  /// wrapper, or Python module hooks).
  bool has_triggers = false;
};

struct OptimizerGroupSpec {
  double lr = 1e-3;
  double weight_decay = 0.0;
  std::vector<int> params;  // indices into ModelSpec::params
};

struct ModelSpec {
  std::vector<NamedParameter> params;      // trainable, registration order, each tensor once
  std::vector<UnitSpec> units;             // every parameter in exactly one
  std::vector<OptimizerGroupSpec> groups;  // every parameter in exactly one

  /// Checks that units and groups each partition the parameters and that
  /// every parameter has the first one's dtype and device; errors name the
  /// parameter.
  void validate() const;
  /// For each parameter, the index of its unit (or group).
  std::vector<int> unit_of_param() const;
  std::vector<int> group_of_param() const;
};

/// "root" for the root unit, else the module path.
std::string display_name(const UnitSpec& unit);

}  // namespace zerotrain::zero
