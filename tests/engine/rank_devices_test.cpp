// Note [One GPU per rank under NCCL] (src/engine/rank_devices.h): the
// placement comparison that names ranks sharing a GPU, and which groups it
// applies to. The check on real GPUs needs NCCL and two of them.

#include <gtest/gtest.h>

#include "comm/worker_util.h"
#include "engine/rank_devices.h"
#include "support/multiprocess.h"

#include <zerotrain/distributed.h>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

namespace zerotrain::detail {
namespace {

// Catches: a comparison of devices without hosts (rank 2 on another node's
// cuda:0 is fine), a report of only the first pair, and a missed later rank.
TEST(SharedDevices, NamesEachRankThatSharesAnEarlierRanksGpuOnTheSameHost) {
  EXPECT_EQ(shared_devices({"a cuda:0", "a cuda:1", "b cuda:0", "b cuda:1"}), "");
  EXPECT_EQ(shared_devices({"a cuda:0"}), "");
  EXPECT_EQ(shared_devices({"a cuda:0", "a cuda:0", "b cuda:0", "b cuda:1", "b cuda:1"}),
            "ranks 0 and 1 both use cuda:0 on host a; ranks 3 and 4 both use cuda:1 on host b");
  // Every rank on cuda:0: each later rank is named once, against rank 0.
  EXPECT_EQ(shared_devices({"gpu-node cuda:0", "gpu-node cuda:0", "gpu-node cuda:0"}),
            "ranks 0 and 1 both use cuda:0 on host gpu-node; ranks 0 and 2 both use cuda:0 on host gpu-node");
}

/// init_distributed with backend "gloo": Gloo carries CUDA tensors too, so
/// ranks may share a GPU and the one-GPU-per-rank check does not apply.
ZT_WORKER(gloo_carries_cuda) {
  DistributedOptions options;
  options.backend = "gloo";
  auto comm = init_distributed(options);
  testing::RankChecks c(comm->rank());
  const auto group = comm->process_group();
  bool cuda = false;
  for (const c10::Device& d : group->getDeviceTypes()) cuda = cuda || d.type() == c10::kCUDA;
  c.require(cuda, "the group has a backend for CUDA tensors");
  if (cuda) c.require(group->getBackend(c10::kCUDA)->getBackendName() == "gloo", "Gloo carries CUDA tensors");
  c.require(!nccl_carries_cuda(*comm), "nccl_carries_cuda is false");
  return c.exit_code();
}

// Catches: backend "gloo" leaving CUDA tensors without a backend (two ranks
// could not share one GPU), or the shared-GPU check applied to a Gloo group.
TEST(RankDevices, GlooBackendCarriesCudaTensorsSoRanksMayShareAGpu) {
  testing::RankJob job;
  job.world_size = 2;
  job.worker = "gloo_carries_cuda";
  EXPECT_TRUE(testing::all_ranks_succeeded(testing::run_ranks(job)));
}

}  // namespace
}  // namespace zerotrain::detail
