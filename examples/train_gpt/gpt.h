#pragma once
// A GPT-2-style decoder in LibTorch C++: token and position embeddings,
// pre-norm blocks (causal self-attention through scaled_dot_product_attention,
// then a 4x MLP), a final LayerNorm and an output head tied to the token
// embedding. Byte-level: the vocabulary is the 256 byte values.
//
// Shared by examples/train_gpt and benchmarks/e2e.

#include <torch/torch.h>
#include <zerotrain/unit_module.h>

#include <cstdint>
#include <string>
#include <vector>

namespace gpt {

struct GptConfig {
  int64_t vocab_size = 256;
  int64_t context = 128;
  int64_t layers = 4;
  int64_t heads = 4;
  int64_t width = 128;

  /// "layers=4 heads=4 width=128 context=128"
  std::string to_string() const;
  /// A command-line option --layers, --heads, --width or --context; false
  /// (nothing set) for any other key.
  bool set_option(const std::string& key, const std::string& value);
  /// Parameters, counting the tied embedding once.
  int64_t parameter_count() const;
  /// Training FLOPs (forward + backward) per token: 6 x parameters plus the
  /// attention scores, 12 x layers x width x context (PaLM's convention).
  double flops_per_token() const;
};

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit CausalSelfAttentionImpl(const GptConfig& c);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Linear qkv{nullptr}, proj{nullptr};

 private:
  int64_t heads_;
};
TORCH_MODULE(CausalSelfAttention);

class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(const GptConfig& c);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  CausalSelfAttention attn{nullptr};
  torch::nn::Linear fc{nullptr}, fc_out{nullptr};
};
TORCH_MODULE(Block);

class GptImpl : public torch::nn::Module {
 public:
  explicit GptImpl(const GptConfig& c);
  /// tokens: [batch, time] int64, time <= context. Returns logits [batch, time, vocab].
  at::Tensor forward(const at::Tensor& tokens);
  const GptConfig& config() const { return config_; }
  /// GPT-2's initialisation: N(0, 0.02), residual projections scaled by
  /// 1/sqrt(2 x layers), zero biases. Deterministic given torch::manual_seed.
  /// The blocks apply it to themselves as they are built; this covers the rest.
  void reset_parameters();
  /// Weight-decayed (matrices and embeddings) and not (biases, LayerNorm).
  std::vector<at::Tensor> decayed_parameters();
  std::vector<at::Tensor> undecayed_parameters();

  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm ln_f{nullptr};

 private:
  GptConfig config_;
};
TORCH_MODULE(Gpt);

/// Mean cross-entropy of next-byte prediction; logits in float32.
at::Tensor next_token_loss(Gpt& model, const at::Tensor& x, const at::Tensor& y);

/// Samples `count` bytes after `prompt` (temperature, top-k), with its own
/// random stream so every rank draws the same text.
std::string generate(Gpt& model, const std::string& prompt, int64_t count, uint64_t seed,
                     double temperature = 0.8, int64_t top_k = 40);

}  // namespace gpt
