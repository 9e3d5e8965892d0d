// engine_bench: step time and per-rank memory of ZeRO stages 0, 1 and 2, each
// with overlap_comm off and on, on an MLP. The baseline, measured in the same
// run, is stage 0 without overlap (DeepSpeed's ZeRO-0 data parallelism); the
// ratio is each setting's step time over the baseline's.
//
//   torchrun --no-python --standalone --nproc-per-node=2 build/benchmarks/engine_bench
//   ... engine_bench --width 1024 --layers 8 --batch 16 --steps 10 --dtype fp32|bf16 --device cpu|cuda

#include <zerotrain/zerotrain.h>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace {

struct Args {
  int64_t width = 1024, layers = 8, batch = 16, steps = 10;
  std::string dtype = "fp32", device = "cpu";
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--width") a.width = std::stoll(v);
    else if (k == "--layers") a.layers = std::stoll(v);
    else if (k == "--batch") a.batch = std::stoll(v);
    else if (k == "--steps") a.steps = std::stoll(v);
    else if (k == "--dtype") a.dtype = v;
    else if (k == "--device") a.device = v;
    else throw std::invalid_argument("engine_bench: unknown option " + k);
  }
  return a;
}

std::shared_ptr<torch::nn::Sequential> make_mlp(const Args& a) {
  torch::manual_seed(0);
  auto seq = std::make_shared<torch::nn::Sequential>();
  for (int64_t i = 0; i < a.layers; ++i) {
    (*seq)->push_back(torch::nn::Linear(a.width, a.width));
    (*seq)->push_back(torch::nn::ReLU());
  }
  (*seq)->to(torch::Device(a.device));
  return seq;
}

struct Result {
  double median_ms = 0;
  int64_t memory = 0;
};

Result measure(const Args& a, int stage, bool overlap, const std::shared_ptr<zerotrain::Communicator>& comm) {
  nlohmann::json j = {
      {"train_micro_batch_size_per_gpu", a.batch},
      {"gradient_accumulation_steps", 1},
      {"gradient_clipping", 1.0},
      {"optimizer", {{"type", "AdamW"}, {"params", {{"lr", 1e-4}}}}},
      {"zero_optimization", {{"stage", stage}, {"overlap_comm", overlap},
                             {"reduce_bucket_size", 2 * a.width * a.width}}}};
  if (a.dtype == "bf16") j["bf16"] = {{"enabled", true}};
  auto seq = make_mlp(a);
  zerotrain::InitOptions o;
  o.communicator = comm;
  zerotrain::Engine engine = zerotrain::initialize((*seq).ptr(), zerotrain::Config::from_json(j), o);
  const auto dt = a.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat;
  torch::manual_seed(1 + comm->rank());
  const auto x = torch::randn({a.batch, a.width}, torch::TensorOptions(torch::Device(a.device)).dtype(dt));
  std::vector<double> times;
  for (int64_t s = 0; s < a.steps + 2; ++s) {
    comm->barrier().wait();
    const auto t0 = std::chrono::steady_clock::now();
    at::Tensor loss = (*seq)->forward(x).to(torch::kFloat).square().mean();
    engine.backward(loss);
    engine.step();
    if (a.device != "cpu") engine.module()->parameters()[0].sum().item<float>();  // wait for the device
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (s >= 2) times.push_back(ms);  // two warm-up steps
  }
  std::sort(times.begin(), times.end());
  return {times[times.size() / 2], engine.memory_report().total()};
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  auto comm = zerotrain::init_distributed();
  std::vector<std::pair<std::string, Result>> rows;
  for (int stage : {0, 1, 2})
    for (bool overlap : {false, true})
      rows.emplace_back("stage " + std::to_string(stage) + (overlap ? " overlap" : "        "),
                        measure(a, stage, overlap, comm));
  if (comm->rank() == 0) {
    const double params = static_cast<double>(a.layers * (a.width * a.width + a.width));
    std::printf("engine_bench: N=%d, %s on %s, MLP %lld x %lld (%.1f M params), batch %lld per rank, median of %lld steps\n",
                comm->world_size(), a.dtype.c_str(), a.device.c_str(), static_cast<long long>(a.layers),
                static_cast<long long>(a.width), params / 1e6, static_cast<long long>(a.batch),
                static_cast<long long>(a.steps));
    std::printf("%-18s %12s %10s %16s %10s\n", "setting", "step ms", "ratio", "rank memory MB", "ratio");
    const Result& base = rows.front().second;
    for (const auto& [name, r] : rows)
      std::printf("%-18s %12.1f %10.2f %16.1f %10.2f\n", name.c_str(), r.median_ms,
                  r.median_ms / base.median_ms, r.memory / 1e6,
                  static_cast<double>(r.memory) / static_cast<double>(base.memory));
  }
  comm->barrier().wait();
  return 0;
}
