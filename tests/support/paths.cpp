// See Note [Test objects carry no absolute paths] in paths.h.
#include "support/paths.h"

namespace zerotrain::testing {

std::string configs_dir() { return ZEROTRAIN_CONFIGS_DIR; }
std::string tests_dir() { return ZEROTRAIN_TESTS_DIR; }
std::string config_path(const std::string& file_name) { return configs_dir() + "/" + file_name; }
std::string cli_path() { return ZEROTRAIN_CLI_PATH; }
std::string torchrun_path() { return ZEROTRAIN_TORCHRUN; }
std::string mpirun_path() { return ZEROTRAIN_MPIRUN; }
std::string python_path() { return ZEROTRAIN_PYTHON; }

}  // namespace zerotrain::testing
