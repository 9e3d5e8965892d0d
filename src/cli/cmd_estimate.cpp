// `zerotrain estimate --params N [--world-size W] [--stage S] [--dtype bf16|fp16|fp32]
//                     [--offload-optimizer] [--offload-param] [--largest-unit N] [--prefetch-bucket N]
//                     [--persistent N] [--reuse-distance N] [--max-live N] [--json]`
//
// Per-rank bytes of model states by the ZeRO formulas (include/zerotrain/estimate.h):
// a table for people, JSON for programs. Without --stage, every stage is listed.

#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "zerotrain/estimate.h"

namespace zerotrain::cli {
namespace {

struct EstimateArgs {
  std::string params;
  int64_t world_size = 1;
  std::optional<int> stage;
  std::string dtype = "bf16";
  bool offload_optimizer = false;
  bool offload_param = false;
  // Stage 3's gathered window (counts such as 125M).
  std::string largest_unit = "0";
  std::string prefetch_bucket = "0";
  std::string persistent = "0";
  std::string reuse_distance = "0";
  std::string max_live;
  bool json = false;
};

// "7.5e9", "7500000000", "7.5B", "125M", "350k".
std::optional<int64_t> parse_count(const std::string& text) {
  if (text.empty()) return std::nullopt;
  double scale = 1.0;
  std::string number = text;
  switch (text.back()) {
    case 'k': case 'K': scale = 1e3; number.pop_back(); break;
    case 'm': case 'M': scale = 1e6; number.pop_back(); break;
    case 'b': case 'B': case 'g': case 'G': scale = 1e9; number.pop_back(); break;
    case 't': case 'T': scale = 1e12; number.pop_back(); break;
    default: break;
  }
  try {
    size_t used = 0;
    const double v = std::stod(number, &used) * scale;
    if (used != number.size() || !std::isfinite(v) || v < 1 || v > 9e18) return std::nullopt;
    return static_cast<int64_t>(std::llround(v));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

const char* precision_label(DType d) {
  switch (d) {
    case DType::kFloat32: return "fp32 (params, grads and Adam states in fp32)";
    case DType::kFloat16: return "fp16 mixed precision (fp32 master weights and Adam states)";
    case DType::kBFloat16: return "bf16 mixed precision (fp32 master weights and Adam states)";
  }
  return "?";
}

int run_estimate(const EstimateArgs& args) {
  const auto params = parse_count(args.params);
  if (!params) {
    std::cerr << "zerotrain estimate: --params: expected a positive count such as 7.5e9 or 125M, got \""
              << args.params << "\"\n";
    return kExitInvalid;
  }
  EstimateOptions options;
  options.parameters = *params;
  const struct {
    const char* flag;
    const std::string& text;
    int64_t& out;
  } window[] = {{"--largest-unit", args.largest_unit, options.largest_unit},
                {"--prefetch-bucket", args.prefetch_bucket, options.prefetch_bucket},
                {"--persistent", args.persistent, options.persistent},
                {"--reuse-distance", args.reuse_distance, options.reuse_distance},
                {"--max-live", args.max_live, options.max_live}};
  for (const auto& w : window) {
    if (w.text.empty() || w.text == "0") continue;
    const auto count = parse_count(w.text);
    if (!count) {
      std::cerr << "zerotrain estimate: " << w.flag << ": expected a count such as 5e7 or 125M, got \"" << w.text
                << "\"\n";
      return kExitInvalid;
    }
    w.out = *count;
  }
  options.world_size = args.world_size;
  options.offload_optimizer = args.offload_optimizer;
  options.offload_param = args.offload_param;
  options.dtype = args.dtype == "fp32" ? DType::kFloat32 : args.dtype == "fp16" ? DType::kFloat16 : DType::kBFloat16;

  std::vector<ModelStateBytes> rows;
  try {
    if (args.stage) {
      rows.push_back(estimate_model_states(options, *args.stage));
    } else {
      const int first = args.offload_param ? 3 : args.offload_optimizer ? 1 : 0;
      for (int s = first; s <= 3; ++s) rows.push_back(estimate_model_states(options, s));
    }
  } catch (const std::invalid_argument& e) {
    std::cerr << "zerotrain estimate: " << e.what() << "\n";
    return kExitInvalid;
  }

  if (args.json) {
    nlohmann::json out = {{"parameters", options.parameters},
                          {"world_size", options.world_size},
                          {"dtype", to_string(options.dtype)},
                          {"optimizer", "Adam"},
                          {"offload_optimizer", options.offload_optimizer},
                          {"offload_param", options.offload_param},
                          {"per_rank_bytes", nlohmann::json::array()}};
    for (const auto& r : rows) {
      out["per_rank_bytes"].push_back({{"stage", r.stage},
                                       {"parameters", r.parameters},
                                       {"gathered_parameters", r.gathered_parameters},
                                       {"gradients", r.gradients},
                                       {"optimizer_states", r.optimizer_states},
                                       {"device_total", r.device_total()},
                                       {"host_optimizer_states", r.host_optimizer_states},
                                       {"host_parameters", r.host_parameters},
                                       {"host_buffers", r.host_buffers},
                                       {"host_total", r.host_total()}});
    }
    std::cout << out.dump(2) << "\n";
    return kExitOk;
  }

  std::cout << "Model states per rank: " << options.parameters << " parameters on " << options.world_size
            << (options.world_size == 1 ? " rank" : " ranks") << ", " << precision_label(options.dtype)
            << (options.offload_optimizer ? ", optimizer states offloaded to host memory" : "")
            << (options.offload_param ? ", parameter shard offloaded to host memory" : "") << "\n\n";
  std::printf("%-6s %12s %12s %12s %18s %12s%s\n", "stage", "parameters", "gathered", "gradients",
              "optimizer states", "total", options.offload_optimizer ? "   host (offloaded)" : "");
  for (const auto& r : rows) {
    std::printf("%-6d %12s %12s %12s %18s %12s", r.stage, format_bytes(r.parameters).c_str(),
                format_bytes(r.gathered_parameters).c_str(), format_bytes(r.gradients).c_str(),
                format_bytes(r.optimizer_states).c_str(), format_bytes(r.device_total()).c_str());
    if (options.offload_optimizer) std::printf(" %18s", format_bytes(r.host_total()).c_str());
    std::printf("\n");
  }
  std::cout << "\n\"gathered\": stage 3's full parameters held at one time (persistent units, the largest "
               "unit, the prefetch bucket and the reuse distance; pass --largest-unit, --prefetch-bucket and "
               "--reuse-distance).\n"
               "Activations, communication buffers and allocator fragmentation come on top.\n";
  if (options.offload_optimizer)
    std::cout << "\"host\": optimizer states, an fp32 copy of the owned gradients and a staging copy of the "
                 "owned parameters (with --offload-param: the parameter shard instead).\n";
  return kExitOk;
}

}  // namespace

void add_estimate_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<EstimateArgs>();
  CLI::App* cmd = app.add_subcommand("estimate", "Per-rank memory of parameters, gradients and optimizer states");
  cmd->add_option("--params", args->params, "Number of parameters (7.5e9, 125M, 1.3B)")->required();
  cmd->add_option("--world-size", args->world_size, "Number of data-parallel ranks")->check(CLI::PositiveNumber);
  cmd->add_option("--stage", args->stage, "ZeRO stage (default: show all)")->check(CLI::Range(0, 3));
  cmd->add_option("--dtype", args->dtype, "Training precision")->check(CLI::IsMember({"bf16", "fp16", "fp32"}));
  cmd->add_flag("--offload-optimizer", args->offload_optimizer, "Optimizer states in host memory");
  cmd->add_flag("--offload-param", args->offload_param,
                "Stage 3's parameter shard in host memory (with --offload-optimizer)");
  cmd->add_option("--largest-unit", args->largest_unit, "Stage 3: elements of the largest unit");
  cmd->add_option("--prefetch-bucket", args->prefetch_bucket, "Stage 3: stage3_prefetch_bucket_size");
  cmd->add_option("--persistent", args->persistent, "Stage 3: elements of the persistent units");
  cmd->add_option("--reuse-distance", args->reuse_distance, "Stage 3: stage3_max_reuse_distance (default 0)");
  cmd->add_option("--max-live", args->max_live, "Stage 3: stage3_max_live_parameters");
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->callback([args, &exit_code] { exit_code = run_estimate(*args); });
}

}  // namespace zerotrain::cli
