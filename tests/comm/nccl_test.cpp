// NCCL at world size 1 on CUDA tensors (CUDA builds; skipped without a GPU):
// results against a CPU fp64 reference, and a collective running concurrently
// with compute issued after it, without the host waiting for either.

#include "comm/worker_util.h"

#include <zerotrain/distributed.h>

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAFunctions.h>

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace zerotrain::testing {
namespace {

bool have_gpu() { return c10::cuda::device_count() > 0; }

std::shared_ptr<Communicator> nccl_world_of_one() {
  DistributedOptions o;
  o.rank = 0;
  o.world_size = 1;
  o.backend = "nccl";
  o.comm.timeout = std::chrono::seconds(60);
  return init_distributed(o);
}

TEST(Nccl, CollectivesAtWorldSizeOneMatchReference) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device: run on a GPU machine";
  auto comm = nccl_world_of_one();
  RankChecks c(0);
  for (at::ScalarType dt : {at::kFloat, at::kBFloat16, at::kHalf}) {
    for (int64_t n : {1, 7, 65537, 1000003}) {
      const auto cuda = at::TensorOptions().dtype(dt).device(at::kCUDA);
      const at::Tensor ref = at::remainder(at::arange(n, at::kDouble) * 7, 11) - 5;
      const std::string tag = std::string(c10::toString(dt)) + "[" + std::to_string(n) + "]";
      at::Tensor t = ref.to(cuda);
      comm->all_reduce(t, ReduceOp::kSum).wait();
      c.elementwise(t.cpu(), ref, 0, 0, "all_reduce(sum) " + tag);
      comm->all_reduce(t, ReduceOp::kAvg).wait();
      c.elementwise(t.cpu(), ref, rounding_tolerance(dt), 0, "all_reduce(avg) " + tag);
      at::Tensor out = at::zeros({n}, cuda);
      comm->reduce_scatter(out, ref.to(cuda)).wait();
      c.elementwise(out.cpu(), ref, 0, 0, "reduce_scatter " + tag);
      at::Tensor gathered = at::zeros({n}, cuda);
      comm->all_gather(gathered, ref.to(cuda)).wait();
      c.elementwise(gathered.cpu(), ref, 0, 0, "all_gather " + tag);
      std::vector<at::Tensor> many{ref.to(cuda), ref.narrow(0, 0, (n + 1) / 2).to(cuda)};
      comm->all_reduce_coalesced(many).wait();
      c.elementwise(many[0].cpu(), ref, 0, 0, "coalesced tensor 0 " + tag);
      c.elementwise(many[1].cpu(), ref.narrow(0, 0, (n + 1) / 2), 0, 0, "coalesced tensor 1 " + tag);
    }
  }
  EXPECT_EQ(c.failures(), 0);
  EXPECT_EQ(comm->stats()[Collective::kAllReduce].algorithm, "local (one rank)");
}

TEST(Nccl, CollectiveOverlapsLaterComputeWithoutHostSync) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device: run on a GPU machine";
  auto comm = nccl_world_of_one();
  const auto cuda = at::TensorOptions().device(at::kCUDA);
  at::Tensor buffer = at::ones({64 << 20}, cuda);  // 256 MB
  at::Tensor a = at::randn({4096, 4096}, cuda);
  // Set-up that blocks the host once, outside the timed part: the first
  // collective creates the NCCL communicator and the first matmul cuBLAS's
  // handle (together 150-160 ms on an H200, seen 2026-11-30).
  comm->all_reduce(at::ones({1}, cuda)).wait();
  (void)at::matmul(a, a);
  c10::cuda::device_synchronize();

  // The collective is queued on NCCL's stream; compute queued after it on the
  // current stream must not wait for it, and the host must not wait for either.
  const auto host_start = std::chrono::steady_clock::now();
  CommHandle h = comm->all_reduce(buffer);
  const double issue_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - host_start).count();
  at::Tensor x = a;
  for (int i = 0; i < 200; ++i) x = at::matmul(x, a).div_(4096.0);  // well over 100 ms of GPU time
  at::cuda::CUDAEvent compute_done;
  compute_done.record();
  const double host_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - host_start).count();

  // Poll: the collective finishes while the compute behind it is still running.
  bool comm_finished_first = false;
  while (!compute_done.query()) {
    if (h.is_completed()) {
      comm_finished_first = !compute_done.query();
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  h.wait();  // orders the current stream after the collective; does not block the host
  c10::cuda::device_synchronize();
  EXPECT_TRUE(comm_finished_first)
      << "the all-reduce did not complete before the compute issued after it: it was not "
         "concurrent";
  EXPECT_LT(issue_ms, 20.0) << "issuing the all-reduce blocked the host";
  EXPECT_LT(host_ms, 50.0) << "issuing the collective and the compute blocked the host (all-reduce "
                           << issue_ms << " ms of it)";
  EXPECT_TRUE(at::allclose(buffer.cpu(), at::ones({64 << 20})));
}

}  // namespace
}  // namespace zerotrain::testing
