// See gpt.h.

#include "gpt.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

namespace gpt {

std::string GptConfig::to_string() const {
  std::ostringstream s;
  s << "layers=" << layers << " heads=" << heads << " width=" << width << " context=" << context;
  return s.str();
}

bool GptConfig::set_option(const std::string& key, const std::string& value) {
  int64_t* field = key == "--layers"    ? &layers
                   : key == "--heads"   ? &heads
                   : key == "--width"   ? &width
                   : key == "--context" ? &context
                                        : nullptr;
  if (field != nullptr) *field = std::stoll(value);
  return field != nullptr;
}

int64_t GptConfig::parameter_count() const {
  const int64_t per_block = 2 * 2 * width                    // two LayerNorms
                            + width * 3 * width + 3 * width  // qkv
                            + width * width + width          // proj
                            + width * 4 * width + 4 * width  // fc
                            + 4 * width * width + width;     // fc_out
  return vocab_size * width + context * width + layers * per_block + 2 * width;
}

double GptConfig::flops_per_token() const {
  return 6.0 * static_cast<double>(parameter_count()) +
         12.0 * static_cast<double>(layers) * static_cast<double>(width) * static_cast<double>(context);
}

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const GptConfig& c) : heads_(c.heads) {
  TORCH_CHECK(c.width % c.heads == 0, "gpt: width ", c.width, " is not a multiple of heads ", c.heads);
  qkv = register_module("qkv", torch::nn::Linear(c.width, 3 * c.width));
  proj = register_module("proj", torch::nn::Linear(c.width, c.width));
}

at::Tensor CausalSelfAttentionImpl::forward(const at::Tensor& x) {
  const int64_t b = x.size(0), t = x.size(1), c = x.size(2);
  // [b, t, 3, heads, head_dim] -> [3, b, heads, t, head_dim]
  const at::Tensor qkv_heads = qkv->forward(x).view({b, t, 3, heads_, c / heads_}).permute({2, 0, 3, 1, 4});
  const at::Tensor y = at::scaled_dot_product_attention(qkv_heads[0], qkv_heads[1], qkv_heads[2], {}, 0.0,
                                                        /*is_causal=*/true);
  return proj->forward(y.transpose(1, 2).reshape({b, t, c}));
}

namespace {

// GPT-2's initialisation of one parameter by its name. torch::nn::init::normal_
// draws what Tensor::normal_ does; called inline, Tensor::normal_'s defaulted
// std::optional<Generator> trips gcc 12's -Wmaybe-uninitialized under ASan.
void init_gpt2(const std::string& name, at::Tensor& p, int64_t layers) {
  if (name.find("ln") != std::string::npos) return;  // LayerNorms keep (1, 0)
  if (name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0) {
    p.zero_();
  } else if (name.find("proj.weight") != std::string::npos || name.find("fc_out.weight") != std::string::npos) {
    torch::nn::init::normal_(p, 0.0, 0.02 / std::sqrt(2.0 * static_cast<double>(layers)));
  } else {
    torch::nn::init::normal_(p, 0.0, 0.02);
  }
}

}  // namespace

BlockImpl::BlockImpl(const GptConfig& c) {
  ln1 = register_module("ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.width})));
  attn = register_module("attn", CausalSelfAttention(c));
  ln2 = register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.width})));
  fc = register_module("fc", torch::nn::Linear(c.width, 4 * c.width));
  fc_out = register_module("fc_out", torch::nn::Linear(4 * c.width, c.width));
  // In the block's own constructor, so that a block built in a
  // zerotrain::ShardedInit scope is initialised before it is sharded.
  torch::NoGradGuard no_grad;
  for (auto& item : named_parameters()) init_gpt2(item.key(), item.value(), c.layers);
}

at::Tensor BlockImpl::forward(const at::Tensor& x) {
  at::Tensor h = x + attn->forward(ln1->forward(x));
  return h + fc_out->forward(torch::gelu(fc->forward(ln2->forward(h)), "tanh"));
}

GptImpl::GptImpl(const GptConfig& c) : config_(c) {
  wte = register_module("wte", torch::nn::Embedding(c.vocab_size, c.width));
  wpe = register_module("wpe", torch::nn::Embedding(c.context, c.width));
  blocks = register_module("blocks", torch::nn::ModuleList());
  // Each block is a ZeRO unit (docs/porting.md, "Units"): its own flat buffer,
  // one reduce-scatter of its gradients, and the engine's triggers around its forward.
  for (int64_t i = 0; i < c.layers; ++i) blocks->push_back(zerotrain::Unit<Block>(c));
  ln_f = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.width})));
  reset_parameters();
}

void GptImpl::reset_parameters() {
  // The blocks initialise themselves (BlockImpl's constructor).
  torch::NoGradGuard no_grad;
  for (auto& item : named_parameters())
    if (item.key().rfind("blocks.", 0) != 0) init_gpt2(item.key(), item.value(), config_.layers);
}

std::vector<at::Tensor> GptImpl::decayed_parameters() {
  std::vector<at::Tensor> out;
  for (const auto& p : parameters())
    if (p.dim() >= 2) out.push_back(p);
  return out;
}

std::vector<at::Tensor> GptImpl::undecayed_parameters() {
  std::vector<at::Tensor> out;
  for (const auto& p : parameters())
    if (p.dim() < 2) out.push_back(p);
  return out;
}

at::Tensor GptImpl::forward(const at::Tensor& tokens) {
  const int64_t t = tokens.size(1);
  TORCH_CHECK(t <= config_.context, "gpt: sequence of ", t, " tokens is longer than the context ",
              config_.context);
  const at::Tensor positions =
      torch::arange(t, torch::TensorOptions().dtype(torch::kLong).device(tokens.device()));
  at::Tensor x = wte->forward(tokens) + wpe->forward(positions);
  for (const auto& block : *blocks) x = block->as<zerotrain::Unit<Block>>()->forward(x);
  x = ln_f->forward(x);
  return torch::nn::functional::linear(x, wte->weight);  // the head shares the token embedding
}

at::Tensor next_token_loss(Gpt& model, const at::Tensor& x, const at::Tensor& y) {
  const at::Tensor logits = model->forward(x).to(torch::kFloat);
  return torch::nn::functional::cross_entropy(logits.view({-1, logits.size(-1)}), y.reshape({-1}));
}

std::string generate(Gpt& model, const std::string& prompt, int64_t count, uint64_t seed, double temperature,
                     int64_t top_k) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  const torch::Device device = model->parameters().front().device();
  std::vector<int64_t> tokens;
  for (unsigned char ch : prompt) tokens.push_back(ch);
  if (tokens.empty()) tokens.push_back('\n');
  std::mt19937_64 rng(seed);
  std::string out;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t start = std::max<int64_t>(0, static_cast<int64_t>(tokens.size()) - model->config().context);
    const at::Tensor window =
        torch::tensor(std::vector<int64_t>(tokens.begin() + start, tokens.end()), torch::kLong)
            .view({1, -1})
            .to(device);
    at::Tensor logits =
        model->forward(window).select(1, -1).squeeze(0).to(torch::kDouble).cpu() / temperature;
    const auto [top_values, top_index] = logits.topk(std::min(top_k, logits.size(0)));
    const at::Tensor probs = torch::softmax(top_values, 0);
    // Inverse-CDF sampling from our own stream: identical on every rank.
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    const double* p = probs.data_ptr<double>();
    int64_t pick = probs.size(0) - 1;
    double cumulative = 0;
    for (int64_t k = 0; k < probs.size(0); ++k) {
      cumulative += p[k];
      if (u < cumulative) {
        pick = k;
        break;
      }
    }
    const int64_t token = top_index[pick].item<int64_t>();
    tokens.push_back(token);
    out.push_back(static_cast<char>(token));
  }
  model->train(was_training);
  return out;
}

}  // namespace gpt
