#pragma once
// A multi-rank test harness for GoogleTest: starts N copies of the current test
// binary on loopback, each running a registered worker function instead of the
// test suite, and gathers each rank's exit status and output.
//
// Rendezvous without fixed ports: by default the harness itself hosts the store
// on a port the kernel picks, and the ranks join it the way torchrun's workers
// join the agent's store (TORCHELASTIC_USE_AGENT_STORE=True). Layouts that make
// rank 0 host the store (OpenMPI- or Slurm-style variables) get a free port.

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace zerotrain::testing {

struct RankResult {
  int rank = 0;
  int exit_code = -1;  // -1 when killed by a signal or the timeout
  int signal = 0;
  bool timed_out = false;
  double seconds = 0;
  std::string output;  // stdout and stderr together
};

enum class LaunchStyle {
  kTorchrunAgentStore,  // RANK/WORLD_SIZE/..., the harness hosts the store
  kOpenMpi,             // OMPI_COMM_WORLD_*, rank 0 hosts the store
  kSlurm,               // SLURM_PROCID/..., rank 0 hosts the store
};

struct RankJob {
  int world_size = 2;
  /// Ranks actually started (default: all); the others never arrive.
  std::vector<int> start_ranks;
  std::string worker;  // a name given to ZT_WORKER
  std::chrono::seconds timeout{60};
  LaunchStyle style = LaunchStyle::kTorchrunAgentStore;
  std::map<std::string, std::string> env;  // for every rank
};

std::vector<RankResult> run_ranks(const RankJob& job);

/// Every rank exited 0; otherwise a failure listing each bad rank's output.
::testing::AssertionResult all_ranks_succeeded(const std::vector<RankResult>& results);

/// Runs `worker` on `world_size` ranks (torchrun-style), expects every rank
/// to succeed, and prints rank 0's output when `print_rank0` (tests that
/// report a measurement).
void expect_worker_succeeds(const std::string& worker, int world_size, std::chrono::seconds timeout,
                            bool print_rank0 = false);
std::string describe(const RankResult& r);

/// A TCP port that was free a moment ago (bind to port 0, read it, close).
int free_port();

/// Path of the running test binary.
std::string self_executable();

// ---- Workers ------------------------------------------------------------------

using WorkerFn = std::function<int()>;
bool register_worker(const std::string& name, WorkerFn fn);
/// Called from main(): runs the worker named by ZEROTRAIN_TEST_WORKER, if any.
/// Returns true (and sets `exit_code`) when this process was a worker.
bool run_worker_if_requested(int& exit_code);

}  // namespace zerotrain::testing

/// Defines a worker: `ZT_WORKER(name) { ...; return 0; }`, run in each rank.
#define ZT_WORKER(name)                                                             \
  static int zt_worker_##name();                                                    \
  static const bool zt_worker_registered_##name =                                   \
      ::zerotrain::testing::register_worker(#name, &zt_worker_##name);              \
  static int zt_worker_##name()
