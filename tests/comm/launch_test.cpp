// Rendezvous: resolve_launch on each launcher's variables, and real launches
// through the harness (torchrun-, OpenMPI- and Slurm-style variables), through
// `torchrun --no-python` and through `mpirun`.

#include "comm/worker_util.h"
#include "support/multiprocess.h"
#include "test_util.h"

#include <zerotrain/distributed.h>

#include <gtest/gtest.h>

#include <map>

#include "support/paths.h"

namespace zerotrain::testing {
namespace {

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars](const std::string& k) -> std::optional<std::string> {
    auto it = vars.find(k);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string error_of(const DistributedOptions& o, const std::map<std::string, std::string>& env) {
  try {
    resolve_launch(o, env_of(env));
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "(no error)";
}

TEST(ResolveLaunch, NothingSetIsOneRank) {
  const LaunchInfo i = resolve_launch({}, env_of({}));
  EXPECT_EQ(i.rank, 0);
  EXPECT_EQ(i.world_size, 1);
  EXPECT_EQ(i.launcher, Launcher::kNone);
  EXPECT_EQ(i.master_port, 29500);
}

TEST(ResolveLaunch, Torchrun) {
  const LaunchInfo i = resolve_launch(
      {}, env_of({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"},
                  {"LOCAL_WORLD_SIZE", "2"}, {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "1234"},
                  {"TORCHELASTIC_USE_AGENT_STORE", "True"}, {"TORCHELASTIC_RESTART_COUNT", "2"}}));
  EXPECT_EQ(i.launcher, Launcher::kTorchrun);
  EXPECT_EQ(i.rank, 3);
  EXPECT_EQ(i.world_size, 8);
  EXPECT_EQ(i.local_rank, 1);
  EXPECT_EQ(i.local_world_size, 2);
  EXPECT_EQ(i.master_addr, "node7");
  EXPECT_EQ(i.master_port, 1234);
  EXPECT_TRUE(i.use_agent_store);
  EXPECT_EQ(i.restart_count, 2);
}

TEST(ResolveLaunch, OpenMpiOnOneNodeDefaultsToLoopback) {
  const LaunchInfo i = resolve_launch(
      {}, env_of({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                  {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}}));
  EXPECT_EQ(i.launcher, Launcher::kOpenMpi);
  EXPECT_EQ(i.rank, 1);
  EXPECT_EQ(i.world_size, 4);
  EXPECT_EQ(i.master_addr, "127.0.0.1");
  EXPECT_EQ(i.master_port, 29500);
  EXPECT_FALSE(i.use_agent_store);
}

TEST(ResolveLaunch, OpenMpiAcrossNodesNeedsMasterAddr) {
  const std::map<std::string, std::string> env{{"OMPI_COMM_WORLD_RANK", "5"},
                                               {"OMPI_COMM_WORLD_SIZE", "8"},
                                               {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                               {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}};
  EXPECT_NE(error_of({}, env).find("MASTER_ADDR is not set"), std::string::npos) << error_of({}, env);
  auto with_addr = env;
  with_addr["MASTER_ADDR"] = "10.0.0.1";
  EXPECT_EQ(resolve_launch({}, env_of(with_addr)).master_addr, "10.0.0.1");
}

TEST(ResolveLaunch, Slurm) {
  const LaunchInfo i = resolve_launch(
      {}, env_of({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"},
                  {"SLURM_NNODES", "2"}, {"SLURM_NTASKS_PER_NODE", "4(x2)"},
                  {"MASTER_ADDR", "n1"}, {"MASTER_PORT", "4000"}}));
  EXPECT_EQ(i.launcher, Launcher::kSlurm);
  EXPECT_EQ(i.rank, 5);
  EXPECT_EQ(i.world_size, 8);
  EXPECT_EQ(i.local_rank, 1);
  EXPECT_EQ(i.local_world_size, 4);
  EXPECT_EQ(i.master_addr, "n1");
  EXPECT_EQ(i.master_port, 4000);
}

TEST(ResolveLaunch, TorchrunWinsOverOuterLaunchers) {
  // torchrun started inside an srun step: torchrun's variables describe the workers.
  const LaunchInfo i = resolve_launch(
      {}, env_of({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"},
                  {"SLURM_LOCALID", "0"}, {"MASTER_ADDR", "h"}}));
  EXPECT_EQ(i.launcher, Launcher::kTorchrun);
  EXPECT_EQ(i.world_size, 2);
}

TEST(ResolveLaunch, ExplicitArgumentsOverrideTheEnvironment) {
  DistributedOptions o;
  o.rank = 2;
  o.world_size = 4;
  o.local_rank = 0;
  o.master_addr = "10.1.1.1";
  o.master_port = 4242;
  const LaunchInfo i = resolve_launch(
      o, env_of({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "9"}}));
  EXPECT_EQ(i.rank, 2);
  EXPECT_EQ(i.world_size, 4);
  EXPECT_EQ(i.local_rank, 0);
  EXPECT_EQ(i.master_addr, "10.1.1.1");
  EXPECT_EQ(i.master_port, 4242);
}

TEST(ResolveLaunch, ExplicitLayoutIgnoresPartialLauncherVariables) {
  DistributedOptions o;
  o.rank = 0;
  o.world_size = 2;
  o.master_addr = "127.0.0.1";
  const LaunchInfo i =
      resolve_launch(o, env_of({{"RANK", "x"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"}}));
  EXPECT_EQ(i.launcher, Launcher::kExplicit);
  EXPECT_FALSE(i.use_agent_store);  // rank 0 hosts the store itself
}

TEST(ResolveLaunch, BadValuesNameTheVariable) {
  EXPECT_NE(error_of({}, {{"RANK", "one"}, {"WORLD_SIZE", "2"}}).find("RANK='one' is not an integer"),
            std::string::npos);
  EXPECT_NE(error_of({}, {{"RANK", "0"}}).find("WORLD_SIZE is not set"), std::string::npos);
  EXPECT_NE(error_of({}, {{"RANK", "2"}, {"WORLD_SIZE", "2"}}).find("rank 2 is outside [0, 2)"),
            std::string::npos);
  EXPECT_NE(error_of({}, {{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"}})
                .find("OMPI_COMM_WORLD_LOCAL_RANK is not set"),
            std::string::npos);
  EXPECT_NE(error_of({}, {{"MASTER_PORT", "70000"}}).find("MASTER_PORT 70000 is not a TCP port"),
            std::string::npos);
  DistributedOptions half;
  half.rank = 0;
  EXPECT_NE(error_of(half, {}).find("give both rank and world_size"), std::string::npos);
}

// Catches: every rank on cuda:0 (what train_gpt --device cuda did), the
// global rank used instead of LOCAL_RANK, and no wrap-around past the GPU count.
TEST(RankCudaDevice, IsLocalRankModuloTheVisibleDevices) {
  const LaunchInfo node1 = resolve_launch(
      {}, env_of({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "4"},
                  {"MASTER_ADDR", "node0"}}));
  EXPECT_EQ(rank_cuda_device(node1, 4), 1);
  EXPECT_EQ(rank_cuda_device(node1, 8), 1);
  EXPECT_EQ(rank_cuda_device(node1, 1), 0);
  LaunchInfo local3;
  local3.local_rank = 3;
  EXPECT_EQ(rank_cuda_device(local3, 2), 1);
  local3.rank = 7;
  try {
    rank_cuda_device(local3, 0);
    ADD_FAILURE() << "no error without a visible device";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("rank 7 (LOCAL_RANK 3) wants a CUDA device but none "
                                                          "is visible"),
              std::string::npos)
        << e.what_without_backtrace();
  }
}

/// One all-reduce, and the launcher seen from inside the rank.
ZT_WORKER(smoke) {
  const LaunchInfo info = resolve_launch({}, process_environment());
  auto comm = init_distributed();
  RankChecks c(comm->rank());
  const int n = comm->world_size();
  c.require(comm->rank() == info.rank && n == info.world_size, "rank and world size");
  if (const char* expected = std::getenv("ZT_EXPECT_LAUNCHER")) {
    c.require(std::string(to_string(info.launcher)) == expected,
              std::string("launcher is ") + to_string(info.launcher) + ", expected " + expected);
  }
  at::Tensor t = at::full({1001}, comm->rank() + 1.0);
  comm->all_reduce(t).wait();
  c.elementwise(t, at::full({1001}, n * (n + 1) / 2.0, at::kDouble), 0, 0, "all_reduce");
  std::cout << "rank " << comm->rank() << " of " << n << " via " << to_string(info.launcher)
            << ": ok\n";
  return c.exit_code();
}

TEST(Launch, OpenMpiStyleVariablesWithRankZeroHostingTheStore) {
  RankJob job;
  job.world_size = 3;
  job.worker = "smoke";
  job.style = LaunchStyle::kOpenMpi;
  job.env["ZT_EXPECT_LAUNCHER"] = "OpenMPI";
  EXPECT_TRUE(all_ranks_succeeded(run_ranks(job)));
}

TEST(Launch, SlurmStyleVariables) {
  RankJob job;
  job.world_size = 2;
  job.worker = "smoke";
  job.style = LaunchStyle::kSlurm;
  job.env["ZT_EXPECT_LAUNCHER"] = "Slurm";
  EXPECT_TRUE(all_ranks_succeeded(run_ranks(job)));
}

TEST(Launch, TorchrunNoPythonRunsThisBinary) {
  const std::string torchrun = testing::torchrun_path();
  if (torchrun.empty()) GTEST_SKIP() << "torchrun was not found at configure time";
  const auto r = run_command("ZEROTRAIN_TEST_WORKER=smoke ZT_EXPECT_LAUNCHER=torchrun timeout 120 " +
                             torchrun + " --no-python --standalone --nproc-per-node=2 " +
                             self_executable());
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE((r.out + r.err).find("rank 1 of 2 via torchrun: ok"), std::string::npos) << r.out << r.err;
}

TEST(Launch, MpirunRunsThisBinary) {
  const std::string mpirun = testing::mpirun_path();
  if (mpirun.empty()) GTEST_SKIP() << "mpirun was not found at configure time";
  // A free port keeps concurrent test binaries apart; mpirun needs no other setup.
  const auto r = run_command("timeout 120 " + mpirun +
                             " --allow-run-as-root --oversubscribe -np 2 -x "
                             "ZEROTRAIN_TEST_WORKER=smoke -x ZT_EXPECT_LAUNCHER=OpenMPI -x "
                             "MASTER_PORT=" + std::to_string(free_port()) + " " + self_executable());
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE((r.out + r.err).find("rank 1 of 2 via OpenMPI: ok"), std::string::npos) << r.out << r.err;
}

}  // namespace
}  // namespace zerotrain::testing
