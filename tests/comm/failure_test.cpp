// No silent hangs: a killed peer, a rank that never issues, a rank that never
// joins, and mismatched collectives all become CommError (or a rendezvous
// error) on every surviving rank, within the timeout plus a small margin,
// naming the operation, its sequence number, dtype, size and the missing ranks.

#include "comm/worker_util.h"
#include "support/multiprocess.h"

#include <zerotrain/distributed.h>

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <thread>

namespace zerotrain::testing {
namespace {

constexpr int kTimeoutSeconds = 3;  // ZEROTRAIN_COMM_TIMEOUT in these tests
constexpr double kMarginSeconds = 5;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

int victim_rank() { return std::atoi(std::getenv("ZT_VICTIM")); }

/// Rank ZT_VICTIM dies (SIGKILL) right after issuing its 4th all-reduce; the
/// survivors must raise CommError naming it. With ZT_CHANNEL set, the
/// collectives run on a channel (Communicator::open_channel), which keeps the
/// same contract with its own sequence numbers and health records.
ZT_WORKER(killed_peer) {
  auto base = init_distributed();
  auto comm = std::getenv("ZT_CHANNEL") != nullptr ? base->open_channel(std::getenv("ZT_CHANNEL")) : base;
  RankChecks c(comm->rank());
  const int victim = victim_rank();
  at::Tensor t = at::ones({1 << 22});
  for (int it = 1; it <= 40; ++it) {
    if (comm->rank() == victim && it == 4) {
      comm->all_reduce(t);
      std::raise(SIGKILL);  // mid-collective
    }
    const auto start = std::chrono::steady_clock::now();
    try {
      comm->all_reduce(t).wait();
    } catch (const CommError& e) {
      const double took =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const std::string what = e.what();
      std::cout << "rank " << comm->rank() << " raised after " << took << " s:\n" << what << "\n";
      c.require(e.op() == Collective::kAllReduce && e.sequence() == 4, "op and sequence");
      c.require(e.missing_ranks() == std::vector<int>{victim}, "missing ranks are {victim}");
      c.require(contains(what, "all_reduce #4"), "message names the operation and #4");
      c.require(contains(what, "Float[4194304]") && contains(what, "16.8 MB"),
                "message names dtype and size");
      c.require(contains(what, "Missing ranks: " + std::to_string(victim)),
                "message names the missing rank");
      c.require(took <= kTimeoutSeconds + kMarginSeconds, "raised within timeout + 5 s");
      // Later calls fail at once with the same error instead of hanging.
      try {
        comm->barrier();
        c.require(false, "a failed communicator refuses new collectives");
      } catch (const CommError& again) {
        c.require(again.sequence() == 4, "the sticky error is the first one");
      }
      return c.exit_code();
    }
    c.require(it < 4, "collective " + std::to_string(it) + " succeeded after the peer died");
  }
  c.require(false, "no collective failed although rank " + std::to_string(victim) + " died");
  return c.exit_code();
}

/// Rank 2 is alive but never issues the collective the others wait in.
ZT_WORKER(late_rank) {
  auto comm = init_distributed();
  RankChecks c(comm->rank());
  at::Tensor t = at::ones({1000});
  comm->all_reduce(t).wait();
  if (comm->rank() == 2) {
    std::this_thread::sleep_for(std::chrono::seconds(kTimeoutSeconds + 3));
    return 0;  // leaves without issuing #2
  }
  const auto start = std::chrono::steady_clock::now();
  try {
    comm->all_reduce(t).wait();
    c.require(false, "all_reduce #2 completed without rank 2");
  } catch (const CommError& e) {
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << "rank " << comm->rank() << " raised after " << took << " s:\n" << e.what() << "\n";
    c.require(e.missing_ranks() == std::vector<int>{2}, "missing ranks are {2}");
    c.require(contains(e.what(), "rank 2: alive but has not issued collective #2"),
              "says rank 2 is alive but behind");
    c.require(took >= kTimeoutSeconds - 0.5, "waited for the timeout");
    c.require(took <= kTimeoutSeconds + kMarginSeconds, "raised within timeout + 5 s");
  }
  return c.exit_code();
}

/// Rank 0 issues #2 and does not wait for it (it "computes"); rank 1 never
/// issues it. The watchdog records the failure, so rank 0's next call raises
/// at once instead of starting another collective.
ZT_WORKER(unwaited) {
  auto comm = init_distributed();
  RankChecks c(comm->rank());
  at::Tensor t = at::ones({1000});
  comm->all_reduce(t).wait();
  if (comm->rank() == 1) {
    std::this_thread::sleep_for(std::chrono::seconds(kTimeoutSeconds + 4));
    return 0;
  }
  CommHandle dropped = comm->all_reduce(t);
  std::this_thread::sleep_for(std::chrono::seconds(kTimeoutSeconds + 3));
  const auto start = std::chrono::steady_clock::now();
  try {
    comm->barrier();
    c.require(false, "a communicator whose #2 failed accepted a barrier");
  } catch (const CommError& e) {
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << "raised after " << took << " s:\n" << e.what() << "\n";
    c.require(e.sequence() == 2 && e.op() == Collective::kAllReduce, "the error is #2's");
    c.require(e.missing_ranks() == std::vector<int>{1}, "missing ranks are {1}");
    c.require(took < 0.5, "the recorded failure is raised at once");
  }
  return c.exit_code();
}

/// World size 3, but only ranks 0 and 1 are started.
ZT_WORKER(rendezvous_missing) {
  try {
    auto comm = init_distributed();
    std::cerr << "init_distributed returned without rank 2\n";
    return 1;
  } catch (const c10::Error& e) {
    const std::string what = e.what_without_backtrace();
    std::cout << what << "\n";
    return contains(what, "ranks 2 did not join within 3 s (world size 3") ? 0 : 1;
  }
}

/// Debug mode: rank 0 all-gathers while rank 1 reduce-scatters (ZT_MISMATCH=op),
/// or both all-reduce with different sizes (ZT_MISMATCH=size).
ZT_WORKER(mismatch) {
  auto comm = init_distributed();
  RankChecks c(comm->rank());
  c.require(comm->options().check_collectives, "ZEROTRAIN_CHECK_COLLECTIVES=1 enables the check");
  at::Tensor t = at::ones({8});
  comm->all_reduce(t).wait();  // #1 matches
  const bool op_mismatch = std::string(std::getenv("ZT_MISMATCH")) == "op";
  try {
    if (op_mismatch && comm->rank() == 0) {
      comm->all_gather(at::empty({16}), at::ones({8})).wait();
    } else if (op_mismatch) {
      comm->reduce_scatter(at::empty({4}), at::ones({8})).wait();
    } else {
      comm->all_reduce(at::ones({comm->rank() == 0 ? 10 : 12})).wait();
    }
    c.require(false, "the mismatched collective #2 was not reported");
  } catch (const CommError& e) {
    const std::string what = e.what();
    std::cout << what << "\n";
    c.require(e.sequence() == 2, "reported at #2");
    c.require(contains(what, "ranks disagree on collective #2"), "says the ranks disagree");
    if (op_mismatch) {
      c.require(contains(what, "rank 0: #2 all_gather Float[16]"), "shows rank 0's view");
      c.require(contains(what, "rank 1: #2 reduce_scatter(sum) Float[8]"), "shows rank 1's view");
    } else {
      c.require(contains(what, "rank 0: #2 all_reduce(sum) Float[10]"), "shows rank 0's view");
      c.require(contains(what, "rank 1: #2 all_reduce(sum) Float[12]"), "shows rank 1's view");
    }
  }
  return c.exit_code();
}

RankJob failure_job(const std::string& worker, int world_size) {
  RankJob job;
  job.world_size = world_size;
  job.worker = worker;
  job.timeout = std::chrono::seconds(60);
  job.env["ZEROTRAIN_COMM_TIMEOUT"] = std::to_string(kTimeoutSeconds);
  return job;
}

void expect_victim_killed_and_survivors_reported(const std::vector<RankResult>& results,
                                                 int victim) {
  for (const auto& r : results) {
    std::cout << describe(r) << "\n";  // the survivors' messages, for the log
    EXPECT_FALSE(r.timed_out) << describe(r);  // the harness did not have to kill anyone
    if (r.rank == victim) {
      EXPECT_EQ(r.signal, SIGKILL) << describe(r);
    } else {
      EXPECT_EQ(r.exit_code, 0) << describe(r);
    }
  }
}

TEST(CommFailure, KilledPeerIsNamedByBothSurvivorsWithinTimeout) {
  RankJob job = failure_job("killed_peer", 3);
  job.env["ZT_VICTIM"] = "1";
  expect_victim_killed_and_survivors_reported(run_ranks(job), 1);
}

TEST(CommFailure, KilledPeerIsNamedOnAChannelToo) {
  RankJob job = failure_job("killed_peer", 3);
  job.env["ZT_VICTIM"] = "2";
  job.env["ZT_CHANNEL"] = "gather";
  expect_victim_killed_and_survivors_reported(run_ranks(job), 2);
}

TEST(CommFailure, KilledStoreHostIsNamedBySurvivors) {
  // Rank 0 hosts the store in an OpenMPI-style launch; its death takes the store.
  RankJob job = failure_job("killed_peer", 3);
  job.style = LaunchStyle::kOpenMpi;
  job.env["ZT_VICTIM"] = "0";
  expect_victim_killed_and_survivors_reported(run_ranks(job), 0);
}

TEST(CommFailure, RankThatNeverIssuesIsNamedAfterTimeout) {
  EXPECT_TRUE(all_ranks_succeeded(run_ranks(failure_job("late_rank", 3))));
}

TEST(CommFailure, WatchdogRecordsAFailureNobodyWaitsFor) {
  const auto results = run_ranks(failure_job("unwaited", 2));
  EXPECT_TRUE(all_ranks_succeeded(results));
  // The watchdog printed the diagnosis (to stderr) on its own; the worker's
  // copy comes after "raised after".
  const std::string& out = results[0].output;
  const auto printed = out.find("zerotrain comm: all_reduce #2 (all_reduce(sum) Float[1000]");
  EXPECT_LT(printed, out.find("raised after")) << out;
}

TEST(CommFailure, RankThatNeverJoinsIsNamedByRendezvous) {
  RankJob job = failure_job("rendezvous_missing", 3);
  job.start_ranks = {0, 1};
  EXPECT_TRUE(all_ranks_succeeded(run_ranks(job)));
}

TEST(CommFailure, DebugModeReportsMismatchedOperations) {
  RankJob job = failure_job("mismatch", 2);
  job.env["ZEROTRAIN_CHECK_COLLECTIVES"] = "1";
  job.env["ZT_MISMATCH"] = "op";
  EXPECT_TRUE(all_ranks_succeeded(run_ranks(job)));
}

TEST(CommFailure, DebugModeReportsMismatchedSizes) {
  RankJob job = failure_job("mismatch", 2);
  job.env["ZEROTRAIN_CHECK_COLLECTIVES"] = "1";
  job.env["ZT_MISMATCH"] = "size";
  EXPECT_TRUE(all_ranks_succeeded(run_ranks(job)));
}

}  // namespace
}  // namespace zerotrain::testing
