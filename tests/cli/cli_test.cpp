// The `zerotrain` tool as a user runs it: exit codes, stdout and stderr.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <zerotrain/config.h>
#include <zerotrain/engine.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

#include "support/paths.h"

namespace zerotrain {
namespace {

using testing::run_command;
using testing::TempFile;

const std::string kCli = testing::cli_path();
const std::string kConfigs = testing::configs_dir();

TEST(CliConfigCheck, ValidFilePrintsResolvedJson) {
  const auto r = run_command(kCli + " config check " + kConfigs + "/zero2_bf16.json --world-size 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["zero_optimization"]["stage"], 2);
  EXPECT_EQ(j["train_batch_size"], 16);  // 8 per rank * 1 step * 2 ranks
  EXPECT_EQ(j["bf16"]["enabled"], true);
  EXPECT_TRUE(r.err.empty()) << r.err;
}

// `config check` accepts what initialize() accepts: every example config
// passes; a config with settings the engine does not run would be reported
// exactly as zerotrain::unsupported_settings() (and so initialize) does.
TEST(CliConfigCheck, AgreesWithInitializeOnEveryExampleConfig) {
  int rejected = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kConfigs)) {
    const std::string file = entry.path().string();
    const auto r = run_command(kCli + " config check --quiet " + file + " --world-size 4");
    ResolveOptions o;
    o.world_size = 4;
    const std::vector<ConfigProblem> unsupported = unsupported_settings(Config::from_file(file, o));
    if (unsupported.empty()) {
      EXPECT_EQ(r.exit_code, 0) << file << ":\n" << r.err;
      continue;
    }
    ++rejected;
    EXPECT_EQ(r.exit_code, 2) << file;
    std::string expected;
    for (const ConfigProblem& p : unsupported) expected += file + ": " + p.path + ": " + p.message + "\n";
    EXPECT_EQ(r.err, expected) << file;
  }
  EXPECT_EQ(rejected, 0) << "every example config in configs/ runs in this version";
}

TEST(CliConfigCheck, TypoIsRejectedWithPathAndSuggestion) {
  TempFile f(R"({"train_batch_size": 8, "zero_optimisation": {"stage": 2}})");
  const auto r = run_command(kCli + " config check " + f.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_EQ(r.err, f.path() + ": zero_optimisation: unknown key; did you mean \"zero_optimization\"?\n");
}

TEST(CliConfigCheck, BatchTripleRejectedWithDeepSpeedReason) {
  TempFile f(R"({"train_batch_size": 30, "train_micro_batch_size_per_gpu": 4})");
  const auto r = run_command(kCli + " config check " + f.path() + " --world-size 2");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(f.path() + ": train_batch_size: Check batch related parameters. train_batch_size is not equal "
                                   "to micro_batch_per_gpu * gradient_acc_step * world_size 30 != 4 * 3 * 2"),
            std::string::npos)
      << r.err;
}

TEST(CliConfigCheck, PrintsOneLinePerProblem) {
  TempFile f(R"({"train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": 7}, "fp16": {"enabled": 1},
                 "pipeline": {"stages": 4}})");
  const auto r = run_command(kCli + " config check " + f.path());
  EXPECT_EQ(r.exit_code, 2);
  size_t lines = 0;
  for (char c : r.err) lines += c == '\n';
  EXPECT_EQ(lines, 3u) << r.err;
  EXPECT_NE(r.err.find(f.path() + ": zero_optimization.stage: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(f.path() + ": fp16.enabled: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(f.path() + ": pipeline: not supported by zerotrain"), std::string::npos) << r.err;
}

TEST(CliConfigCheck, SeveralFilesReportEachAndFailIfAnyFails) {
  TempFile bad(R"({"train_batch_size": "eight"})");
  const auto r = run_command(kCli + " config check " + kConfigs + "/zero1_fp16.json " + bad.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("zero1_fp16.json: ok"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find(bad.path() + ": train_batch_size: expected an integer"), std::string::npos) << r.err;
}

TEST(CliConfigCheck, AutoValuesFromFlags) {
  const auto r = run_command(kCli + " config check " + kConfigs + "/hf_trainer_auto.json --world-size 2"
                                    " --hidden-size 512 --micro-batch-size 4 --gradient-accumulation-steps 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["train_batch_size"], 24);
  EXPECT_EQ(j["zero_optimization"]["reduce_bucket_size"], 512 * 512);
  EXPECT_EQ(j["optimizer"]["params"]["lr"], "auto");  // not given: left for the engine to refuse
  EXPECT_NE(r.err.find("optimizer.params.lr: note: \"auto\" left unresolved"), std::string::npos) << r.err;
}

TEST(CliConfigCheck, WarningsGoToStderr) {
  TempFile f(R"({"train_micro_batch_size_per_gpu": 2, "zero_optimization": true, "optimizer": {"type": "Adam"}})");
  const auto r = run_command(kCli + " config check " + f.path());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("zero_optimization: warning: the boolean form is deprecated"), std::string::npos) << r.err;
}

TEST(CliConfigCheck, MissingFileIsAUsageError) {
  const auto r = run_command(kCli + " config check /nonexistent.json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("/nonexistent.json"), std::string::npos) << r.err;
}

TEST(CliEstimate, ZeroPaperNumbers) {
  const std::string base = kCli + " estimate --params 7.5e9 --world-size 64 --dtype fp16 --stage ";
  const auto s1 = run_command(base + "1");
  ASSERT_EQ(s1.exit_code, 0) << s1.err;
  EXPECT_NE(s1.out.find("31.4 GB"), std::string::npos) << s1.out;
  const auto s2 = run_command(base + "2");
  EXPECT_NE(s2.out.find("16.6 GB"), std::string::npos) << s2.out;
  const auto s3 = run_command(base + "3");
  EXPECT_NE(s3.out.find("1.9 GB"), std::string::npos) << s3.out;
}

TEST(CliEstimate, JsonForPrograms) {
  const auto r = run_command(kCli + " estimate --params 125M --world-size 2 --json --offload-optimizer");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["parameters"], 125'000'000);
  ASSERT_EQ(j["per_rank_bytes"].size(), 3u);  // stages 1-3: offload needs stage >= 1
  const auto& stage2 = j["per_rank_bytes"][1];
  EXPECT_EQ(stage2["stage"], 2);
  EXPECT_EQ(stage2["optimizer_states"], 0);
  EXPECT_EQ(stage2["host_optimizer_states"], 12LL * 62'500'000);
  EXPECT_EQ(stage2["device_total"], 2LL * 125'000'000 + 2LL * 62'500'000);
}

TEST(CliEstimate, Stage3Window) {
  const auto r = run_command(kCli + " estimate --params 1000 --world-size 4 --stage 3 --largest-unit 100 "
                                    "--prefetch-bucket 150 --persistent 30 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["per_rank_bytes"][0]["gathered_parameters"], 2 * 280);
  EXPECT_EQ(run_command(kCli + " estimate --params 1e9 --largest-unit lots").exit_code, 2);
}

TEST(CliEstimate, BadInputExitsTwo) {
  EXPECT_EQ(run_command(kCli + " estimate --params lots").exit_code, 2);
  EXPECT_EQ(run_command(kCli + " estimate --params 1e9 --stage 5").exit_code, 2);
  EXPECT_EQ(run_command(kCli + " estimate --params 1e9 --dtype fp8").exit_code, 2);
  EXPECT_EQ(run_command(kCli + " estimate --params 1e9 --stage 0 --offload-optimizer").exit_code, 2);
  EXPECT_EQ(run_command(kCli + " estimate").exit_code, 2);
  EXPECT_EQ(run_command(kCli).exit_code, 2);
}

TEST(CliHelp, HelpAndVersionExitZero) {
  const auto help = run_command(kCli + " --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("estimate"), std::string::npos);
  const auto version = run_command(kCli + " --version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.out.find("LibTorch"), std::string::npos) << version.out;
}

}  // namespace
}  // namespace zerotrain
