// Note [Device work is watched until it finishes] (src/comm/communicator.cpp):
// a backend whose Work::wait() does not block the host, as NCCL's does not,
// still turns a dead peer into a CommError naming it within the timeout. The
// backend here wraps Gloo so that a CPU test can kill a peer under it.
//
// Catches: an op marked finished when its host wait() returns (the watchdog
// never looks at it again, and the survivor polls forever), and is_completed()
// reporting true after wait() while the collective has not finished.

#include "comm/backends.h"
#include "comm/worker_util.h"
#include "support/multiprocess.h"

#include <zerotrain/distributed.h>

#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <csignal>
#include <thread>

namespace zerotrain::testing {
namespace {

constexpr int kTimeoutSeconds = 3;  // ZEROTRAIN_COMM_TIMEOUT
constexpr double kMarginSeconds = 5;

/// What NCCL's Work looks like to the host: wait() returns at once (it only
/// makes the current stream wait); isCompleted() says whether the collective
/// has finished, here Gloo's.
class HostNeverBlocks : public c10d::Work {
 public:
  explicit HostNeverBlocks(c10::intrusive_ptr<c10d::Work> inner) : inner_(std::move(inner)) {}
  bool wait(std::chrono::milliseconds) override { return true; }
  bool isCompleted() override { return inner_->isCompleted(); }
  std::exception_ptr exception() const override { return inner_->exception(); }

 private:
  c10::intrusive_ptr<c10d::Work> inner_;
};

class DeviceLikeBackend : public c10d::Backend {
 public:
  explicit DeviceLikeBackend(c10::intrusive_ptr<c10d::Backend> gloo)
      : c10d::Backend(gloo->getRank(), gloo->getSize()), gloo_(std::move(gloo)) {}
  const std::string getBackendName() const override { return "device-like"; }
  c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>& tensors,
                                           const c10d::AllreduceOptions& opts) override {
    return c10::make_intrusive<HostNeverBlocks>(gloo_->allreduce(tensors, opts));
  }

 private:
  c10::intrusive_ptr<c10d::Backend> gloo_;
};

/// A communicator over the harness's store whose CPU backend is DeviceLikeBackend.
std::shared_ptr<Communicator> device_like_communicator() {
  const LaunchInfo info = resolve_launch({}, process_environment());
  const CommOptions options = CommOptions{}.with_environment();
  c10d::TCPStoreOptions o;
  o.port = static_cast<uint16_t>(info.master_port);
  o.isServer = false;
  o.timeout = options.timeout;
  auto root = c10::make_intrusive<c10d::TCPStore>(info.master_addr, o);
  auto store = c10::make_intrusive<c10d::PrefixStore>("device_like", root);
  comm_detail::BackendSetup setup;
  setup.store = c10::make_intrusive<c10d::PrefixStore>("gloo", store);
  setup.rank = info.rank;
  setup.world_size = info.world_size;
  setup.timeout = options.timeout;
  setup.master_addr = info.master_addr;
  auto group = c10::make_intrusive<c10d::ProcessGroup>(store, info.rank, info.world_size);
  group->setBackend(c10::kCPU, c10d::ProcessGroup::CUSTOM,
                    c10::make_intrusive<DeviceLikeBackend>(comm_detail::make_gloo_backend(setup)));
  group->setDefaultBackend(c10d::ProcessGroup::CUSTOM);
  return Communicator::adopt(group, store, options);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// Two all-reduces finish on both ranks; rank 1 then dies, and rank 0 issues
/// #3, waits for it on the host (at once) and polls, as a GPU training loop
/// that never blocks in a collective would.
ZT_WORKER(device_like_dead_peer) {
  auto comm = device_like_communicator();
  RankChecks c(comm->rank());
  at::Tensor t = at::ones({1 << 16});
  for (int it = 1; it <= 2; ++it) {
    CommHandle h = comm->all_reduce(t);
    h.wait();
    const auto start = std::chrono::steady_clock::now();
    while (!h.is_completed() && seconds_since(start) < 30) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    c.require(h.is_completed(), "all_reduce #" + std::to_string(it) + " finished");
  }
  if (comm->rank() == 1) std::raise(SIGKILL);

  const auto start = std::chrono::steady_clock::now();
  CommHandle h = comm->all_reduce(t);
  h.wait();
  c.require(seconds_since(start) < 1, "wait() returns without blocking the host");
  c.require(!h.is_completed(), "is_completed() is false while the collective has not finished");
  for (;;) {
    try {
      comm->synchronize();
    } catch (const CommError& e) {
      const double took = seconds_since(start);
      const std::string what = e.what();
      std::cout << "raised after " << took << " s:\n" << what << "\n";
      c.require(e.op() == Collective::kAllReduce && e.sequence() == 3, "the error is all_reduce #3's");
      c.require(e.missing_ranks() == std::vector<int>{1}, "missing ranks are {1}");
      c.require(what.find("Missing ranks: 1") != std::string::npos, "the message names rank 1");
      c.require(took <= kTimeoutSeconds + kMarginSeconds, "raised within timeout + 5 s");
      return c.exit_code();
    }
    if (seconds_since(start) > kTimeoutSeconds + kMarginSeconds + 10) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  c.require(false, "no CommError although rank 1 died before all_reduce #3");
  return c.exit_code();
}

TEST(DeviceWatch, DeadPeerUnderAHostThatNeverBlocksIsNamedWithinTimeout) {
  RankJob job;
  job.world_size = 2;
  job.worker = "device_like_dead_peer";
  job.timeout = std::chrono::seconds(60);
  job.env["ZEROTRAIN_COMM_TIMEOUT"] = std::to_string(kTimeoutSeconds);
  const auto results = run_ranks(job);
  for (const auto& r : results) {
    std::cout << describe(r) << "\n";
    EXPECT_FALSE(r.timed_out) << describe(r);
    if (r.rank == 1) {
      EXPECT_EQ(r.signal, SIGKILL) << describe(r);
    } else {
      EXPECT_EQ(r.exit_code, 0) << describe(r);
    }
  }
}

}  // namespace
}  // namespace zerotrain::testing
