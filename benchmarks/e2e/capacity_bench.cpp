// capacity_bench: the ZeRO claim, shown. For ZeRO stages 0-3, the widest of
// train_gpt's GPTs (a width ladder at fixed depth) that trains under a fixed
// per-process memory cap, next to the width `zerotrain estimate` predicts.
//
// Each rank counts the bytes of every CPU tensor storage with an allocation
// counter in front of LibTorch's CPU allocator (not the engine's bookkeeping):
// the peak from just before the model is built to the end of two training
// steps, above what was live before. A width fits when every rank's peak is
// within the cap. At stage 3 the model is built in a zerotrain::ShardedInit
// scope (DeepSpeed's zero.Init), and each block is gathered for its forward
// and backward only (persistence threshold 0, a prefetch bucket of one block,
// reuse distance 0).
// The estimate is zerotrain::estimate_model_states with the stage-3 window
// (the root unit, which has no triggers and stays gathered, the largest
// block and the prefetch bucket); the measured peak adds activations, Gloo's
// staging of each all-gather and the reduce buckets.
//
// Two more rows: stage 3 with optimizer and parameter offload, and the same
// with every block recomputed (activation checkpointing). What counts against
// the cap there is device memory: the peak less the bytes the engine keeps in
// host memory (memory_report().host, allocated at initialize and live
// throughout; tests/engine/offload_test.cpp checks it against the buffers'
// sizes). On a CPU-only machine both are the same memory, so this is the
// device budget a GPU run of the same model would need, measured here; the
// estimate is `zerotrain estimate --offload-optimizer --offload-param`.
//
//   torchrun --no-python --standalone --nproc-per-node=2 build/benchmarks/capacity_bench
//       [--cap-mb 96 --dtype bf16 --layers 4 --heads 4 --context 64 --batch 2 --widths 64,96,...]

#include "corpus.h"
#include "gpt.h"
#include "comm/gather_values.h"
#include "support/counting_allocator.h"

#include <zerotrain/zerotrain.h>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

using zerotrain::testing::CountingAllocator;

struct Args {
  gpt::GptConfig model{256, 64, 4, 4, 64};
  int64_t batch = 2, cap_mb = 96;
  std::string dtype = "bf16";
  std::vector<int64_t> widths{64, 128, 192, 256, 320, 384, 448, 512, 576, 640, 704, 768};
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (a.model.set_option(k, v)) continue;
    if (k == "--batch") a.batch = std::stoll(v);
    else if (k == "--cap-mb") a.cap_mb = std::stoll(v);
    else if (k == "--dtype") a.dtype = v;
    else if (k == "--widths") {
      a.widths.clear();
      std::stringstream s(v);
      for (std::string w; std::getline(s, w, ',');) a.widths.push_back(std::stoll(w));
    } else {
      throw std::invalid_argument("capacity_bench: unknown option " + k);
    }
  }
  return a;
}

/// A row of the table: a ZeRO stage, with or without offload (optimizer and
/// parameters) and activation checkpointing (every block recomputed).
struct Setup {
  int stage;
  bool offload = false;
  bool recompute = false;
  std::string label() const {
    return std::to_string(stage) + (offload ? " + offload" : "") + (recompute ? " + checkpointing" : "");
  }
};

zerotrain::Config config_for(const Args& a, const Setup& setup, int64_t block_numel) {
  const int stage = setup.stage;
  nlohmann::json j = {
      {"train_micro_batch_size_per_gpu", a.batch},
      {"gradient_accumulation_steps", 1},
      {"optimizer", {{"type", "AdamW"}, {"params", {{"lr", 1e-3}, {"weight_decay", 0.1}}}}},
      {"gradient_clipping", 1.0},
      {"zero_optimization", {{"stage", stage}, {"overlap_comm", true}}},
  };
  if (stage == 3) {
    j["zero_optimization"]["stage3_param_persistence_threshold"] = 0;
    j["zero_optimization"]["stage3_prefetch_bucket_size"] = block_numel;
    j["zero_optimization"]["stage3_max_reuse_distance"] = 0;
  }
  if (setup.offload) {
    j["zero_optimization"]["offload_optimizer"] = {{"device", "cpu"}};
    j["zero_optimization"]["offload_param"] = {{"device", "cpu"}};
  }
  if (a.dtype == "bf16") j["bf16"] = {{"enabled", true}};
  return zerotrain::Config::from_json(j);
}

int64_t block_numel(int64_t width) { return 12 * width * width + 13 * width; }  // attention, MLP, two norms

// zerotrain estimate's per-rank bytes for the GPT at `width`, with stage 3's
// window: the root unit (embeddings, final norm: no triggers, so always
// gathered), the largest unit (a block) and the prefetch bucket (one block).
int64_t estimate(const Args& a, const Setup& setup, int64_t width, int world) {
  gpt::GptConfig m = a.model;
  m.width = width;
  zerotrain::EstimateOptions eo;
  eo.parameters = m.parameter_count();
  eo.world_size = world;
  eo.dtype = a.dtype == "bf16" ? zerotrain::DType::kBFloat16 : zerotrain::DType::kFloat32;
  eo.largest_unit = block_numel(width);
  eo.prefetch_bucket = block_numel(width);
  eo.persistent = eo.parameters - m.layers * block_numel(width);
  eo.offload_optimizer = eo.offload_param = setup.offload;
  return zerotrain::estimate_model_states(eo, setup.stage).device_total();
}

// Builds, initializes and trains two steps at `width`; returns the largest
// rank's peak of live tensor bytes above those live before, less what the
// engine keeps in host memory (offload).
int64_t measure(const Args& a, const Setup& setup, int64_t width, const std::shared_ptr<zerotrain::Communicator>& comm,
                CountingAllocator& alloc, const gpt::Corpus& corpus) {
  gpt::GptConfig m = a.model;
  m.width = width;
  const int stage = setup.stage;
  const zerotrain::Config config = config_for(a, setup, block_numel(width));
  int64_t host = 0;
  std::vector<std::pair<at::Tensor, at::Tensor>> batches;
  for (uint64_t i = 0; i < 2; ++i)
    batches.push_back(gpt::sample_batch(corpus.train, a.batch, m.context,
                                        gpt::mix_seed({1, i, static_cast<uint64_t>(comm->rank())})));
  alloc.reset_peak();
  const int64_t before = alloc.live();
  {
    zerotrain::InitOptions o;
    o.communicator = comm;
    o.recompute_units = setup.recompute;
    torch::manual_seed(1);
    std::optional<gpt::Gpt> model;
    {
      std::optional<zerotrain::ShardedInit> scope;
      if (stage == 3) scope.emplace(comm, config);
      model.emplace(m);
      if (scope) {
        scope->finish();
        o.sharded_init = scope->parameters();
      }
    }
    zerotrain::Engine engine = zerotrain::initialize(model->ptr(), config, o);
    for (const auto& [x, y] : batches) {
      engine.backward(gpt::next_token_loss(*model, x, y));
      engine.step();
    }
    host = engine.memory_report().host;
  }
  const std::vector<int64_t> peaks = zerotrain::comm_detail::all_gather_values(
      *comm, torch::kCPU, std::vector<int64_t>{alloc.peak() - before - host});
  return *std::max_element(peaks.begin(), peaks.end());
}

}  // namespace

int main(int argc, char** argv) try {
  CountingAllocator& alloc = CountingAllocator::install();
  const Args a = parse(argc, argv);
  auto comm = zerotrain::init_distributed();
  const int64_t cap = a.cap_mb * 1'000'000;
  const bool print = comm->rank() == 0;
  if (print) {
    std::printf("cap %s per process, N = %d, %s, GPT with %lld layers, context %lld, batch %lld; widths %lld..%lld\n\n",
                zerotrain::format_bytes(cap).c_str(), comm->world_size(), a.dtype.c_str(),
                static_cast<long long>(a.model.layers), static_cast<long long>(a.model.context),
                static_cast<long long>(a.batch), static_cast<long long>(a.widths.front()),
                static_cast<long long>(a.widths.back()));
    std::printf("| setup | widest that fits (measured) | parameters | parameters / stage 0's | measured peak | "
                "estimate | widest the estimate fits | next width's measured peak |\n"
                "|---|---|---|---|---|---|---|---|\n");
  }
  const gpt::Corpus corpus = gpt::load_fortunes("/usr/share/games/fortunes");
  int64_t stage0_params = 0;  // the baseline, measured in this run
  const std::vector<Setup> setups{{0}, {1}, {2}, {3}, {3, true, false}, {3, true, true}};
  for (const Setup& setup : setups) {
    const int stage = setup.stage;
    std::optional<std::pair<int64_t, int64_t>> best, first_over;  // width, measured peak
    for (int64_t width : a.widths) {
      const int64_t peak = measure(a, setup, width, comm, alloc, corpus);
      if (peak > cap) {
        first_over = {width, peak};
        break;  // the peak grows with the width
      }
      best = {width, peak};
    }
    std::optional<int64_t> estimate_best;
    for (int64_t width : a.widths)
      if (estimate(a, setup, width, comm->world_size()) <= cap) estimate_best = width;
    if (!print) continue;
    if (!best) {
      std::printf("| %s | none of the widths | | | | | | |\n", setup.label().c_str());
      continue;
    }
    gpt::GptConfig m = a.model;
    m.width = best->first;
    if (stage == 0) stage0_params = m.parameter_count();  // the first row
    char ratio[32] = "-";
    if (stage0_params > 0)
      std::snprintf(ratio, sizeof ratio, "%.2fx", static_cast<double>(m.parameter_count()) / stage0_params);
    const std::string next =
        first_over ? std::to_string(first_over->first) + ": " + zerotrain::format_bytes(first_over->second)
                   : std::string("(the ladder ends)");
    std::printf("| %s | %lld | %.2fM | %s | %s | %s | %s | %s |\n", setup.label().c_str(),
                static_cast<long long>(best->first),
                static_cast<double>(m.parameter_count()) / 1e6, ratio,
                zerotrain::format_bytes(best->second).c_str(),
                zerotrain::format_bytes(estimate(a, setup, best->first, comm->world_size())).c_str(),
                estimate_best ? std::to_string(*estimate_best).c_str() : "none", next.c_str());
    std::fflush(stdout);
  }
  return 0;
} catch (const c10::Error& e) {
  std::fprintf(stderr, "capacity_bench: %s\n", e.what_without_backtrace());
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "capacity_bench: %s\n", e.what());
  return 2;
}
