// grad_memory_bench: the gradient bytes a backward pass adds, on train_gpt's
// GPT, for a plain LibTorch loop (the baseline, measured in the same run:
// backward allocates every parameter's .grad) and for zerotrain at ZeRO
// stages 1 and 2 (default config, default wrap policy). An allocation
// counter in front of LibTorch's CPU allocator measures the peak of live
// CPU storage bytes during backward above the bytes live before it; the
// engine's own bookkeeping is not used. The ratio is each row's transient
// over the plain loop's. Results in docs/performance.md ("Gradient memory
// during backward").
//
//   torchrun --no-python --standalone --nproc-per-node=2 build/benchmarks/grad_memory_bench
//       [--layers 8 --width 256 --heads 4 --context 64 --batch 1 --steps 3]

#include "gpt.h"
#include "support/counting_allocator.h"

#include <zerotrain/zerotrain.h>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdio>
#include <string>
#include <vector>

namespace {

using zerotrain::testing::CountingAllocator;

struct Args {
  gpt::GptConfig model{256, 64, 8, 4, 256};
  int64_t batch = 1, steps = 3;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (a.model.set_option(k, v)) continue;
    if (k == "--batch") a.batch = std::stoll(v);
    else if (k == "--steps") a.steps = std::stoll(v);
    else throw std::invalid_argument("grad_memory_bench: unknown option " + k);
  }
  return a;
}

struct Batch {
  at::Tensor x, y;
};
Batch batch_of(const Args& a, int rank, int64_t step) {
  torch::manual_seed(1000 * step + rank);
  const at::Tensor t = torch::randint(0, a.model.vocab_size, {a.batch, a.model.context + 1});
  return {t.narrow(1, 0, a.model.context), t.narrow(1, 1, a.model.context)};
}

/// The largest backward transient over `steps` steps (the first one included);
/// `step` runs after each measured backward.
template <typename Backward, typename Step>
int64_t largest_transient(const Args& a, gpt::Gpt& model, int rank, CountingAllocator& alloc, Backward&& backward,
                          Step&& step) {
  int64_t worst = 0;
  for (int64_t s = 0; s < a.steps; ++s) {
    const Batch b = batch_of(a, rank, s);
    at::Tensor loss = gpt::next_token_loss(model, b.x, b.y);
    alloc.reset_peak();
    const int64_t before = alloc.live();
    backward(loss);
    worst = std::max(worst, alloc.peak() - before);
    step();
  }
  return worst;
}

struct Row {
  std::string name;
  int64_t transient = 0;
  int64_t kept = 0;  // gradient storage the engine keeps between steps
};

}  // namespace

int main(int argc, char** argv) {
  CountingAllocator& alloc = CountingAllocator::install();
  const Args a = parse(argc, argv);
  auto comm = zerotrain::init_distributed();
  const int rank = comm->rank();
  std::vector<Row> rows;
  {
    torch::manual_seed(0);
    gpt::Gpt model(a.model);
    torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-4));
    const int64_t t = largest_transient(
        a, model, rank, alloc,
        [&](const at::Tensor& loss) {
          opt.zero_grad();  // set_to_none: backward allocates every .grad
          loss.backward();
        },
        [&] { opt.step(); });
    rows.push_back({"plain LibTorch backward", t, 0});
  }
  for (int stage : {1, 2}) {
    torch::manual_seed(0);
    gpt::Gpt model(a.model);
    nlohmann::json j = {{"train_micro_batch_size_per_gpu", a.batch},
                        {"gradient_accumulation_steps", 1},
                        {"optimizer", {{"type", "AdamW"}, {"params", {{"lr", 1e-4}}}}},
                        {"zero_optimization", {{"stage", stage}, {"overlap_comm", true}}}};
    zerotrain::InitOptions o;
    o.communicator = comm;
    zerotrain::Engine engine = zerotrain::initialize(model.ptr(), zerotrain::Config::from_json(j), o);
    const int64_t t = largest_transient(
        a, model, rank, alloc, [&](const at::Tensor& loss) { engine.backward(loss); }, [&] { engine.step(); });
    rows.push_back({"zerotrain stage " + std::to_string(stage), t, engine.memory_report().gradients});
  }
  if (rank == 0) {
    const int64_t params = a.model.parameter_count();
    std::printf("grad_memory_bench: N=%d, GPT %s (%.2f M params, fp32 gradients %.1f MB), batch %lld x %lld tokens "
                "per rank, largest of %lld steps\n",
                comm->world_size(), a.model.to_string().c_str(), static_cast<double>(params) / 1e6,
                static_cast<double>(params) * 4 / 1e6, static_cast<long long>(a.batch),
                static_cast<long long>(a.model.context), static_cast<long long>(a.steps));
    std::printf("%-26s %18s %8s %24s\n", "backward of", "transient MB", "ratio", "gradients kept MB");
    for (const Row& r : rows)
      std::printf("%-26s %18.2f %8.2f %24.2f\n", r.name.c_str(), static_cast<double>(r.transient) / 1e6,
                  static_cast<double>(r.transient) / static_cast<double>(rows.front().transient),
                  static_cast<double>(r.kept) / 1e6);
  }
  comm->barrier().wait();
  return 0;
}
