#pragma once
// A model given by its module tree rather than as a LibTorch module: what the
// Python package builds from a torch.nn.Module, and what any front end whose
// modules are not torch::nn::Module can build. initialize() cuts it into units
// with the same wrap policies (zerotrain/units.h); the front end then calls
// each unit's forward triggers (Engine::unit_triggers()) around the unit's
// module, and attach_before_backward() on its outputs.

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace zerotrain {

struct ModuleNode {
  std::string path;  // "" for the root, else dotted, as named_modules() names it
  /// The names WrapPolicy::by_module_type may use for it, the first one shown
  /// in errors (Python: the class's qualified name, then its bare name).
  std::vector<std::string> type_names;
  int parent = -1;  // index of the parent in ModelDescription::modules; -1 for the root
  /// Parameters registered on this module itself, by attribute name. Those
  /// that require grad are trained; the others are frozen and saved whole.
  std::vector<std::pair<std::string, at::Tensor>> params;
  /// A unit under every policy (DeepSpeed's set_z3_leaf_modules).
  bool marked = false;
};

struct ModelDescription {
  std::vector<ModuleNode> modules;  // pre-order: each after its parent; [0] the root
  /// Switches the model between training and evaluation (nn.Module.train).
  std::function<void(bool)> train;
  /// The model's buffers by name, read when a checkpoint or 16-bit model is saved or loaded.
  std::function<std::vector<std::pair<std::string, at::Tensor>>()> buffers;
};

}  // namespace zerotrain
