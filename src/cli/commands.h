#pragma once
// The `zerotrain` command-line tool: each command registers itself on the app
// and writes its exit status into `exit_code` when it runs.
//   0: success; 1: a checked thing failed (a checkpoint that does not verify);
//   2: invalid input (a config, a flag value), with one line per problem.

#include <CLI/CLI.hpp>

namespace zerotrain::cli {

constexpr int kExitOk = 0;
constexpr int kExitInvalid = 2;

void add_config_command(CLI::App& app, int& exit_code);
void add_estimate_command(CLI::App& app, int& exit_code);
void add_checkpoint_command(CLI::App& app, int& exit_code);

}  // namespace zerotrain::cli
