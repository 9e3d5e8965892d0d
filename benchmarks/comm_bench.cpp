// comm_bench: algorithm and bus bandwidth of all-reduce, reduce-scatter and
// all-gather through zerotrain's Communicator, next to the same collective
// called directly on the c10d backend in the same run (the baseline; the ratio
// is zerotrain's time over the backend's, so 1.00 means no overhead).
//
//   torchrun --no-python --standalone --nproc-per-node=4 build/benchmarks/comm_bench
//   ... comm_bench --min-bytes 4096 --max-bytes 268435456 --device cpu|cuda
//
// Bandwidths follow nccl-tests: algbw = S / t, where S is the full buffer (the
// all-reduce tensor, the reduce-scatter input, the all-gather output), and
// busbw = algbw x 2(N-1)/N for all-reduce and x (N-1)/N for the other two.

#include <zerotrain/distributed.h>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace {

struct Args {
  int64_t min_bytes = 4 << 10;
  int64_t max_bytes = 256 << 20;
  std::string device = "cpu";
  double seconds_per_point = 2.0;  // measuring budget per (collective, size)
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : "";
    if (k == "--min-bytes") a.min_bytes = std::atoll(v), ++i;
    else if (k == "--max-bytes") a.max_bytes = std::atoll(v), ++i;
    else if (k == "--device") a.device = v, ++i;
    else if (k == "--seconds-per-point") a.seconds_per_point = std::atof(v), ++i;
    else {
      std::fprintf(stderr, "comm_bench: unknown argument %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

void device_sync(const at::Device& d) {
  if (d.is_cuda()) at::empty({1}, at::TensorOptions().device(d)).cpu();  // drains the stream
}

/// Seconds for `iters` calls, all ranks starting together.
double timed_loop(zerotrain::Communicator& comm, const at::Device& d, int iters,
                  const std::function<void()>& call) {
  comm.barrier().wait();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) call();
  device_sync(d);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// Median seconds per call of `ours` and `raw`, measured in alternating rounds
/// so that drift on a busy machine affects both alike.
std::pair<double, double> time_both(zerotrain::Communicator& comm, const at::Device& d,
                                    double budget, const std::function<void()>& ours,
                                    const std::function<void()>& raw) {
  constexpr int kRounds = 5;
  ours();
  raw();
  const double one = timed_loop(comm, d, 1, ours);
  // Every rank must run the same count: agree on rank 0's estimate.
  at::Tensor iters = at::full(
      {1}, std::max(1.0, std::min(100.0, budget / (2 * kRounds) / std::max(one, 1e-6))),
      at::kDouble);
  comm.broadcast(iters, 0).wait();
  const int n = static_cast<int>(iters.item<double>());
  std::vector<double> a, b;
  for (int r = 0; r < kRounds; ++r) {
    a.push_back(timed_loop(comm, d, n, ours));
    b.push_back(timed_loop(comm, d, n, raw));
  }
  return {median(a), median(b)};
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  auto comm = zerotrain::init_distributed();
  const int n = comm->world_size(), rank = comm->rank();
  const at::Device device(args.device == "cuda" ? at::kCUDA : at::kCPU);
  auto backend = comm->process_group()->getBackend(device.type());
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(device);
  if (rank == 0) {
    std::printf("# comm_bench: world size %d, %s backend, float32, %s tensors\n", n,
                backend->getBackendName().c_str(), args.device.c_str());
    std::printf("| collective | size | zerotrain us | algbw GB/s | busbw GB/s | c10d us | ratio |\n");
    std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
  }
  for (const char* op : {"all_reduce", "reduce_scatter", "all_gather"}) {
    for (int64_t bytes = args.min_bytes; bytes <= args.max_bytes; bytes *= 4) {
      const int64_t full = std::max<int64_t>(n, bytes / 4 / n * n);  // elements, a multiple of n
      at::Tensor big = at::ones({full}, opts);
      at::Tensor shard = at::ones({full / n}, opts);
      std::function<void()> ours, raw;
      double bus_factor = double(n - 1) / n;
      if (std::strcmp(op, "all_reduce") == 0) {
        bus_factor *= 2;
        ours = [&] { comm->all_reduce(big).wait(); };
        raw = [&] {
          std::vector<at::Tensor> v{big};
          backend->allreduce(v)->wait();
        };
      } else if (std::strcmp(op, "reduce_scatter") == 0) {
        ours = [&] { comm->reduce_scatter(shard, big).wait(); };
        raw = [&] { backend->_reduce_scatter_base(shard, big)->wait(); };
      } else {
        ours = [&] { comm->all_gather(big, shard).wait(); };
        raw = [&] { backend->_allgather_base(big, shard)->wait(); };
      }
      const auto [t_ours, t_raw] = time_both(*comm, device, args.seconds_per_point, ours, raw);
      const double size = static_cast<double>(full) * 4;
      if (rank == 0) {
        const double algbw = size / t_ours / 1e9;
        std::printf("| %s | %s | %.0f | %.3f | %.3f | %.0f | %.2f |\n", op,
                    size >= (1 << 20) ? (std::to_string(int64_t(size) >> 20) + " MB").c_str()
                                      : (std::to_string(int64_t(size) >> 10) + " KB").c_str(),
                    t_ours * 1e6, algbw, algbw * bus_factor, t_raw * 1e6, t_ours / t_raw);
        std::fflush(stdout);
      }
    }
  }
  if (rank == 0) std::printf("\n%s", comm->stats().to_string().c_str());
  return 0;
}
