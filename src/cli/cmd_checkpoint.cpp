// `zerotrain checkpoint inspect DIR [--tag T] [--no-verify] [--json]`
// `zerotrain checkpoint export DIR --out FILE [--tag T] [--dtype fp32|bf16|fp16]
//                              [--format safetensors|torch]`
//
// Offline readers of a checkpoint directory (include/zerotrain/checkpoint.h).
// inspect exits 1 when a file fails verification; both exit 2 on bad input.

#include <iostream>
#include <memory>
#include <string>

#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "monitor/resources.h"  // proc_status_bytes
#include "zerotrain/checkpoint.h"

namespace zerotrain::cli {
namespace {

constexpr int kExitVerificationFailed = 1;

struct InspectArgs {
  std::string dir;
  std::string tag;
  bool no_verify = false;
  bool json = false;
};

struct ExportArgs {
  std::string dir;
  std::string tag;
  std::string out;
  std::string dtype = "fp32";
  std::string format;  // default: from the file name
};

int run_inspect(const InspectArgs& a) {
  const CheckpointInfo info = inspect_checkpoint(a.dir, a.tag, !a.no_verify);
  if (a.json) {
    nlohmann::json j = {{"dir", info.dir},
                        {"tags", info.tags},
                        {"latest", info.latest},
                        {"tag", info.tag},
                        {"format_version", info.format_version},
                        {"world_size", info.world_size},
                        {"zero_stage", info.zero_stage},
                        {"model_dtype", info.model_dtype},
                        {"optimizer", info.optimizer},
                        {"global_steps", info.global_steps},
                        {"skipped_steps", info.skipped_steps},
                        {"num_parameters", info.num_parameters},
                        {"total_bytes", info.total_bytes},
                        {"verified", info.verified},
                        {"files", nlohmann::json::array()}};
    for (const auto& f : info.files)
      j["files"].push_back({{"name", f.name}, {"bytes", f.bytes}, {"ok", f.ok}, {"problem", f.problem}});
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << info.to_string();
  }
  return info.all_ok() ? kExitOk : kExitVerificationFailed;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

int run_export(const ExportArgs& a) {
  ExportOptions o;
  o.tag = a.tag;
  o.dtype = a.dtype == "bf16" ? DType::kBFloat16 : a.dtype == "fp16" ? DType::kFloat16 : DType::kFloat32;
  const std::string format = !a.format.empty() ? a.format : ends_with(a.out, ".safetensors") ? "safetensors" : "torch";
  o.format = format == "torch" ? ExportFormat::kTorch : ExportFormat::kSafetensors;
  const int64_t resident_before = monitor::proc_status_bytes("VmRSS");
  const ExportReport r = export_checkpoint(a.dir, a.out, o);
  std::cout << "wrote " << r.path << ": " << r.tensors << " tensors, " << r.bytes << " bytes (" << format
            << ", " << a.dtype << "); largest tensor in memory: " << r.largest_tensor_bytes << " bytes\n"
            << "memory: resident " << resident_before << " bytes before the export, peak "
            << monitor::proc_status_bytes("VmHWM") << " bytes\n";
  return kExitOk;
}

}  // namespace

void add_checkpoint_command(CLI::App& app, int& exit_code) {
  CLI::App* cmd = app.add_subcommand("checkpoint", "Inspect, verify and export training checkpoints");
  cmd->require_subcommand(1);

  auto in = std::make_shared<InspectArgs>();
  CLI::App* inspect = cmd->add_subcommand("inspect", "Tags, world size, stage, step, sizes and checksums");
  inspect->add_option("dir", in->dir, "Checkpoint directory (the one holding 'latest')")->required();
  inspect->add_option("--tag", in->tag, "Tag to inspect (default: the latest)");
  inspect->add_flag("--no-verify", in->no_verify, "Skip reading the files to check their checksums");
  inspect->add_flag("--json", in->json, "Print JSON");
  inspect->callback([in, &exit_code] { exit_code = run_inspect(*in); });

  auto ex = std::make_shared<ExportArgs>();
  CLI::App* exp = cmd->add_subcommand(
      "export", "Consolidated full weights under the model's parameter names (one tensor in memory at a time)");
  exp->add_option("dir", ex->dir, "Checkpoint directory")->required();
  exp->add_option("--out", ex->out, "Output file")->required();
  exp->add_option("--tag", ex->tag, "Tag to export (default: the latest)");
  exp->add_option("--dtype", ex->dtype, "Parameter dtype")->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  exp->add_option("--format", ex->format, "safetensors or torch (default: from the file name; "
                                          "'.safetensors' is safetensors, anything else torch)")
      ->check(CLI::IsMember({"safetensors", "torch"}));
  exp->callback([ex, &exit_code] { exit_code = run_export(*ex); });
}

}  // namespace zerotrain::cli
