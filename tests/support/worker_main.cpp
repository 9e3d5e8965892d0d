// main() of test binaries with multi-rank tests: a process started by the
// harness runs its worker; otherwise the GoogleTest suite runs.

#include "support/multiprocess.h"

#include <gtest/gtest.h>

int main(int argc, char** argv) {
  int code = 0;
  if (zerotrain::testing::run_worker_if_requested(code)) return code;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
