// `optimizer`: Adam, AdamW and Lamb with DeepSpeed's parameters and defaults
// (FusedAdam, FusedLamb, and engine.py _configure_basic_optimizer).

#include <string>

#include "config/sections.h"
#include "config/suggest.h"

namespace zerotrain::config_detail {
namespace {

// DeepSpeed optimizer names zerotrain does not implement.
constexpr const char* kUnsupportedTypes[] = {"adagrad", "onebitadam", "zerooneadam", "onebitlamb", "muadam",
                                             "muadamw",  "musgd",      "lion",        "muon"};

std::array<double, 2> read_betas(ObjectReader& params, std::array<double, 2> fallback) {
  const json* v = params.value_for("betas");
  if (v == nullptr) return fallback;
  const std::string path = params.path_of("betas");
  if (!v->is_array() || v->size() != 2) {
    params.ctx().error(path, "expected an array of two numbers [beta1, beta2], got " + describe(*v));
    return fallback;
  }
  std::array<double, 2> betas = fallback;
  for (size_t i = 0; i < 2; ++i) {
    const json& b = (*v)[i];
    if (!b.is_number()) {
      params.ctx().error(index_path(path, i), "expected a number, got " + describe(b));
      continue;
    }
    const double x = b.get<double>();
    if (auto bad = Bounds::half_open(0.0, 1.0).violation(x)) {
      params.ctx().error(index_path(path, i), *bad + ", got " + format_number(x));
      continue;
    }
    betas[i] = x;
  }
  return betas;
}

}  // namespace

void parse_optimizer(ObjectReader& root, Sections& out) {
  ObjectReader opt = root.child("optimizer");
  if (!opt.present()) return;
  ParseContext& ctx = root.ctx();
  opt.unsupported_unless("legacy_fusion", false, "the legacy fused optimizer path");

  const json* type = opt.raw("type");
  if (type == nullptr || !type->is_string()) {
    ctx.error(opt.path_of("type"), type == nullptr ? "missing; expected \"Adam\", \"AdamW\" or \"Lamb\""
                                                   : "expected \"Adam\", \"AdamW\" or \"Lamb\", got " + describe(*type));
    opt.declare("params");
    return;
  }
  const std::string name = lower(type->get<std::string>());
  OptimizerConfig c;
  if (name == "adam") {
    c.kind = OptimizerKind::kAdam;
  } else if (name == "adamw") {
    c.kind = OptimizerKind::kAdamW;
  } else if (name == "lamb") {
    c.kind = OptimizerKind::kLamb;
  } else {
    bool known = false;
    for (const char* t : kUnsupportedTypes) known = known || name == t;
    std::string message = known ? "optimizer \"" + type->get<std::string>() + "\" is not supported by zerotrain"
                                : "unknown optimizer type \"" + type->get<std::string>() + "\"";
    message += "; supported: \"Adam\", \"AdamW\", \"Lamb\"";
    if (!known) {
      if (auto near = closest_match(name, {"adam", "adamw", "lamb"})) message += " (did you mean \"" + *near + "\"?)";
    }
    ctx.error(opt.path_of("type"), message);
    opt.declare("params");
    return;
  }

  ObjectReader p = opt.child("params");
  c.lr = p.get_double("lr", 1e-3, Bounds::at_least(0.0));
  c.betas = read_betas(p, c.betas);
  c.eps = p.get_double("eps", 1e-8, Bounds::at_least(0.0));
  c.weight_decay = p.get_double("weight_decay", 0.0, Bounds::at_least(0.0));
  c.bias_correction = p.get_bool("bias_correction", true);
  if (p.has("max_grad_norm")) {
    ctx.error(p.path_of("max_grad_norm"),
              "not accepted in optimizer params (DeepSpeed rejects it too); use the top-level \"gradient_clipping\"");
  }
  p.unsupported_unless("amsgrad", false, "AMSGrad; DeepSpeed's fused optimizers reject it too");

  if (c.kind == OptimizerKind::kLamb) {
    c.lamb.max_coeff = p.get_double("max_coeff", 10.0, Bounds::greater_than(0.0));
    c.lamb.min_coeff = p.get_double("min_coeff", 0.01, Bounds::at_least(0.0));
    c.lamb.eps_inside_sqrt = p.get_bool("eps_inside_sqrt", false);
    if (c.lamb.min_coeff > c.lamb.max_coeff) {
      ctx.error(p.path_of("min_coeff"), "must not exceed max_coeff (" + format_number(c.lamb.max_coeff) +
                                            "), got " + format_number(c.lamb.min_coeff));
    }
  } else {
    // "Adam" means AdamW unless adam_w_mode is false; "AdamW" is always decoupled.
    const bool adam_w_mode = p.get_bool("adam_w_mode", true);
    c.weight_decay_mode = (c.kind == OptimizerKind::kAdamW || adam_w_mode) ? WeightDecayMode::kDecoupled
                                                                           : WeightDecayMode::kL2;
    c.torch_adam = p.get_bool("torch_adam", false);
    p.unsupported_unless("set_grad_none", true, "keeping zeroed gradients instead of freeing them");
  }
  out.optimizer = c;
}

}  // namespace zerotrain::config_detail
