// ModelAccess over a LibTorch module (model_access.h).

#include "engine/model_access.h"

#include <torch/nn/module.h>

namespace zerotrain::detail {

namespace {

class LibTorchModule final : public ModelAccess {
 public:
  explicit LibTorchModule(std::shared_ptr<torch::nn::Module> m) : module_(std::move(m)) {}

  void train(bool on) override { module_->train(on); }

  std::vector<ModuleTensor> module_tensors() const override {
    std::vector<ModuleTensor> out;
    for (const auto& item : module_->named_parameters(/*recurse=*/true))
      if (!item.value().requires_grad()) out.push_back({item.key(), "frozen_parameter", item.value()});
    for (const auto& item : module_->named_buffers(/*recurse=*/true))
      if (item.value().defined()) out.push_back({item.key(), "buffer", item.value()});
    return out;
  }

  std::vector<std::pair<std::string, at::Tensor>> state_tensors() const override {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& item : module_->named_parameters(/*recurse=*/true))
      out.emplace_back(item.key(), item.value().detach());
    for (const auto& item : module_->named_buffers(/*recurse=*/true))
      if (item.value().defined()) out.emplace_back(item.key(), item.value());
    return out;
  }

  std::shared_ptr<torch::nn::Module> module() const override { return module_; }

 private:
  std::shared_ptr<torch::nn::Module> module_;
};

}  // namespace

std::unique_ptr<ModelAccess> access_module(std::shared_ptr<torch::nn::Module> module) {
  return std::make_unique<LibTorchModule>(std::move(module));
}

}  // namespace zerotrain::detail
