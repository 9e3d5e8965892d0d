// checkpoint_bench: save and load time and throughput per rank against the
// raw speed of the same disk measured in the same run (each rank writing, then
// reading, as many bytes as its checkpoint file with write + fsync), and the
// peak memory of `zerotrain checkpoint export` against the model's size.
//
//   torchrun --no-python --standalone --nproc-per-node=2 build/benchmarks/checkpoint_bench
//   ... checkpoint_bench --params-m 64 --repeats 3 --dir /tmp/zt_ckpt_bench --cli build/zerotrain
//
// The model is fp32 Linear(4096, 4096) layers (16.8 M parameters each) under
// ZeRO stage 2 with AdamW; a rank's file holds its shard of the master
// weights and both moments (12 bytes per parameter / N).

#include <zerotrain/zerotrain.h>

#include "checkpoint/file_io.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>


namespace {

struct Args {
  int64_t params_m = 64;
  int repeats = 3;
  std::string dir = "/tmp/zt_ckpt_bench";
  std::string cli;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--params-m") a.params_m = std::stoll(v);
    else if (k == "--repeats") a.repeats = std::stoi(v);
    else if (k == "--dir") a.dir = v;
    else if (k == "--cli") a.cli = v;
    else throw std::invalid_argument("checkpoint_bench: unknown option " + k);
  }
  return a;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// The slowest rank's time of `fn`, between barriers (a collective save ends
// when the last rank is done).
template <typename Fn>
double timed(zerotrain::Communicator& comm, Fn&& fn) {
  comm.barrier().wait();
  const auto t = std::chrono::steady_clock::now();
  fn();
  comm.barrier().wait();
  at::Tensor s = at::tensor({seconds_since(t)}, at::kDouble);
  comm.all_reduce(s, zerotrain::ReduceOp::kMax).wait();
  return s.item<double>();
}

void raw_write(const std::string& path, const std::vector<char>& buf) {
  zerotrain::ckpt::OutputFile f(path);
  f.write(buf.data(), buf.size());
  f.sync_and_close();
}

void raw_read(const std::string& path, std::vector<char>& buf) {
  const zerotrain::ckpt::InputFile f(path);
  for (uint64_t pos = 0; pos < f.size(); pos += buf.size())
    f.read_at(pos, buf.data(), static_cast<size_t>(std::min<uint64_t>(buf.size(), f.size() - pos)));
}

// Runs the export command and reads the memory line it prints: the
// resident bytes before exporting and the process's peak (VmHWM).
std::pair<int64_t, int64_t> export_memory(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) throw std::runtime_error("checkpoint_bench: cannot run " + cmd);
  char line[512];
  long long before = -1, peak = -1;
  while (fgets(line, sizeof line, p))
    std::sscanf(line, "memory: resident %lld bytes before the export, peak %lld bytes", &before, &peak);
  if (pclose(p) != 0 || before < 0 || peak < 0) throw std::runtime_error("checkpoint_bench: export failed: " + cmd);
  return {before, peak};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  auto comm = zerotrain::init_distributed();
  const int rank = comm->rank(), n = comm->world_size();
  const int64_t layers = std::max<int64_t>(1, a.params_m * 1'000'000 / (4096 * 4097));
  torch::manual_seed(0);
  torch::nn::Sequential model;
  for (int64_t i = 0; i < layers; ++i) model->push_back(torch::nn::Linear(4096, 4096));
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();

  nlohmann::json j = {{"train_micro_batch_size_per_gpu", 1},
                      {"gradient_accumulation_steps", 1},
                      {"optimizer", {{"type", "AdamW"}, {"params", {{"lr", 1e-3}}}}},
                      {"zero_optimization", {{"stage", 2}}}};
  zerotrain::InitOptions io;
  io.communicator = comm;
  zerotrain::Engine engine = zerotrain::initialize(model.ptr(), zerotrain::Config::from_json(j), io);
  if (rank == 0) zerotrain::ckpt::remove_tree(a.dir);
  comm->barrier().wait();

  // A first save tells each rank its file size; the raw baseline moves as many bytes.
  engine.save_checkpoint(a.dir, "bench");
  char name[64];
  std::snprintf(name, sizeof name, "bench/rank_%05d.safetensors", rank);
  const uint64_t file_bytes = zerotrain::ckpt::InputFile(zerotrain::ckpt::join_path(a.dir, name)).size();
  std::vector<char> buf(static_cast<size_t>(file_bytes), 1);
  std::vector<char> chunk(size_t{8} << 20);
  const std::string raw = zerotrain::ckpt::join_path(a.dir, "raw_rank" + std::to_string(rank) + ".bin");

  std::vector<double> raw_w, save, raw_r, load;
  for (int r = 0; r < a.repeats; ++r) {  // interleaved, so drift hits every method alike
    raw_w.push_back(timed(*comm, [&] { raw_write(raw, buf); }));
    save.push_back(timed(*comm, [&] { engine.save_checkpoint(a.dir, "bench"); }));
    raw_r.push_back(timed(*comm, [&] { raw_read(raw, chunk); }));
    load.push_back(timed(*comm, [&] { engine.load_checkpoint(a.dir, "bench"); }));
  }
  const double mb = static_cast<double>(file_bytes) / 1e6;
  if (rank == 0) {
    std::printf("checkpoint_bench: %lld parameters (%.0f MB fp32), ZeRO stage 2, N = %d, %d repeats (median)\n",
                static_cast<long long>(params), params * 4 / 1e6, n, a.repeats);
    std::printf("per-rank file: %.1f MB (master + exp_avg + exp_avg_sq shard)\n\n", mb);
    std::printf("%-28s %10s %12s %8s\n", "operation", "seconds", "MB/s/rank", "ratio");
    const double rw = median(raw_w), sv = median(save), rr = median(raw_r), ld = median(load);
    std::printf("%-28s %10.3f %12.0f %8.2f\n", "raw write + fsync", rw, mb / rw, 1.0);
    std::printf("%-28s %10.3f %12.0f %8.2f\n", "save_checkpoint", sv, mb / sv, rw / sv);
    std::printf("%-28s %10.3f %12.0f %8.2f\n", "raw read", rr, mb / rr, 1.0);
    std::printf("%-28s %10.3f %12.0f %8.2f\n", "load_checkpoint (verified)", ld, mb / ld, rr / ld);
  }
  comm->barrier().wait();
  std::fflush(stdout);
  if (rank == 0 && !a.cli.empty()) {
    const std::string out = zerotrain::ckpt::join_path(a.dir, "export.safetensors");
    const auto [base, peak] = export_memory(a.cli + " checkpoint export " + a.dir + " --tag bench --out " + out);
    const double largest = 4096.0 * 4096 * 4;
    std::printf("\nexport (zerotrain checkpoint export, fp32 safetensors):\n");
    std::printf("  model %.0f MB, largest tensor %.0f MB\n", params * 4 / 1e6, largest / 1e6);
    std::printf("  peak RSS %.0f MB, %.0f MB before exporting (the loaded binary): the export's own %.0f MB "
                "= %.2f x the model, %.2f x the largest tensor\n",
                peak / 1e6, base / 1e6, (peak - base) / 1e6, (peak - base) / (params * 4.0),
                (peak - base) / largest);
  }
  comm->barrier().wait();
  if (rank == 0) zerotrain::ckpt::remove_tree(a.dir);
  return 0;
}
