// Top-level DeepSpeed keys that zerotrain knows but does not implement. Each
// is accepted only while it asks for nothing (absent, null, its default, or a
// section that is switched off); otherwise it is an explicit error, never a
// silent ignore.

#include "config/sections.h"

namespace zerotrain::config_detail {
namespace {

struct DisabledSection {
  const char* key;
  const char* what;
};

// Accepted when null, {} or {"enabled": false, ...}.
constexpr DisabledSection kSections[] = {
    {"amp", "apex AMP; use fp16 or bf16"},
    {"torch_autocast", "torch.autocast mixed precision; use fp16 or bf16"},
    {"pipeline", "pipeline parallelism"},
    {"elasticity", "elastic batch sizes"},
    {"flops_profiler", "the FLOPs profiler"},
    {"comms_logger", "the communication logger"},
    {"wandb", "Weights & Biases monitoring"},
    {"comet", "Comet monitoring"},
    {"autotuning", "autotuning"},
    {"compression_training", "compression training"},
    {"quantize_training", "quantization-aware training"},
    {"sparse_attention", "sparse attention"},
    {"progressive_layer_drop", "progressive layer drop"},
    {"curriculum_learning", "curriculum learning"},
    {"data_efficiency", "data efficiency"},
    {"nebula", "Nebula checkpointing"},
    {"datastates_ckpt", "DataStates checkpointing"},
    {"weight_quantization", "weight quantization"},
    {"hybrid_engine", "the hybrid (RLHF) engine"},
    {"compile", "torch.compile / DeepCompile"},
    {"tensor_parallel", "tensor parallelism"},
    {"expert_parallel", "expert parallelism"},
    {"aio", "NVMe asynchronous I/O"},
};

struct ScalarDefault {
  const char* key;
  json value;
  const char* what;
};

const std::vector<ScalarDefault>& scalar_defaults() {
  static const std::vector<ScalarDefault> table = {
      {"memory_breakdown", false, "memory breakdown logging"},
      {"dump_state", false, "dumping engine state at start"},
      {"disable_allgather", false, "disabling the parameter all-gather"},
      {"sparse_gradients", false, "sparse gradients"},
      {"graph_harvesting", false, "CUDA graph harvesting"},
      {"dataloader_drop_last", false, "DeepSpeed's data loader"},
      {"use_data_before_expert_parallelism", false, "expert parallelism"},
      {"managed_gradient_accumulation", true, "unmanaged gradient accumulation"},
      {"seq_parallel_communication_data_type", "fp32", "sequence parallelism"},
      {"gradient_allreduce_op", "mean", "summed (not averaged) gradient reduction"},
      {"sequence_parallel_size", 1, "sequence parallelism"},
      {"data_parallel_size", nullptr, "an explicit data-parallel mesh; all ranks are data-parallel"},
      {"log_level", nullptr, "DeepSpeed's log level"},
      {"timers", json{{"throughput", {{"enabled", true}, {"synchronized", true}}}}, "configurable throughput timers"},
  };
  return table;
}

}  // namespace

void parse_unsupported(ObjectReader& root) {
  ParseContext& ctx = root.ctx();
  for (const DisabledSection& s : kSections) {
    const json* v = root.raw(s.key);
    if (v == nullptr || v->is_null()) continue;
    const bool off = v->is_object() && (v->empty() || (v->contains("enabled") && (*v)["enabled"] == false));
    if (!off) {
      ctx.error(s.key, std::string("not supported by zerotrain (") + s.what +
                           "); remove the section or set \"enabled\": false");
    }
  }
  for (const ScalarDefault& s : scalar_defaults()) {
    if (s.value.is_object()) {
      // Accept any subset of the default object, e.g. {"throughput": {"enabled": true}}.
      const json* v = root.raw(s.key);
      if (v == nullptr || v->is_null()) continue;
      const json merged = [&] {
        json m = s.value;
        if (v->is_object()) m.merge_patch(*v);
        return m;
      }();
      if (!v->is_object() || merged != s.value) {
        ctx.error(s.key, std::string("not supported by zerotrain (") + s.what + "); remove the key or set it to " +
                             s.value.dump());
      }
      continue;
    }
    root.unsupported_unless(s.key, s.value, s.what);
  }
}

}  // namespace zerotrain::config_detail
