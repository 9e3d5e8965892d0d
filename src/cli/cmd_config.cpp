// `zerotrain config check FILE... [--world-size N] [--hidden-size H] ...`
//
// One file: prints the resolved config as JSON on success. Several files:
// prints "FILE: ok" for each valid one. Every problem of every file is printed
// as `FILE: <json.path>: <message>` on stderr, and the exit status is 2 if any
// file is invalid. A config is valid when zerotrain::initialize would accept
// it: what parses but the engine does not run yet (zerotrain::unsupported_settings)
// is a problem here too.

#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "zerotrain/config.h"
#include "zerotrain/engine.h"

namespace zerotrain::cli {
namespace {

struct CheckArgs {
  std::vector<std::string> files;
  int64_t world_size = 1;
  std::optional<int64_t> hidden_size, micro_batch, gas, warmup_steps, total_steps;
  std::optional<double> lr;
  bool quiet = false;
};

void print_problem(const std::string& file, const ConfigProblem& p, const char* kind) {
  std::cerr << file << ": " << (p.path.empty() ? "" : p.path + ": ") << kind << p.message << "\n";
}

int run_check(const CheckArgs& args) {
  ResolveOptions options;
  options.world_size = args.world_size;
  options.auto_values.hidden_size = args.hidden_size;
  options.auto_values.micro_batch_per_gpu = args.micro_batch;
  options.auto_values.gradient_accumulation_steps = args.gas;
  options.auto_values.warmup_steps = args.warmup_steps;
  options.auto_values.total_steps = args.total_steps;
  options.auto_values.lr = args.lr;

  int status = kExitOk;
  for (const std::string& file : args.files) {
    try {
      const Config config = Config::from_file(file, options);
      require_supported(config);
      for (const ConfigProblem& w : config.warnings()) print_problem(file, w, "warning: ");
      for (const std::string& path : config.unresolved_auto()) {
        print_problem(file, {path, "\"auto\" left unresolved; an engine will not start until it is given"},
                      "note: ");
      }
      if (args.quiet) continue;
      if (args.files.size() == 1) {
        std::cout << config.to_json_string(2) << "\n";
      } else {
        std::cout << file << ": ok\n";
      }
    } catch (const ConfigError& e) {
      for (const ConfigProblem& p : e.problems()) print_problem(e.source(), p, "");
      status = kExitInvalid;
    }
  }
  return status;
}

}  // namespace

void add_config_command(CLI::App& app, int& exit_code) {
  CLI::App* config = app.add_subcommand("config", "Work with DeepSpeed-style JSON configs");
  config->require_subcommand(1);
  auto args = std::make_shared<CheckArgs>();
  CLI::App* check = config->add_subcommand(
      "check", "Validate config files and print the resolved config (exit 2 and one line per problem if invalid)");
  check->add_option("FILE", args->files, "Config file(s)")->required()->check(CLI::ExistingFile);
  check->add_option("--world-size", args->world_size, "Data-parallel world size for the batch triple")
      ->check(CLI::PositiveNumber);
  check->add_option("--hidden-size", args->hidden_size, "Model hidden size, to resolve \"auto\" bucket sizes")
      ->check(CLI::PositiveNumber);
  check->add_option("--micro-batch-size", args->micro_batch, "Resolves \"auto\" train_micro_batch_size_per_gpu")
      ->check(CLI::PositiveNumber);
  check->add_option("--gradient-accumulation-steps", args->gas, "Resolves \"auto\" gradient_accumulation_steps")
      ->check(CLI::PositiveNumber);
  check->add_option("--lr", args->lr, "Resolves \"auto\" learning rates");
  check->add_option("--warmup-steps", args->warmup_steps, "Resolves \"auto\" warmup_num_steps");
  check->add_option("--total-steps", args->total_steps, "Resolves \"auto\" total_num_steps");
  check->add_flag("-q,--quiet", args->quiet, "Print only problems");
  check->callback([args, &exit_code] { exit_code = run_check(*args); });
}

}  // namespace zerotrain::cli
