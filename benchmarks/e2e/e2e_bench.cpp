// e2e_bench: what the runtime costs end to end, on train_gpt's model
// (examples/train_gpt/gpt.h) and batches of its fortunes corpus.
//
// overhead (one process, world size 1): the same steps of the same model,
//   interleaved round by round, trained by
//     - a plain LibTorch loop with torch::optim::AdamW,
//     - a plain LibTorch loop with ATen's fused AdamW (_fused_adamw_, what
//       torch.optim.AdamW(fused=True) runs): the "same optimizer math" baseline,
//     - zerotrain at ZeRO stages 0, 1 and 2 (its fused AdamW).
//   Same hyper-parameters everywhere (constant lr, no clipping, weight decay on
//   every parameter). Prints ms/step, tokens/s, each row's time over the fused
//   plain loop (overhead) and the plain LibTorch-AdamW loop's time over each row
//   (speed-up), and every method's final loss as a sanity check.
//
// scaling (under torchrun, one stage per process): step time (the slowest
//   rank's median), tokens/s, model-state bytes per rank measured by the engine
//   next to `zerotrain estimate`'s prediction, and peak RSS per rank.
//
//   build/benchmarks/e2e_bench overhead [--layers 4 --width 256 --context 128 --batch 16]
//       [--steps 10 --rounds 5 --threads 2 --device cpu|cuda --dtype fp32|bf16]
//   torchrun --no-python --standalone --nproc-per-node=N build/benchmarks/e2e_bench scaling --stage S ...
//
// stage3 (under torchrun): ZeRO stage 3 against stage 2, one model and engine
//   each, interleaved round by round as in overhead: stage 2, stage 3
//   prefetching one block ahead, and stage 3 without prefetch (blocks never
//   persistent, DeepSpeed's default reuse distance). Prints the slowest rank's
//   median ms/step and each row's time over stage 2's.
//   torchrun --no-python --standalone --nproc-per-node=2 build/benchmarks/e2e_bench stage3 [--steps 5 --rounds 5]
//   benchmarks/e2e/scaling.sh   (N = 1, 2; stages 0-3; stage 3 with and without prefetch)
//   Stage 3: --prefetch-bucket N (stage3_prefetch_bucket_size; 0: no prefetch) and
//   --persistence N (stage3_param_persistence_threshold). Its model states are the
//   shard and the step's peak window of gathered units (memory_report()).
//
// offload (under torchrun): optimizer offload against the same stage without
//   it (stage 2), and stage 3 with optimizer and parameter offload against
//   stage 3, interleaved as above; each row's time over its baseline. On a
//   CPU-only machine host and device are the same memory: this measures the
//   mechanism's cost (the copies and the host step), not a transfer.
//   torchrun --no-python --standalone --nproc-per-node=2 build/benchmarks/e2e_bench offload [--stage3-only 0]
//
// checkpointing (one process): every block recomputed (InitOptions::recompute_units)
//   against the plain model, interleaved; ms/step, and the peak bytes above
//   what was live before a step (activations, gradients, buffers), counted by
//   an allocation counter in front of LibTorch's CPU allocator. Run at a few
//   depths by benchmarks/e2e/checkpointing.sh.
//   build/benchmarks/e2e_bench checkpointing --layers 4 [--steps 5 --rounds 3]
//
// GPU (when one is available): GPT-2 124M in bf16 at world size 1,
//   e2e_bench overhead --device cuda --dtype bf16 --layers 12 --width 768 --heads 12 --context 1024 --batch 8
//   python3 benchmarks/e2e/pytorch_gpt.py --device cuda ... (the same model from PyTorch, AdamW(fused=True))
// The plain loops then train bf16 parameters directly; zerotrain keeps fp32 master weights.

#include "corpus.h"
#include "gpt.h"
#include "comm/gather_values.h"
#include "support/counting_allocator.h"
#include "monitor/resources.h"  // peak memory; the GPU's peak FLOP/s, for MFU

#include <zerotrain/zerotrain.h>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace {

using zerotrain::testing::CountingAllocator;

struct Args {
  std::string mode;
  gpt::GptConfig model{256, 128, 4, 4, 256};
  int64_t batch = 16, steps = 10, rounds = 5, threads = 0, stage = 2;
  // Stage 3 (-1: the config's defaults).
  int64_t prefetch_bucket = -1, persistence = -1;
  std::string device = "cpu", dtype = "fp32", data = "/usr/share/games/fortunes";
};

Args parse(int argc, char** argv) {
  Args a;
  if (argc < 2) throw std::invalid_argument("e2e_bench: the first argument is the mode: overhead or scaling");
  a.mode = argv[1];
  if (a.mode != "overhead" && a.mode != "scaling" && a.mode != "stage3" && a.mode != "offload" &&
      a.mode != "checkpointing")
    throw std::invalid_argument("e2e_bench: unknown mode " + a.mode +
                                " (overhead, scaling, stage3, offload or checkpointing)");
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (a.model.set_option(k, v)) continue;
    if (k == "--batch") a.batch = std::stoll(v);
    else if (k == "--steps") a.steps = std::stoll(v);
    else if (k == "--rounds") a.rounds = std::stoll(v);
    else if (k == "--threads") a.threads = std::stoll(v);
    else if (k == "--stage") a.stage = std::stoll(v);
    else if (k == "--prefetch-bucket") a.prefetch_bucket = std::stoll(v);
    else if (k == "--persistence") a.persistence = std::stoll(v);
    else if (k == "--device") a.device = v;
    else if (k == "--dtype") a.dtype = v;
    else if (k == "--data") a.data = v;
    else throw std::invalid_argument("e2e_bench: unknown option " + k);
  }
  return a;
}

constexpr double kLr = 1e-3, kBeta1 = 0.9, kBeta2 = 0.95, kEps = 1e-8, kWeightDecay = 0.1;

using ConfigEdit = std::function<void(nlohmann::json&)>;

zerotrain::Config engine_config(const Args& a, int64_t stage, const ConfigEdit& edit = nullptr) {
  nlohmann::json j = {
      {"train_micro_batch_size_per_gpu", a.batch},
      {"gradient_accumulation_steps", 1},
      {"optimizer",
       {{"type", "AdamW"},
        {"params",
         {{"lr", kLr}, {"betas", {kBeta1, kBeta2}}, {"eps", kEps}, {"weight_decay", kWeightDecay}}}}},
      {"gradient_clipping", 0.0},
      {"zero_optimization", {{"stage", stage}, {"overlap_comm", true}}},
  };
  if (a.dtype == "bf16") j["bf16"] = {{"enabled", true}};
  if (stage == 3 && a.prefetch_bucket >= 0) j["zero_optimization"]["stage3_prefetch_bucket_size"] = a.prefetch_bucket;
  if (stage == 3 && a.persistence >= 0) j["zero_optimization"]["stage3_param_persistence_threshold"] = a.persistence;
  if (edit) edit(j);
  return zerotrain::Config::from_json(j);
}

gpt::Gpt make_model(const Args& a) {
  torch::manual_seed(1);
  gpt::Gpt m(a.model);
  m->to(torch::Device(a.device));
  if (a.dtype == "bf16") m->to(torch::kBFloat16);
  return m;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void sync(const std::string& device) {
  if (device != "cpu") torch::cuda::synchronize();
}

// One training method: runs `steps` steps from `batches` starting at batch `first`; returns the last loss.
using Method = std::function<double(int64_t first, int64_t steps)>;

struct Batches;

// A zerotrain engine's steps over `data`.
Method engine_method(const Batches& data, std::shared_ptr<gpt::Gpt> m, std::shared_ptr<zerotrain::Engine> e);

struct Interleaved {
  std::vector<std::vector<double>> per_step;  // seconds per step, each timed round, per method
  std::vector<double> last_loss;
};

// Round 0 warms up (allocations, optimizer state); rounds 1.. are timed, methods interleaved.
Interleaved interleave(const std::vector<Method>& methods, const Args& a) {
  Interleaved out{std::vector<std::vector<double>>(methods.size()), std::vector<double>(methods.size())};
  for (int64_t r = 0; r <= a.rounds; ++r)
    for (size_t k = 0; k < methods.size(); ++k) {
      sync(a.device);
      const auto start = std::chrono::steady_clock::now();
      out.last_loss[k] = methods[k](r * a.steps, a.steps);
      sync(a.device);
      const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (r > 0) out.per_step[k].push_back(t / static_cast<double>(a.steps));
    }
  return out;
}

struct Batches {
  std::vector<at::Tensor> x, y;
};

Batches make_batches(const Args& a, int64_t count, int rank) {
  const gpt::Corpus corpus = gpt::load_fortunes(a.data);
  Batches b;
  for (int64_t i = 0; i < count; ++i) {
    auto [x, y] =
        gpt::sample_batch(corpus.train, a.batch, a.model.context,
                          gpt::mix_seed({1, static_cast<uint64_t>(i), static_cast<uint64_t>(rank)}));
    b.x.push_back(x.to(torch::Device(a.device)));
    b.y.push_back(y.to(torch::Device(a.device)));
  }
  return b;
}

Method engine_method(const Batches& data, std::shared_ptr<gpt::Gpt> m, std::shared_ptr<zerotrain::Engine> e) {
  return [&data, m, e](int64_t first, int64_t steps) {
    double last = 0;
    for (int64_t i = first; i < first + steps; ++i) {
      at::Tensor loss = gpt::next_token_loss(*m, data.x[size_t(i)], data.y[size_t(i)]);
      e->backward(loss);
      e->step();
      last = loss.item<double>();
    }
    return last;
  };
}

void run_overhead(const Args& a) {
  const int64_t total = a.steps * (a.rounds + 1);
  const Batches data = make_batches(a, total, 0);
  auto comm = [] {
    zerotrain::DistributedOptions d;
    d.rank = 0;
    d.world_size = 1;
    return zerotrain::init_distributed(d);
  }();

  std::vector<std::string> names;
  std::vector<Method> methods;
  std::vector<std::shared_ptr<void>> keep;  // models, optimizers and engines live until the end

  {  // plain loop, torch::optim::AdamW
    auto m = std::make_shared<gpt::Gpt>(make_model(a));
    auto opt = std::make_shared<torch::optim::AdamW>(
        (*m)->parameters(),
        torch::optim::AdamWOptions(kLr).betas({kBeta1, kBeta2}).eps(kEps).weight_decay(kWeightDecay));
    keep.push_back(m);
    keep.push_back(opt);
    names.push_back("plain LibTorch loop, torch::optim::AdamW");
    methods.push_back([&data, m, opt](int64_t first, int64_t steps) {
      double last = 0;
      for (int64_t i = first; i < first + steps; ++i) {
        opt->zero_grad();
        at::Tensor loss = gpt::next_token_loss(*m, data.x[size_t(i)], data.y[size_t(i)]);
        loss.backward();
        opt->step();
        last = loss.item<double>();
      }
      return last;
    });
  }
  {  // plain loop, ATen's fused AdamW
    struct State {
      gpt::Gpt model{nullptr};
      std::vector<at::Tensor> params, m, v, steps;
    };
    auto s = std::make_shared<State>();
    s->model = make_model(a);
    for (const auto& p : s->model->parameters()) {
      s->params.push_back(p);
      s->m.push_back(torch::zeros_like(p));
      s->v.push_back(torch::zeros_like(p));
      s->steps.push_back(torch::zeros({}, p.options().dtype(torch::kFloat)));
    }
    keep.push_back(s);
    names.push_back("plain LibTorch loop, ATen _fused_adamw_");
    methods.push_back([&data, s](int64_t first, int64_t steps) {
      double last = 0;
      for (int64_t i = first; i < first + steps; ++i) {
        for (auto& p : s->params) p.mutable_grad() = at::Tensor();
        at::Tensor loss = gpt::next_token_loss(s->model, data.x[size_t(i)], data.y[size_t(i)]);
        loss.backward();
        std::vector<at::Tensor> grads;
        for (auto& p : s->params) grads.push_back(p.grad());
        for (auto& t : s->steps) t.add_(1);
        at::_fused_adamw_(s->params, grads, s->m, s->v, {}, s->steps, kLr, kBeta1, kBeta2, kWeightDecay, kEps,
                          false, false);
        last = loss.item<double>();
      }
      return last;
    });
  }
  for (int64_t stage = 0; stage <= 2; ++stage) {
    auto m = std::make_shared<gpt::Gpt>(make_model(a));
    zerotrain::InitOptions o;
    o.communicator = comm;
    auto e = std::make_shared<zerotrain::Engine>(zerotrain::initialize(m->ptr(), engine_config(a, stage), o));
    keep.push_back(m);
    keep.push_back(e);
    names.push_back("zerotrain ZeRO stage " + std::to_string(stage));
    methods.push_back(engine_method(data, m, e));
  }
  const Interleaved timed = interleave(methods, a);
  const std::vector<std::vector<double>>& per_step = timed.per_step;
  const std::vector<double>& last_loss = timed.last_loss;

  const double tokens = static_cast<double>(a.batch * a.model.context);
  const double fused = median(per_step[1]), libtorch = median(per_step[0]);
  std::printf(
      "model: %s, %.2fM parameters, %s on %s, batch %lld x %lld tokens, %lld thread(s); "
      "%lld steps x %lld timed rounds, median of rounds\n\n",
      a.model.to_string().c_str(), static_cast<double>(a.model.parameter_count()) / 1e6, a.dtype.c_str(),
      a.device.c_str(), static_cast<long long>(a.batch), static_cast<long long>(a.model.context),
      static_cast<long long>(at::get_num_threads()), static_cast<long long>(a.steps),
      static_cast<long long>(a.rounds));
  const torch::Device device(a.device);
  const double peak = zerotrain::monitor::peak_flops(zerotrain::monitor::device_name(device),
                                                     a.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat);
  std::printf(
      "| method | ms/step | tokens/s | TFLOPs%s | time / fused plain loop | LibTorch-AdamW loop / time "
      "| final loss |\n|---|---|---|---|---|---|---|\n",
      peak > 0 ? " (MFU)" : "");
  for (size_t k = 0; k < methods.size(); ++k) {
    const double t = median(per_step[k]);
    const double tflops = a.model.flops_per_token() * tokens / t / 1e12;
    char mfu[32] = "";
    if (peak > 0) std::snprintf(mfu, sizeof mfu, " (%.1f%%)", 100 * tflops * 1e12 / peak);
    std::printf("| %s | %.2f | %.0f | %.3g%s | %.3fx (%+.1f%%) | %.2fx | %.4f |\n", names[k].c_str(), t * 1e3,
                tokens / t, tflops, mfu, t / fused, 100 * (t / fused - 1), libtorch / t, last_loss[k]);
  }
}

void run_scaling(const Args& a) {
  auto comm = zerotrain::init_distributed();
  const int rank = comm->rank(), world = comm->world_size();
  const Batches data = make_batches(a, a.steps + 2, rank);
  gpt::Gpt model = make_model(a);
  zerotrain::InitOptions o;
  o.communicator = comm;
  std::optional<zerotrain::Engine> engine;
  try {
    engine.emplace(zerotrain::initialize(model.ptr(), engine_config(a, a.stage), o));
  } catch (const zerotrain::ConfigError& e) {
    if (rank == 0)
      std::printf("| %d | %lld | not run: %s |\n", world, static_cast<long long>(a.stage),
                  std::string(e.what()).substr(0, std::string(e.what()).find('\n')).c_str());
    return;
  }
  std::vector<double> times;
  for (int64_t i = 0; i < a.steps + 2; ++i) {
    sync(a.device);
    const auto start = std::chrono::steady_clock::now();
    at::Tensor loss = gpt::next_token_loss(model, data.x[size_t(i)], data.y[size_t(i)]);
    engine->backward(loss);
    engine->step();
    sync(a.device);
    if (i >= 2)
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  const zerotrain::MemoryReport mem = engine->memory_report();
  // Stage 3: the shard and the step's peak window of gathered units.
  const int64_t params = a.stage == 3 ? mem.parameter_shard + mem.peak_gathered_parameters : mem.parameters;
  const int64_t states = params + mem.gradients + mem.master_weights + mem.optimizer_states;
  const int64_t rss = zerotrain::monitor::peak_memory_bytes(torch::kCPU);
  // Every rank's median step time and memory, to rank 0.
  const std::vector<double> all = zerotrain::comm_detail::all_gather_values(
      *comm, torch::Device(a.device),
      std::vector<double>{median(times), static_cast<double>(states), static_cast<double>(rss)});
  if (rank != 0) return;
  double slowest = 0;
  std::string rss_list;
  for (int r = 0; r < world; ++r) {
    slowest = std::max(slowest, all[3 * size_t(r)]);
    rss_list +=
        (r ? ", " : "") + zerotrain::format_bytes(static_cast<int64_t>(all[3 * size_t(r) + 2]));
  }
  zerotrain::EstimateOptions eo;
  eo.parameters = a.model.parameter_count();
  eo.world_size = world;
  eo.dtype = a.dtype == "bf16" ? zerotrain::DType::kBFloat16 : zerotrain::DType::kFloat32;
  if (a.stage == 3) {
    // The window: units that stay gathered, the largest unit, the prefetch bucket.
    const zerotrain::Stage3Config& s3 = engine->config().zero().stage3;
    for (const zerotrain::UnitInfo& u : engine->units()) {
      if (!u.has_triggers || u.numel <= s3.param_persistence_threshold) eo.persistent += u.numel;
      else eo.largest_unit = std::max(eo.largest_unit, u.numel);
    }
    eo.prefetch_bucket = s3.prefetch_bucket_size;
    eo.reuse_distance = s3.max_reuse_distance;
    eo.max_live = s3.max_live_parameters;
  }
  const int64_t predicted = zerotrain::estimate_model_states(eo, static_cast<int>(a.stage)).device_total();
  const double tokens = static_cast<double>(a.batch * a.model.context * world);
  std::printf("| %d | %lld | %.1f | %.0f | %s | %s | %.2f | %s |\n", world, static_cast<long long>(a.stage),
              slowest * 1e3, tokens / slowest, zerotrain::format_bytes(states).c_str(),
              zerotrain::format_bytes(predicted).c_str(),
              static_cast<double>(states) / static_cast<double>(predicted), rss_list.c_str());
}

// One engine per row, stepped interleaved round by round; every row's
// slowest-rank median ms/step over its baseline row's. With `peak_bytes`, each
// row then runs one more step alone under the allocation counter.
struct Row {
  std::string name;
  int64_t stage;
  ConfigEdit edit;
  size_t baseline = 0;  // the row this one is compared with
  bool recompute = false;
  int64_t prefetch = -1, persistence = -1;  // stage 3
};

void run_rows(const Args& a, const std::vector<Row>& rows, bool peak_bytes) {
  auto comm = zerotrain::init_distributed();
  const int rank = comm->rank();
  const Batches data = make_batches(a, a.steps * (a.rounds + 1) + 1, rank);
  std::vector<Method> methods;
  std::vector<std::shared_ptr<zerotrain::Engine>> engines;
  std::vector<std::shared_ptr<gpt::Gpt>> models;
  for (const Row& row : rows) {
    Args ra = a;
    ra.prefetch_bucket = row.prefetch;
    ra.persistence = row.persistence;
    auto m = std::make_shared<gpt::Gpt>(make_model(a));
    zerotrain::InitOptions o;
    o.communicator = comm;
    o.recompute_units = row.recompute;
    auto e =
        std::make_shared<zerotrain::Engine>(zerotrain::initialize(m->ptr(), engine_config(ra, row.stage, row.edit), o));
    methods.push_back(engine_method(data, m, e));
    engines.push_back(e);
    models.push_back(m);
  }
  const Interleaved timed = interleave(methods, a);
  std::vector<double> medians;
  for (const auto& v : timed.per_step) medians.push_back(median(v));
  const std::vector<double> all = zerotrain::comm_detail::all_gather_values(*comm, torch::Device(a.device), medians);
  std::vector<int64_t> peaks(rows.size(), 0);
  if (peak_bytes) {
    CountingAllocator& alloc = CountingAllocator::install();
    const int64_t last = a.steps * (a.rounds + 1);
    for (size_t k = 0; k < rows.size(); ++k) {
      alloc.reset_peak();
      const int64_t before = alloc.live();
      methods[k](last, 1);
      peaks[k] = alloc.peak() - before;
    }
  }
  if (rank != 0) return;
  std::vector<double> slowest(methods.size(), 0);
  for (size_t i = 0; i < all.size(); ++i) slowest[i % methods.size()] = std::max(slowest[i % methods.size()], all[i]);
  std::printf("model: %s, %.2fM parameters, %s, batch %lld x %lld tokens per rank, %d ranks; %lld steps x %lld "
              "timed rounds, interleaved\n\n",
              a.model.to_string().c_str(), static_cast<double>(a.model.parameter_count()) / 1e6, a.dtype.c_str(),
              static_cast<long long>(a.batch), static_cast<long long>(a.model.context), comm->world_size(),
              static_cast<long long>(a.steps), static_cast<long long>(a.rounds));
  std::printf("| configuration | ms/step (slowest rank) | time / baseline |%s final loss |\n|---|---|---|%s---|\n",
              peak_bytes ? " peak bytes in a step (rank 0) | peak / baseline's |" : "",
              peak_bytes ? "---|---|" : "");
  for (size_t k = 0; k < methods.size(); ++k) {
    const size_t b = rows[k].baseline;
    std::printf("| %s | %.1f | %.3fx (%s) |", rows[k].name.c_str(), slowest[k] * 1e3, slowest[k] / slowest[b],
                rows[b].name.c_str());
    if (peak_bytes)
      std::printf(" %s | %.3fx |", zerotrain::format_bytes(peaks[k]).c_str(),
                  static_cast<double>(peaks[k]) / static_cast<double>(peaks[b]));
    std::printf(" %.4f |\n", timed.last_loss[k]);
  }
}

void run_stage3(const Args& a) {
  const int64_t block = 12 * a.model.width * a.model.width + 13 * a.model.width;
  run_rows(a,
           {{"stage 2", 2, nullptr},
            {"stage 3, prefetch one block (" + std::to_string(block) + " elements)", 3, nullptr, 0, false, block, 0},
            {"stage 3, no prefetch", 3, nullptr, 0, false, 0, 0}},
           false);
}

void run_offload(const Args& a) {
  const ConfigEdit optimizer = [](nlohmann::json& j) {
    j["zero_optimization"]["offload_optimizer"] = {{"device", "cpu"}};
  };
  const ConfigEdit both = [](nlohmann::json& j) {
    j["zero_optimization"]["offload_optimizer"] = {{"device", "cpu"}};
    j["zero_optimization"]["offload_param"] = {{"device", "cpu"}};
  };
  run_rows(a,
           {{"stage 2", 2, nullptr},
            {"stage 2, offload_optimizer", 2, optimizer, 0},
            {"stage 3", 3, nullptr, 2},
            {"stage 3, offload_optimizer + offload_param", 3, both, 2}},
           false);
}

void run_checkpointing(const Args& a) {
  run_rows(a, {{"stage 0, plain", 0, nullptr}, {"stage 0, every block recomputed", 0, nullptr, 0, true}}, true);
}

}  // namespace

int main(int argc, char** argv) try {
  const Args a = parse(argc, argv);
  if (a.threads > 0) at::set_num_threads(static_cast<int>(a.threads));
  if (a.mode == "overhead") run_overhead(a);
  else if (a.mode == "stage3") run_stage3(a);
  else if (a.mode == "offload") run_offload(a);
  else if (a.mode == "checkpointing") run_checkpointing(a);
  else run_scaling(a);
  return 0;
} catch (const c10::Error& e) {
  std::fprintf(stderr, "e2e_bench: %s\n", e.what_without_backtrace());
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "e2e_bench: %s\n", e.what());
  return 2;
}
