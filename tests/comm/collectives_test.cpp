// Every collective at N = 1..4 ranks, in fp32, bf16 and fp16, on sizes that are
// not powers of two, checked element by element against an fp64 reference;
// issue-order completion; and the byte accounting against the ring formulas.

#include "comm/worker_util.h"
#include "support/multiprocess.h"

#include <zerotrain/distributed.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <thread>

namespace zerotrain::testing {
namespace {

/// Rank q's data: small integers, so sums and maxima are exact in every dtype.
at::Tensor values(int q, int64_t numel, int salt = 0) {
  auto i = at::arange(numel, at::kDouble);
  return at::remainder(i * 7 + q * 3 + salt, 11) - 5;
}

at::Tensor sum_over_ranks(int n, int64_t numel, int salt = 0) {
  at::Tensor s = at::zeros({numel}, at::kDouble);
  for (int q = 0; q < n; ++q) s += values(q, numel, salt);
  return s;
}

at::Tensor max_over_ranks(int n, int64_t numel) {
  at::Tensor m = values(0, numel);
  for (int q = 1; q < n; ++q) m = at::maximum(m, values(q, numel));
  return m;
}

void check_single_tensor_collectives(Communicator& comm, at::ScalarType dt, int64_t chunk,
                                     RankChecks& c) {
  const int r = comm.rank(), n = comm.world_size();
  const int64_t full = chunk * n;
  const double rtol = rounding_tolerance(dt);
  const std::string tag = std::string(c10::toString(dt)) + " chunk " + std::to_string(chunk);
  const auto opt = at::TensorOptions().dtype(dt);

  at::Tensor t = values(r, full).to(dt);
  comm.all_reduce(t, ReduceOp::kSum).wait();
  c.elementwise(t, sum_over_ranks(n, full), 0, 0, "all_reduce(sum) " + tag);

  t = values(r, full).to(dt);
  comm.all_reduce(t, ReduceOp::kAvg).wait();
  c.elementwise(t, sum_over_ranks(n, full) / n, rtol, 1e-12, "all_reduce(avg) " + tag);

  t = values(r, full).to(dt);
  comm.all_reduce(t, ReduceOp::kMax).wait();
  c.elementwise(t, max_over_ranks(n, full), 0, 0, "all_reduce(max) " + tag);

  at::Tensor in = values(r, full).to(dt);
  at::Tensor out = at::full({chunk}, -99, opt);
  comm.reduce_scatter(out, in, ReduceOp::kSum).wait();
  c.elementwise(out, sum_over_ranks(n, full).narrow(0, r * chunk, chunk), 0, 0,
                "reduce_scatter(sum) " + tag);
  c.elementwise(in, values(r, full), 0, 0, "reduce_scatter leaves its input alone " + tag);

  out.fill_(-99);
  comm.reduce_scatter(out, in, ReduceOp::kAvg).wait();
  c.elementwise(out, sum_over_ranks(n, full).narrow(0, r * chunk, chunk) / n, rtol, 1e-12,
                "reduce_scatter(avg) " + tag);

  at::Tensor shard = values(r, chunk, 1).to(dt);
  at::Tensor gathered = at::full({full}, -99, opt);
  comm.all_gather(gathered, shard).wait();
  std::vector<at::Tensor> expected;
  for (int q = 0; q < n; ++q) expected.push_back(values(q, chunk, 1));
  c.elementwise(gathered, at::cat(expected), 0, 0, "all_gather " + tag);

  const int root = n - 1;
  t = values(r, full).to(dt);
  comm.broadcast(t, root).wait();
  c.elementwise(t, values(root, full), 0, 0, "broadcast(root " + std::to_string(root) + ") " + tag);
}

void check_coalesced_collectives(Communicator& comm, at::ScalarType dt, int64_t chunk,
                                 RankChecks& c) {
  const int r = comm.rank(), n = comm.world_size();
  const std::string tag = std::string(c10::toString(dt)) + " chunk " + std::to_string(chunk);
  const auto opt = at::TensorOptions().dtype(dt);
  // Three tensors of different sizes, each a multiple of the world size.
  const std::vector<int64_t> chunks{chunk, 2 * chunk + 1, 3};

  std::vector<at::Tensor> ts;
  for (size_t i = 0; i < chunks.size(); ++i) ts.push_back(values(r, chunks[i] * n, int(i)).to(dt));
  comm.all_reduce_coalesced(ts, ReduceOp::kSum).wait();
  for (size_t i = 0; i < chunks.size(); ++i) {
    c.elementwise(ts[i], sum_over_ranks(n, chunks[i] * n, int(i)), 0, 0,
                  "all_reduce_coalesced tensor " + std::to_string(i) + " " + tag);
  }

  std::vector<at::Tensor> ins, outs;
  for (size_t i = 0; i < chunks.size(); ++i) {
    ins.push_back(values(r, chunks[i] * n, int(i)).to(dt));
    outs.push_back(at::full({chunks[i]}, -99, opt));
  }
  comm.reduce_scatter_coalesced(outs, ins, ReduceOp::kSum).wait();
  for (size_t i = 0; i < chunks.size(); ++i) {
    c.elementwise(outs[i], sum_over_ranks(n, chunks[i] * n, int(i)).narrow(0, r * chunks[i], chunks[i]),
                  0, 0, "reduce_scatter_coalesced tensor " + std::to_string(i) + " " + tag);
  }

  std::vector<at::Tensor> shards, fulls;
  for (size_t i = 0; i < chunks.size(); ++i) {
    shards.push_back(values(r, chunks[i], int(i) + 5).to(dt));
    fulls.push_back(at::full({chunks[i] * n}, -99, opt));
  }
  comm.all_gather_coalesced(fulls, shards).wait();
  for (size_t i = 0; i < chunks.size(); ++i) {
    std::vector<at::Tensor> parts;
    for (int q = 0; q < n; ++q) parts.push_back(values(q, chunks[i], int(i) + 5));
    c.elementwise(fulls[i], at::cat(parts), 0, 0,
                  "all_gather_coalesced tensor " + std::to_string(i) + " " + tag);
  }

  std::vector<at::Tensor> bs;
  for (size_t i = 0; i < chunks.size(); ++i) bs.push_back(values(r, chunks[i], int(i)).to(dt));
  comm.broadcast_coalesced(bs, 0).wait();
  for (size_t i = 0; i < chunks.size(); ++i) {
    c.elementwise(bs[i], values(0, chunks[i], int(i)), 0, 0,
                  "broadcast_coalesced tensor " + std::to_string(i) + " " + tag);
  }
}

ZT_WORKER(collectives) {
  auto comm = init_distributed();
  RankChecks c(comm->rank());
  for (at::ScalarType dt : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (int64_t chunk : {1, 7, 65537}) {
      check_single_tensor_collectives(*comm, dt, chunk, c);
      check_coalesced_collectives(*comm, dt, chunk, c);
    }
  }
  comm->barrier().wait();
  std::cout << "rank " << comm->rank() << " of " << comm->world_size() << ": "
            << (c.failures() == 0 ? "all collectives match" : "mismatches") << "\n"
            << comm->stats().to_string();
  return c.exit_code();
}

// Handles waited out of order still complete everything issued before them,
// including the unpacking step of coalesced collectives.
ZT_WORKER(issue_order) {
  auto comm = init_distributed();
  RankChecks c(comm->rank());
  const int n = comm->world_size();
  std::vector<std::vector<at::Tensor>> lists;
  std::vector<CommHandle> handles;
  for (int k = 0; k < 12; ++k) {
    lists.push_back({values(comm->rank(), 1000 + k, k).to(at::kFloat),
                     values(comm->rank(), 33, k + 1).to(at::kFloat)});
    handles.push_back(comm->all_reduce_coalesced(lists.back()));
  }
  c.require(handles.back().sequence() == 12, "sequence numbers count from 1 in issue order");
  handles.back().wait();  // only the last one
  for (int k = 0; k < 12; ++k) {
    c.elementwise(lists[k][0], sum_over_ranks(n, 1000 + k, k), 0, 0,
                  "op " + std::to_string(k) + " done when a later op was waited");
    c.elementwise(lists[k][1], sum_over_ranks(n, 33, k + 1), 0, 0,
                  "op " + std::to_string(k) + " second tensor");
  }
  handles.front().wait();  // already complete: a no-op
  // is_completed() turns true without wait(), for every kind of collective.
  at::Tensor in = values(comm->rank(), 6 * n).to(at::kFloat);
  at::Tensor out = at::empty({6});
  std::vector<at::Tensor> outs{at::empty({2}), at::empty({4})};
  CommHandle polled[] = {comm->reduce_scatter(out, in),
                         comm->reduce_scatter_coalesced(outs, {in.narrow(0, 0, 2 * n),
                                                               in.narrow(0, 2 * n, 4 * n)}),
                         comm->all_gather(at::empty({6 * n}), out)};
  for (auto& h : polled) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!h.is_completed() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    c.require(h.is_completed(), "is_completed() of #" + std::to_string(h.sequence()));
    h.wait();
  }
  // Tensor 1 of the coalesced reduce-scatter is input elements [2n, 6n); this
  // rank's chunk of it is 4 elements at rank * 4.
  c.elementwise(outs[1],
                sum_over_ranks(n, 6 * n).narrow(0, 2 * n, 4 * n).narrow(0, comm->rank() * 4, 4),
                0, 0, "reduce_scatter_coalesced after polling");
  c.elementwise(out, sum_over_ranks(n, 6 * n).narrow(0, comm->rank() * 6, 6), 0, 0,
                "reduce_scatter after polling");
  // Dropped handles complete too; synchronize() reports them.
  at::Tensor t = values(comm->rank(), 5).to(at::kFloat);
  { comm->all_reduce(t); }
  comm->synchronize();
  c.elementwise(t, sum_over_ranks(n, 5), 0, 0, "a dropped handle's collective completes");
  return c.exit_code();
}

// The accounting against the formulas of Note [Wire bytes follow the backend's algorithm].
ZT_WORKER(accounting) {
  auto comm = init_distributed();
  RankChecks c(comm->rank());
  const int n = comm->world_size(), r = comm->rank();
  const int64_t full = 3000 * n;  // elements of the full buffer, a multiple of n
  const int64_t bytes = full * 4;
  at::Tensor t = at::ones({full});
  comm->all_reduce(t).wait();
  comm->all_reduce(t).wait();
  at::Tensor shard = at::empty({full / n});
  comm->reduce_scatter(shard, t).wait();
  comm->all_gather(t, shard).wait();
  comm->broadcast(t, 0).wait();
  comm->all_gather_coalesced({t.narrow(0, 0, n * 10), t.narrow(0, n * 10, n * 20)},
                             {shard.narrow(0, 0, 10), shard.narrow(0, 10, 20)}).wait();
  comm->barrier().wait();
  const CommStats s = comm->stats();
  const int64_t ring = bytes * (n - 1) / n;
  auto expect = [&](Collective op, int64_t calls, int64_t payload, int64_t wire,
                    const std::string& algorithm) {
    const auto& st = s[op];
    const std::string name = to_string(op);
    c.require(st.calls == calls, name + " calls " + std::to_string(st.calls) + " != " +
                                     std::to_string(calls));
    c.require(st.payload_bytes == payload, name + " payload " + std::to_string(st.payload_bytes) +
                                               " != " + std::to_string(payload));
    c.require(st.wire_bytes == wire, name + " wire " + std::to_string(st.wire_bytes) + " != " +
                                         std::to_string(wire));
    c.require(st.algorithm == algorithm, name + " algorithm '" + st.algorithm + "' != '" +
                                             algorithm + "'");
  };
  // One rank sends nothing, whatever the algorithm.
  auto alg = [n](const std::string& a) { return n == 1 ? std::string("local (one rank)") : a; };
  expect(Collective::kAllReduce, 2, 2 * bytes, 2 * 2 * ring, alg("ring"));
  // Gloo has no reduce-scatter: an all-reduce of the whole input, then a slice.
  expect(Collective::kReduceScatter, 1, bytes, 2 * ring, alg("all-reduce then slice"));
  const int64_t coalesced = n * 30 * 4;
  expect(Collective::kAllGather, 2, bytes + coalesced, ring + coalesced * (n - 1) / n, alg("ring"));
  // Gloo's binomial tree rooted at rank 0: a rank sends one copy per child.
  int children = 0;
  for (int step = 1; step < n; step <<= 1) children += (r < step && r + step < n) ? 1 : 0;
  expect(Collective::kBroadcast, 1, bytes, children * bytes, alg("binomial tree"));
  expect(Collective::kBarrier, 1, 0, 0, "barrier");
  c.require(s.total_wire_bytes() == 4 * ring + 2 * ring + ring + coalesced * (n - 1) / n +
                                        children * bytes,
            "total wire bytes");
  comm->reset_stats();
  c.require(comm->stats()[Collective::kAllReduce].calls == 0, "reset_stats clears the counts");
  std::cout << s.to_string();
  return c.exit_code();
}

class CollectivesAtWorldSize : public ::testing::TestWithParam<int> {};

TEST_P(CollectivesAtWorldSize, MatchFp64ReferenceElementwise) {
  RankJob job;
  job.world_size = GetParam();
  job.worker = "collectives";
  job.env["ZEROTRAIN_COMM_TIMEOUT"] = "60";
  EXPECT_TRUE(all_ranks_succeeded(run_ranks(job)));
}

TEST_P(CollectivesAtWorldSize, CompleteInIssueOrder) {
  RankJob job;
  job.world_size = GetParam();
  job.worker = "issue_order";
  EXPECT_TRUE(all_ranks_succeeded(run_ranks(job)));
}

TEST_P(CollectivesAtWorldSize, AccountingFollowsRingFormulas) {
  RankJob job;
  job.world_size = GetParam();
  job.worker = "accounting";
  EXPECT_TRUE(all_ranks_succeeded(run_ranks(job)));
}

INSTANTIATE_TEST_SUITE_P(N, CollectivesAtWorldSize, ::testing::Values(1, 2, 3, 4));

TEST(Collectives, InvalidArgumentsAreClearErrors) {
  DistributedOptions o;
  o.rank = 0;
  o.world_size = 1;
  auto comm = init_distributed(o);
  at::Tensor in = at::ones({10});
  at::Tensor out = at::ones({3});
  // With one rank, output and input of reduce_scatter must have equal sizes.
  EXPECT_THROW(
      {
        try {
          comm->reduce_scatter(out, in);
        } catch (const c10::Error& e) {
          EXPECT_NE(std::string(e.what()).find("input has 10 elements, expected world_size (1) x "
                                               "output (3) = 3"),
                    std::string::npos)
              << e.what();
          throw;
        }
      },
      c10::Error);
  EXPECT_THROW(comm->all_reduce(at::ones({4, 4}).t()), c10::Error);  // not contiguous
  EXPECT_THROW(comm->broadcast(in, 1), c10::Error);                 // no rank 1
  EXPECT_THROW(comm->all_reduce(at::ones({3}, at::kInt), ReduceOp::kAvg), c10::Error);
  EXPECT_THROW(comm->all_reduce_coalesced({at::ones({2}), at::ones({2}, at::kDouble)}),
               c10::Error);
  // Nothing was issued by the rejected calls.
  EXPECT_EQ(comm->stats()[Collective::kAllReduce].calls, 0);
}

}  // namespace
}  // namespace zerotrain::testing
