#pragma once
// Shared by the engine tests: two small models, a deterministic global batch,
// configs built from configs/zero*.json, and the single-process reference
// (LibTorch's own AdamW on the full batch) the engine is compared against.

#include <zerotrain/zerotrain.h>

#include "optim/lr_schedule.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "support/paths.h"

namespace zerotrain::testing {

/// A model whose forward maps [batch, ...] inputs to outputs compared by MSE.
struct TestModel : torch::nn::Module {
  virtual at::Tensor forward(const at::Tensor& x) = 0;
  virtual std::vector<int64_t> input_shape(int64_t batch) const = 0;
  virtual std::vector<int64_t> output_shape(int64_t batch) const = 0;
};

struct Mlp : TestModel {
  torch::nn::Linear l1{nullptr}, l2{nullptr}, l3{nullptr};
  Mlp() {
    l1 = register_module("l1", torch::nn::Linear(6, 16));
    l2 = register_module("l2", torch::nn::Linear(16, 16));
    l3 = register_module("l3", torch::nn::Linear(16, 3));
  }
  at::Tensor forward(const at::Tensor& x) override {
    return l3->forward(torch::tanh(l2->forward(torch::tanh(l1->forward(x)))));
  }
  std::vector<int64_t> input_shape(int64_t b) const override { return {b, 6}; }
  std::vector<int64_t> output_shape(int64_t b) const override { return {b, 3}; }
};

/// Pre-norm transformer block: attention with 2 heads, then a GELU MLP.
struct TransformerBlock : TestModel {
  static constexpr int64_t kTokens = 5, kDim = 8, kHeads = 2;
  torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  torch::nn::Linear qkv{nullptr}, proj{nullptr}, fc1{nullptr}, fc2{nullptr};
  TransformerBlock() {
    ln1 = register_module("ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({kDim})));
    // No qkv bias: the key bias has an exactly zero gradient (softmax ignores a
    // shift shared by all keys), so Adam would amplify rounding noise there.
    qkv = register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(kDim, 3 * kDim).bias(false)));
    proj = register_module("proj", torch::nn::Linear(kDim, kDim));
    ln2 = register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({kDim})));
    fc1 = register_module("fc1", torch::nn::Linear(kDim, 4 * kDim));
    fc2 = register_module("fc2", torch::nn::Linear(4 * kDim, kDim));
  }
  at::Tensor forward(const at::Tensor& x) override {
    const int64_t b = x.size(0), hd = kDim / kHeads;
    auto parts = qkv->forward(ln1->forward(x)).view({b, kTokens, 3, kHeads, hd}).permute({2, 0, 3, 1, 4});
    at::Tensor att = torch::softmax(parts[0].matmul(parts[1].transpose(-2, -1)) / std::sqrt(double(hd)), -1);
    at::Tensor y = att.matmul(parts[2]).transpose(1, 2).reshape({b, kTokens, kDim});
    at::Tensor h = x + proj->forward(y);
    return h + fc2->forward(torch::gelu(fc1->forward(ln2->forward(h))));
  }
  std::vector<int64_t> input_shape(int64_t b) const override { return {b, kTokens, kDim}; }
  std::vector<int64_t> output_shape(int64_t b) const override { return {b, kTokens, kDim}; }
};

/// Odd sizes everywhere (7 -> 13 -> 11 -> 5), so that every unit needs
/// padding for alignment and for equal shards.
struct OddMlp : TestModel {
  torch::nn::Linear l1{nullptr}, l2{nullptr}, l3{nullptr};
  OddMlp() {
    l1 = register_module("l1", torch::nn::Linear(7, 13));
    l2 = register_module("l2", torch::nn::Linear(13, 11));
    l3 = register_module("l3", torch::nn::Linear(11, 5));
  }
  at::Tensor forward(const at::Tensor& x) override {
    return l3->forward(torch::tanh(l2->forward(torch::tanh(l1->forward(x)))));
  }
  std::vector<int64_t> input_shape(int64_t b) const override { return {b, 7}; }
  std::vector<int64_t> output_shape(int64_t b) const override { return {b, 5}; }
};

/// OddMlp with every layer marked as a unit (zerotrain::Unit), so that stage
/// 3 gathers and releases each one around its forward and backward.
struct MarkedOddMlp : TestModel {
  zerotrain::Unit<torch::nn::Linear> l1{nullptr}, l2{nullptr}, l3{nullptr};
  MarkedOddMlp() {
    l1 = register_module("l1", zerotrain::Unit<torch::nn::Linear>(7, 13));
    l2 = register_module("l2", zerotrain::Unit<torch::nn::Linear>(13, 11));
    l3 = register_module("l3", zerotrain::Unit<torch::nn::Linear>(11, 5));
  }
  at::Tensor forward(const at::Tensor& x) override {
    return l3->forward(torch::tanh(l2->forward(torch::tanh(l1->forward(x)))));
  }
  std::vector<int64_t> input_shape(int64_t b) const override { return {b, 7}; }
  std::vector<int64_t> output_shape(int64_t b) const override { return {b, 5}; }
};

/// A linear layer whose weight is given (a tied weight), with a bias of its own.
struct SharedLinearImpl : torch::nn::Module {
  at::Tensor weight, bias;
  explicit SharedLinearImpl(const at::Tensor& shared_weight) {
    weight = register_parameter("weight", shared_weight);
    bias = register_parameter("bias", torch::zeros({shared_weight.size(0)}));
  }
  at::Tensor forward(const at::Tensor& x) { return torch::nn::functional::linear(x, weight, bias); }
};
TORCH_MODULE(SharedLinear);

/// Marked layers 7 -> 9 -> 9 -> 9 -> 5 where the two 9 x 9 layers (two
/// units) share one weight, registered in both as tied embeddings are: the
/// weight gets the gradients of both uses and is one parameter to the
/// optimizer.
struct TiedMarkedMlp : TestModel {
  zerotrain::Unit<torch::nn::Linear> l1{nullptr}, l2{nullptr}, l4{nullptr};
  zerotrain::Unit<SharedLinear> l3{nullptr};
  TiedMarkedMlp() {
    l1 = register_module("l1", zerotrain::Unit<torch::nn::Linear>(7, 9));
    l2 = register_module("l2", zerotrain::Unit<torch::nn::Linear>(9, 9));
    l3 = register_module("l3", zerotrain::Unit<SharedLinear>(l2->weight));
    l4 = register_module("l4", zerotrain::Unit<torch::nn::Linear>(9, 5));
  }
  at::Tensor forward(const at::Tensor& x) override {
    const at::Tensor h = torch::tanh(l2->forward(torch::tanh(l1->forward(x))));
    return l4->forward(torch::tanh(l3->forward(h)));
  }
  std::vector<int64_t> input_shape(int64_t b) const override { return {b, 7}; }
  std::vector<int64_t> output_shape(int64_t b) const override { return {b, 5}; }
};

/// MarkedOddMlp whose middle layer runs only when the micro-batch's first
/// input is positive: data-dependent control flow, so the layer's unit is
/// skipped on some micro-batches, some steps and some ranks and not others.
struct SkippingMarkedMlp : TestModel {
  zerotrain::Unit<torch::nn::Linear> l1{nullptr}, l2{nullptr}, l3{nullptr};
  SkippingMarkedMlp() {
    l1 = register_module("l1", zerotrain::Unit<torch::nn::Linear>(7, 13));
    l2 = register_module("l2", zerotrain::Unit<torch::nn::Linear>(13, 13));
    l3 = register_module("l3", zerotrain::Unit<torch::nn::Linear>(13, 5));
  }
  static bool runs_middle(const at::Tensor& x) { return x.index({0, 0}).item<double>() > 0; }
  at::Tensor forward(const at::Tensor& x) override {
    at::Tensor h = torch::tanh(l1->forward(x));
    if (runs_middle(x)) h = torch::tanh(l2->forward(h));
    return l3->forward(h);
  }
  std::vector<int64_t> input_shape(int64_t b) const override { return {b, 7}; }
  std::vector<int64_t> output_shape(int64_t b) const override { return {b, 5}; }
};

enum class ModelKind { kMlp, kTransformer, kOddMlp, kMarkedOddMlp, kTiedMarkedMlp, kSkippingMarkedMlp };
inline const char* to_string(ModelKind k) {
  switch (k) {
    case ModelKind::kMlp: return "mlp";
    case ModelKind::kTransformer: return "transformer";
    case ModelKind::kOddMlp: return "odd-mlp";
    case ModelKind::kMarkedOddMlp: return "marked-odd-mlp";
    case ModelKind::kTiedMarkedMlp: return "tied-marked-mlp";
    case ModelKind::kSkippingMarkedMlp: return "skipping-marked-mlp";
  }
  return "?";
}

/// A module's parameters by name, each tensor once under its first name (as
/// the engine takes them; LibTorch's named_parameters lists a tied weight
/// under every name).
inline std::vector<std::pair<std::string, at::Tensor>> unique_parameters(const torch::nn::Module& m) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : m.named_parameters()) {
    const bool seen = std::any_of(out.begin(), out.end(), [&](const auto& p) { return p.second.is_same(item.value()); });
    if (!seen) out.emplace_back(item.key(), item.value());
  }
  return out;
}

/// The same initial weights on every call and every rank.
inline std::shared_ptr<TestModel> make_model(ModelKind kind, uint64_t seed = 7) {
  torch::manual_seed(seed);
  switch (kind) {
    case ModelKind::kMlp: return std::make_shared<Mlp>();
    case ModelKind::kTransformer: return std::make_shared<TransformerBlock>();
    case ModelKind::kOddMlp: return std::make_shared<OddMlp>();
    case ModelKind::kMarkedOddMlp: return std::make_shared<MarkedOddMlp>();
    case ModelKind::kTiedMarkedMlp: return std::make_shared<TiedMarkedMlp>();
    case ModelKind::kSkippingMarkedMlp: return std::make_shared<SkippingMarkedMlp>();
  }
  return nullptr;
}

/// Inputs and targets of every step: [steps][global batch, ...], identical on all ranks.
struct Data {
  std::vector<at::Tensor> x, y;
};
inline Data make_data(const TestModel& m, int steps, int64_t global_batch, uint64_t seed = 11) {
  torch::manual_seed(seed);
  Data d;
  for (int s = 0; s < steps; ++s) {
    d.x.push_back(torch::randn(m.input_shape(global_batch)));
    d.y.push_back(torch::randn(m.output_shape(global_batch)));
  }
  return d;
}

inline nlohmann::json load_config_json(const std::string& name) {
  std::ifstream in(testing::config_path(name));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return nlohmann::json::parse(text, nullptr, true, /*ignore_comments=*/true);
}

/// configs/zero<stage>_<dtype>.json with the batch, lr and clipping of a test
/// and no scheduler; `edit` may change anything else.
inline Config test_config(int stage, const std::string& dtype, int64_t micro, int64_t gas,
                          double clipping,
                          const std::function<void(nlohmann::json&)>& edit = nullptr) {
  nlohmann::json j = load_config_json("zero" + std::to_string(stage) + "_" + dtype + ".json");
  j.erase("scheduler");
  j.erase("train_batch_size");
  j.erase("steps_per_print");
  j["train_micro_batch_size_per_gpu"] = micro;
  j["gradient_accumulation_steps"] = gas;
  j["gradient_clipping"] = clipping;
  j["optimizer"]["params"]["lr"] = 2e-3;
  j["zero_optimization"]["reduce_bucket_size"] = 300;  // several units per model
  if (stage < 3) j["zero_optimization"]["allgather_bucket_size"] = 700;  // stage 3 gathers unit by unit
  if (dtype == "fp16") j["fp16"]["initial_scale_power"] = 10;
  // Stage 3: the test models' units are far below the default persistence
  // threshold; with 0 every marked unit is gathered and released.
  if (stage == 3) j["zero_optimization"]["stage3_param_persistence_threshold"] = 0;
  if (edit) edit(j);
  return Config::from_json(j);
}

inline at::ScalarType model_dtype(const Config& c) {
  switch (c.model_dtype()) {
    case DType::kFloat16: return at::kHalf;
    case DType::kBFloat16: return at::kBFloat16;
    default: return at::kFloat;
  }
}

/// The lr the config's schedule sets at last_batch_iteration t (DeepSpeed's formulas,
/// checked against hand-worked values in tests/optim/lr_schedule_test.cpp).
inline double schedule_lr(const Config& c, int64_t t) {
  return optim::schedule_at(*c.scheduler(), c.optimizer()->lr, t).lr;
}

/// A communicator of one rank, inside or outside a multi-rank job (an
/// explicit layout ignores the launcher's variables). `backend`: "" or "nccl".
inline std::shared_ptr<Communicator> one_rank_communicator(const std::string& backend = "") {
  DistributedOptions d;
  d.rank = 0;
  d.world_size = 1;
  d.backend = backend;
  return init_distributed(d);
}

/// The rows of micro-batch `micro_index` of `rank` in a global batch.
inline at::Tensor rows(const at::Tensor& t, int rank, int world, int64_t micro, int micro_index) {
  return t.narrow(0, (static_cast<int64_t>(micro_index) * world + rank) * micro, micro);
}

/// One optimizer step of the engine over this rank's micro-batches of `step`.
/// `loss_factor` multiplies the loss (to inject inf).
inline void engine_step(Engine& e, TestModel& m, const Data& d, int step, int64_t micro,
                        double loss_factor = 1.0) {
  const int64_t gas = e.config().batch().gradient_accumulation_steps;
  const at::ScalarType dt = model_dtype(e.config());
  const c10::Device device = m.parameters().front().device();
  for (int k = 0; k < gas; ++k) {
    at::Tensor x = rows(d.x[step], e.rank(), e.world_size(), micro, k).to(device, dt);
    at::Tensor y = rows(d.y[step], e.rank(), e.world_size(), micro, k).to(device);
    at::Tensor loss = torch::mse_loss(m.forward(x).to(at::kFloat), y);
    if (loss_factor != 1.0) loss = loss * loss_factor;
    e.backward(loss);
    e.step();
  }
}

/// The reference: LibTorch's AdamW on the full global batch, with
/// clip_grad_norm_ when `clipping` > 0. Returns the pre-clip norm of each step;
/// steps in `skip` are not applied (as an overflowing step is not).
inline std::vector<double> reference_train(TestModel& m, const Config& c, const Data& d, int steps,
                                           const std::vector<int>& skip = {}) {
  const OptimizerConfig& o = *c.optimizer();
  std::vector<at::Tensor> params;
  for (const auto& [name, t] : unique_parameters(m)) params.push_back(t);
  torch::optim::AdamW opt(params, torch::optim::AdamWOptions(o.lr)
                                              .betas({o.betas[0], o.betas[1]})
                                              .eps(o.eps)
                                              .weight_decay(o.weight_decay));
  std::vector<double> norms;
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    torch::mse_loss(m.forward(d.x[s]), d.y[s]).backward();
    // A parameter that got no gradient (a skipped layer) has a zero one, as
    // in DeepSpeed: Adam still decays its moments and applies weight decay.
    for (at::Tensor& p : params)
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    const double clip = c.gradients().clipping;
    norms.push_back(torch::nn::utils::clip_grad_norm_(params, clip > 0 ? clip : 1e30));
    if (std::find(skip.begin(), skip.end(), s) == skip.end()) opt.step();
  }
  return norms;
}

}  // namespace zerotrain::testing
