#pragma once
// Units: the module subtrees whose parameters the engine stores, reduces and
// gathers as one (docs/architecture.md, "Units"). Which subtrees become units
// is a WrapPolicy (InitOptions::wrap_policy); a subtree can also be marked
// where it is registered, with zerotrain::Unit (zerotrain/unit_module.h).

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace zerotrain {

/// The moments of a unit's life the ZeRO core acts on. A front end calls the
/// first three: the C++ wrapper zerotrain::Unit, or, in Python, module hooks.
/// The fourth, after backward, the core fires itself from its gradient hooks,
/// when the last of the unit's parameters has its gradient.
class UnitTriggers {
 public:
  virtual ~UnitTriggers() = default;
  virtual void before_forward(int unit) = 0;
  virtual void after_forward(int unit) = 0;
  virtual void before_backward(int unit) = 0;
};

/// Hooks `outputs` (those that require grad) so that
/// triggers->before_backward(unit) runs when autograd reaches them; a dead
/// `triggers` (the engine is gone) makes the hooks do nothing.
void attach_before_backward(const std::weak_ptr<UnitTriggers>& triggers, int unit,
                            const std::vector<at::Tensor>& outputs);

/// What a front end runs when a unit's forward returns, as zerotrain::Unit
/// does: triggers->after_forward(unit), then, under grad mode and outside a
/// checkpoint's recompute (whose unit had its before-backward trigger on
/// entry), attach_before_backward(triggers, unit, outputs).
void leave_unit(const std::shared_ptr<UnitTriggers>& triggers, int unit, const std::vector<at::Tensor>& outputs);

/// Which module subtrees become units. Subtrees marked with zerotrain::Unit
/// are units under every policy; parameters in no unit form the root unit.
struct WrapPolicy {
  enum class Kind {
    /// Subtrees of at most B elements, B = min(zero_optimization.reduce_bucket_size,
    /// max(ceil(trainable elements / 8), 2^20)); subtrees under B / 8 stay with
    /// their parent, and a model within B is one unit.
    kDefault,
    /// Modules whose type name is one of module_types (Hugging Face's
    /// transformer_layer_cls_to_wrap). "gpt::BlockImpl", "BlockImpl", "gpt::Block"
    /// and "Block" all name gpt::BlockImpl; a name that matches no module is an error.
    kModuleTypes,
    /// As kDefault with B = max_unit_numel.
    kSize,
    /// Only the marked subtrees.
    kMarkedOnly,
  };
  Kind kind = Kind::kDefault;
  std::vector<std::string> module_types;
  int64_t max_unit_numel = 0;

  static WrapPolicy by_module_type(std::vector<std::string> type_names);
  static WrapPolicy by_size(int64_t max_unit_numel);
  static WrapPolicy marked_only();
};

/// One unit as the engine built it (Engine::units()).
struct UnitInfo {
  std::string name;                 // the subtree's module path; "root" for the root unit
  std::string module_path;          // the subtree's module path; "" for the root unit
  std::vector<std::string> params;  // its parameters' names, in buffer order
  int64_t numel = 0;                // elements, without padding
  int64_t padded_numel = 0;         // its flat buffer
  bool has_triggers = false;        // marked with zerotrain::Unit, or a described model's unit
};

}  // namespace zerotrain
