// ModelAccess over a LibTorch module and over a described model (model_access.h).

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

// A model described by its module tree (zerotrain/model_description.h); its
// parameters are the description's tensors, its buffers and train mode the
// front end's functions.
class DescribedModel final : public ModelAccess {
 public:
  explicit DescribedModel(ModelDescription d) : d_(std::move(d)) {}

  void train(bool on) override { d_.train(on); }

  std::vector<ModuleTensor> module_tensors() const override {
    std::vector<ModuleTensor> out;
    for (const auto& [name, t] : params())
      if (!t.requires_grad()) out.push_back({name, "frozen_parameter", t});
    for (const auto& [name, t] : d_.buffers())
      if (t.defined()) out.push_back({name, "buffer", t});
    return out;
  }

  std::vector<std::pair<std::string, at::Tensor>> state_tensors() const override {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& [name, t] : params()) out.emplace_back(name, t.detach());
    for (const auto& [name, t] : d_.buffers())
      if (t.defined()) out.emplace_back(name, t);
    return out;
  }

  std::shared_ptr<torch::nn::Module> module() const override { return nullptr; }

 private:
  // Every parameter under its full name, as named_parameters() lists them.
  std::vector<std::pair<std::string, at::Tensor>> params() const {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const ModuleNode& m : d_.modules)
      for (const auto& [name, t] : m.params)
        if (t.defined()) out.emplace_back(m.path.empty() ? name : m.path + "." + name, t);
    return out;
  }

  ModelDescription d_;
};

}  // namespace

std::unique_ptr<ModelAccess> access_description(ModelDescription model) {
  return std::make_unique<DescribedModel>(std::move(model));
}

std::unique_ptr<ModelAccess> access_module(std::shared_ptr<torch::nn::Module> module) {
  return std::make_unique<LibTorchModule>(std::move(module));
}

}  // namespace zerotrain::detail
