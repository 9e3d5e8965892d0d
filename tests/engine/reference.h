#pragma once
// The engine's algorithm written out plainly, in one process: the reference
// the parity tests compare the engine against. It shares no code with the
// engine. The N ranks' micro-batches run one after another on one model in
// the model dtype, so each rank's gradients are computed by the same 16-bit
// (or fp32) forward and backward as the engine's rank; they are combined as
// the stage combines them, with the same roundings (to the communication
// dtype, fp32 here, and back to the model dtype); then DeepSpeed's dynamic
// loss scaling, clipping and AdamW (FusedAdam's formula) run in fp64 on fp32
// master weights. So the 16-bit comparisons can be as tight as the fp32 ones.

#include "engine/training.h"

#include <cmath>
#include <map>

namespace zerotrain::testing {

class ReferenceTrainer {
 public:
  /// `config` must use fp32 communication (communication_data_type), AdamW,
  /// no scheduler; `world_size` ranks, each with `micro` samples per micro-batch.
  ReferenceTrainer(ModelKind kind, const Config& config, int world_size, int64_t micro)
      : config_(config), world_(world_size), micro_(micro), model_(make_model(kind)) {
    dtype_ = model_dtype(config);
    model_->to(dtype_);
    for (const auto& [name, t] : unique_parameters(*model_)) {
      master_[name] = t.detach().to(at::kDouble);
      m_[name] = torch::zeros_like(master_[name]);
      v_[name] = torch::zeros_like(master_[name]);
    }
    if (config.fp16().enabled) scale_ = std::pow(2.0, static_cast<double>(config.fp16().initial_scale_power));
  }

  /// One optimizer step over every rank's micro-batches of step `s`.
  void step(const Data& d, int s) {
    torch::NoGradGuard outer;
    const int64_t gas = config_.batch().gradient_accumulation_steps;
    const int stage = config_.zero().stage;
    const double factor = scale_ / static_cast<double>(gas);
    // The model holds the master weights rounded as the engine rounds them (fp32, then the model dtype).
    for (auto& [name, t] : unique_parameters(*model_)) t.copy_(master_[name].to(at::kFloat));
    const double n = world_;
    std::map<std::string, at::Tensor> reduced;  // what the optimizer reads, in the model dtype (as fp64)
    const auto backward = [&](int r, int k) {
      at::Tensor x = rows(d.x[s], r, world_, micro_, k).to(dtype_);
      at::Tensor y = rows(d.y[s], r, world_, micro_, k);
      torch::AutoGradMode on(true);
      (torch::mse_loss(model_->forward(x).to(at::kFloat), y) * factor).backward();
    };
    // A parameter a micro-batch did not use (a skipped unit) has a zero gradient.
    const auto grad_fp32 = [](const at::Tensor& p) {
      return p.grad().defined() ? p.grad().to(at::kFloat).to(at::kDouble) : torch::zeros_like(p, at::kDouble);
    };
    if (stage >= 2) {
      // Every micro-batch is reduced (pre-scaled by 1/N in the fp32 bucket)
      // and added to the model-dtype gradient shard.
      std::map<std::string, at::Tensor> shard;
      for (int64_t k = 0; k < gas; ++k) {
        std::map<std::string, at::Tensor> sum;
        for (int r = 0; r < world_; ++r) {
          model_->zero_grad();
          backward(r, static_cast<int>(k));
          for (const auto& [name, t] : unique_parameters(*model_)) {
            at::Tensor g = grad_fp32(t) * (1.0 / n);
            sum[name] = sum.count(name) ? sum[name] + g : g;
          }
        }
        for (auto& [name, total] : sum) {
          at::Tensor result = total.to(at::kFloat);
          shard[name] = shard.count(name) ? (shard[name].to(at::kFloat) + result).to(dtype_) : result.to(dtype_);
        }
      }
      for (auto& [name, g] : shard) reduced[name] = g.to(at::kDouble);
    } else {
      // Autograd accumulates the micro-batches in .grad (model dtype); the
      // boundary reduces each rank's sum: stage 1 pre-divides by N (ZeRO's
      // reduce-scatter), stage 0 divides after the sum (DeepSpeed's default
      // without prescale_gradients).
      const double pre = stage == 1 ? 1.0 / n : 1.0, post = stage == 1 ? 1.0 : 1.0 / n;
      std::map<std::string, at::Tensor> sum;
      for (int r = 0; r < world_; ++r) {
        model_->zero_grad();
        for (int64_t k = 0; k < gas; ++k) backward(r, static_cast<int>(k));
        for (const auto& [name, t] : unique_parameters(*model_)) {
          at::Tensor g = grad_fp32(t) * pre;
          sum[name] = sum.count(name) ? sum[name] + g : g;
        }
      }
      for (auto& [name, total] : sum) reduced[name] = (total.to(at::kFloat).to(dtype_) * post).to(at::kDouble);
    }

    double norm_sq = 0;
    for (auto& [name, g] : reduced) norm_sq += g.pow(2).sum().item<double>();
    TORCH_CHECK(std::isfinite(norm_sq), "the reference's gradients overflowed; pick other data");
    norm_ = std::sqrt(norm_sq) / scale_;
    const double max_norm = config_.gradients().clipping;
    const double clip = max_norm > 0 ? std::max(1.0, (norm_ + 1e-6) / max_norm) : 1.0;
    clipped_ = clip > 1.0;
    const double inv_scale = static_cast<double>(static_cast<float>(1.0 / (scale_ * clip)));

    // AdamW, FusedAdam's formula, in fp64; the result is kept in fp32 as the engine keeps it.
    const OptimizerConfig& o = *config_.optimizer();
    ++t_;
    const double b1 = o.betas[0], b2 = o.betas[1];
    const double bc1 = 1 - std::pow(b1, static_cast<double>(t_)), bc2 = 1 - std::pow(b2, static_cast<double>(t_));
    for (auto& [name, g_scaled] : reduced) {
      const at::Tensor g = g_scaled * inv_scale;
      at::Tensor& p = master_[name];
      m_[name] = b1 * m_[name] + (1 - b1) * g;
      v_[name] = b2 * v_[name] + (1 - b2) * g * g;
      const at::Tensor denom = v_[name].sqrt() / std::sqrt(bc2) + o.eps;
      p = (p - (o.lr / bc1 * m_[name] / denom + o.lr * o.weight_decay * p)).to(at::kFloat).to(at::kDouble);
    }

    // DeepSpeed's dynamic loss scale without overflows: doubles every window.
    if (config_.fp16().enabled && config_.fp16().dynamic_loss_scale()) {
      const int64_t stable = iteration_;  // iteration - last overflow (-1) - 1
      if (stable > 0 && stable % config_.fp16().loss_scale_window == 0) scale_ *= 2;
      ++iteration_;
    }
  }

  /// The last step's unscaled global norm, before clipping.
  double norm() const { return norm_; }
  bool clipped() const { return clipped_; }
  /// The scale the next step's backward uses.
  double next_loss_scale() const { return scale_; }
  at::ScalarType dtype() const { return dtype_; }
  const at::Tensor& master(const std::string& name) const { return master_.at(name); }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& [name, t] : unique_parameters(*model_)) out.push_back(name);
    return out;
  }

 private:
  Config config_;
  int world_;
  int64_t micro_;
  std::shared_ptr<TestModel> model_;
  at::ScalarType dtype_ = at::kFloat;
  std::map<std::string, at::Tensor> master_, m_, v_;
  double scale_ = 1.0, norm_ = 0;
  bool clipped_ = false;
  int64_t t_ = 0, iteration_ = 0;
};

}  // namespace zerotrain::testing
