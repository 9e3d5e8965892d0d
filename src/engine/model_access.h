#pragma once
// What the engine needs of the user's model beyond its trainable parameters
// (which the ZeRO core holds): switching train/eval, the buffers and frozen
// parameters checkpoints carry, and every tensor by name for
// save_16bit_model. LibTorch's module is one implementation
// (module_access.cpp); a described model (the Python package's nn.Module) is another.

#include <zerotrain/model_description.h>

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace torch::nn {
class Module;
}

namespace zerotrain::detail {

/// A buffer or frozen parameter, which rank 0 saves whole.
struct ModuleTensor {
  std::string name;
  std::string kind;  // "buffer" or "frozen_parameter"
  at::Tensor tensor;
};

class ModelAccess {
 public:
  virtual ~ModelAccess() = default;
  virtual void train(bool on) = 0;
  /// Frozen parameters, then buffers, by name.
  virtual std::vector<ModuleTensor> module_tensors() const = 0;
  /// Every parameter, then every buffer, by name.
  virtual std::vector<std::pair<std::string, at::Tensor>> state_tensors() const = 0;
  /// The LibTorch module, or null for a model that is not one.
  virtual std::shared_ptr<torch::nn::Module> module() const = 0;
};

/// ModelAccess over a LibTorch module.
std::unique_ptr<ModelAccess> access_module(std::shared_ptr<torch::nn::Module> module);
/// ModelAccess over a described model.
std::unique_ptr<ModelAccess> access_description(ModelDescription model);

}  // namespace zerotrain::detail
