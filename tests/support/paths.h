#pragma once
// Where the tests find the project's files and the tools they launch.
//
// Note [Test objects carry no absolute paths]
// The build's absolute paths (source tree, the CLI, torchrun, mpirun, the
// venv's Python) are compiled into one translation unit, paths.cpp, and every
// other test object asks it at run time. A compile definition on each test
// executable would put the clone's path into every object's command line, so
// a fresh clone (CI) would compile every test again even with a warm ccache;
// this way only paths.cpp does.
#include <string>

namespace zerotrain::testing {

std::string configs_dir();    // <source>/configs
std::string tests_dir();      // <source>/tests
std::string config_path(const std::string& file_name);  // configs_dir() + "/" + file_name
std::string cli_path();       // the zerotrain CLI executable
std::string torchrun_path();  // empty when CMake found no torchrun
std::string mpirun_path();    // empty when CMake found no mpirun
std::string python_path();    // the venv's python3; empty when not found

}  // namespace zerotrain::testing
