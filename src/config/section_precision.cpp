// `fp16`, `bf16` (legacy `bfloat16`) and `data_types` (runtime/precision_config.py).

#include "config/sections.h"

namespace zerotrain::config_detail {

void parse_precision(ObjectReader& root, Sections& out) {
  ParseContext& ctx = root.ctx();
  {
    ObjectReader r = root.child("fp16");
    Fp16Config& c = out.fp16;
    c.enabled = r.get_bool("enabled", false);
    c.loss_scale = r.get_double("loss_scale", 0.0, Bounds::at_least(0.0));
    c.initial_scale_power = r.get_int("initial_scale_power", 16, Bounds::closed(0, 64));
    c.consecutive_hysteresis = r.get_bool("consecutive_hysteresis", false);
    // DeepSpeed checks these only for dynamic scaling with fp16 enabled.
    const bool dynamic = c.enabled && c.loss_scale == 0.0;
    c.loss_scale_window = r.get_int("loss_scale_window", 1000, dynamic ? Bounds::greater_than(0) : Bounds::any());
    c.hysteresis = r.get_int("hysteresis", 2, dynamic ? Bounds::at_least(1) : Bounds::any());
    c.min_loss_scale = r.get_double("min_loss_scale", 1.0, dynamic ? Bounds::greater_than(0) : Bounds::any());
    c.min_loss_scale_action = r.get_enum("min_loss_scale_action", MinLossScaleAction::kRaise,
                                         {{"raise", MinLossScaleAction::kRaise}, {"skip", MinLossScaleAction::kSkip}});
    r.unsupported_unless("auto_cast", false, "casting forward inputs to fp16; cast them in your forward");
    r.unsupported_unless("fp16_master_weights_and_grads", false, "fp16 master weights; master weights are fp32");
  }
  {
    // DeepSpeed reads "bf16", and the legacy "bfloat16" when "bf16" is absent or null.
    const json* bf16 = root.raw("bf16");
    const json* legacy = root.raw("bfloat16");
    const bool use_legacy = (bf16 == nullptr || bf16->is_null()) && legacy != nullptr && !legacy->is_null();
    if (!use_legacy && legacy != nullptr && !legacy->is_null()) {
      ctx.error("bfloat16", "\"bfloat16\" is the legacy name of \"bf16\"; give only \"bf16\"");
    }
    if (use_legacy) ctx.warn("bfloat16", "deprecated name; use \"bf16\"");
    out.bf16_key = use_legacy ? "bfloat16" : "bf16";
    ObjectReader r = root.child(out.bf16_key);
    out.bf16.enabled = r.get_bool("enabled", false);
    out.bf16.check_grad_overflow = r.get_bool("check_grad_overflow", true);
    r.unsupported_unless("immediate_grad_update", false, "applying gradients during backward");
    r.unsupported_unless("bf16_master_weights_and_grads", false, "bf16 master weights; master weights are fp32");
    r.unsupported_unless("bf16_optimizer_states", false, "bf16 optimizer states; states are fp32");
  }
  {
    ObjectReader r = root.child("data_types");
    r.unsupported_unless("grad_accum_dtype", nullptr, "a gradient accumulation dtype other than the model's");
    r.unsupported_unless("buffer_dtype", nullptr, "a separate dtype for module buffers");
    const json* param_dtype = r.raw("param_dtype");
    if (param_dtype != nullptr && !param_dtype->is_null()) {
      const std::string model = to_string(out.model_dtype());
      if (!param_dtype->is_string() || lower(param_dtype->get<std::string>()) != model) {
        ctx.error(r.path_of("param_dtype"), "must match the model dtype set by fp16/bf16 (\"" + model + "\"), got " +
                                                describe(*param_dtype));
      }
    }
  }
}

void parse_gradients(ObjectReader& root, Sections& out) {
  GradientConfig& g = out.gradients;
  g.clipping = root.get_double("gradient_clipping", 1.0, Bounds::at_least(0.0));
  g.predivide_factor = root.get_double("gradient_predivide_factor", 1.0, Bounds::greater_than(0.0));
  g.prescale = root.get_bool("prescale_gradients", false);
  // DeepSpeed's None follows fp16, then bf16, then fp32.
  g.communication_dtype = out.model_dtype();
  const json* v = root.raw("communication_data_type");
  out.communication_dtype_given = v != nullptr && !v->is_null();
  if (out.communication_dtype_given) {
    g.communication_dtype = root.get_enum(
        "communication_data_type", out.model_dtype(),
        {{"fp32", DType::kFloat32}, {"fp16", DType::kFloat16}, {"bf16", DType::kBFloat16}},
        /*case_insensitive=*/true);
  }
}

}  // namespace zerotrain::config_detail
