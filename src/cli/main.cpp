// zerotrain: config validation, memory estimates, checkpoint inspection and export.
// See `zerotrain --help`.

#include <exception>
#include <iostream>

#include <c10/util/Exception.h>

#include "cli/commands.h"
#include "zerotrain/version.h"

int main(int argc, char** argv) {
  CLI::App app{"zerotrain " ZEROTRAIN_VERSION_STRING
               ": ZeRO training for LibTorch programs. Validate DeepSpeed configs, estimate memory, inspect and export checkpoints.",
               "zerotrain"};
  app.set_version_flag("--version", std::string("zerotrain ") + ZEROTRAIN_VERSION_STRING +
                                        " (LibTorch " ZEROTRAIN_TORCH_VERSION_STRING ")");
  app.require_subcommand(1);
  int exit_code = zerotrain::cli::kExitOk;
  zerotrain::cli::add_config_command(app, exit_code);
  zerotrain::cli::add_estimate_command(app, exit_code);
  zerotrain::cli::add_checkpoint_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints the message and usage
    return zerotrain::cli::kExitInvalid;
  } catch (const c10::Error& e) {
    std::cerr << "zerotrain: error: " << e.what_without_backtrace() << "\n";
    return zerotrain::cli::kExitInvalid;
  } catch (const std::exception& e) {
    std::cerr << "zerotrain: error: " << e.what() << "\n";
    return zerotrain::cli::kExitInvalid;
  }
  return exit_code;
}
