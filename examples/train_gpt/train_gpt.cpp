// train_gpt: a byte-level GPT-2-style model trained with the zerotrain engine
// on Debian's `fortunes` collection, with a held-out validation split, a
// checkpoint at the end (and every --save-every steps), --resume, and a
// sample of generated text. README command 1 (scripts/main_job.sh) runs it at
// ZeRO stage 2 on 2 CPU ranks. docs/porting.md walks through this file.
//
//   train_gpt [--config configs/train_gpt_zero2.json] [--steps N] [--save DIR] [--resume DIR]
//             [--layers 4 --heads 4 --width 128 --context 128 | --model FILE.json]
//             [--eval-every 100] [--save-every 0] [--sample-bytes 300] [--prompt TEXT]
//             [--data /usr/share/games/fortunes] [--device cpu|cuda|cuda:N] [--bar auto|on|off]
//             [--max-val-loss X] [--checkpoint-activations on|off]
//   torchrun --no-python --standalone --nproc-per-node=2 build/examples/train_gpt/train_gpt ...
//
// Every rank draws its own micro-batches from a seed made of (seed, step,
// micro-batch, rank), so a resumed run sees the batches an uninterrupted run
// would have seen.

#include "corpus.h"
#include "gpt.h"

#include <zerotrain/zerotrain.h>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Args {
  std::string config = "configs/train_gpt_zero2.json";
  std::string data = "/usr/share/games/fortunes";
  std::string save, resume, prompt = "The ";
  std::string device = "cpu";
  std::string bar = "auto";
  bool checkpoint_activations = false;  // recompute every block in backward
  int64_t steps = 0;  // 0: the schedule's total_num_steps, else 600
  int64_t eval_every = 100, save_every = 0, sample_bytes = 300, val_windows = 64;
  uint64_t seed = 1234;
  double max_val_loss = 0;
  gpt::GptConfig model;
};

void read_model_file(const std::string& path, gpt::GptConfig& m) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("train_gpt: cannot open --model " + path);
  const nlohmann::json j = nlohmann::json::parse(in);
  for (const auto& [key, value] : j.items()) {
    if (key == "layers") m.layers = value.get<int64_t>();
    else if (key == "heads") m.heads = value.get<int64_t>();
    else if (key == "width") m.width = value.get<int64_t>();
    else if (key == "context") m.context = value.get<int64_t>();
    else throw std::runtime_error("train_gpt: " + path + ": unknown key \"" + key +
                                  "\" (expected layers, heads, width, context)");
  }
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; i += 2) {
    const std::string k = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument("train_gpt: " + k + " needs a value");
    const std::string v = argv[i + 1];
    if (k == "--config") a.config = v;
    else if (k == "--data") a.data = v;
    else if (k == "--save") a.save = v;
    else if (k == "--resume") a.resume = v;
    else if (k == "--prompt") a.prompt = v;
    else if (k == "--device") a.device = v;
    else if (k == "--bar") a.bar = v;
    else if (k == "--steps") a.steps = std::stoll(v);
    else if (k == "--eval-every") a.eval_every = std::stoll(v);
    else if (k == "--save-every") a.save_every = std::stoll(v);
    else if (k == "--sample-bytes") a.sample_bytes = std::stoll(v);
    else if (k == "--val-windows") a.val_windows = std::stoll(v);
    else if (k == "--seed") a.seed = std::stoull(v);
    else if (k == "--max-val-loss") a.max_val_loss = std::stod(v);
    else if (k == "--checkpoint-activations") {
      if (v != "on" && v != "off") throw std::invalid_argument("train_gpt: --checkpoint-activations takes on or off");
      a.checkpoint_activations = v == "on";
    }
    else if (a.model.set_option(k, v)) continue;
    else if (k == "--model") read_model_file(v, a.model);
    else throw std::invalid_argument("train_gpt: unknown option " + k);
  }
  return a;
}

// The schedule's length, when the config's scheduler has one.
std::optional<int64_t> schedule_length(const std::string& config_path) {
  std::ifstream in(config_path);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;  // Config::from_file reports the error properly
  const nlohmann::json* steps = nullptr;
  if (j.contains("scheduler") && j["scheduler"].contains("params") &&
      j["scheduler"]["params"].contains("total_num_steps"))
    steps = &j["scheduler"]["params"]["total_num_steps"];
  if (steps == nullptr || !steps->is_number_integer()) return std::nullopt;
  return steps->get<int64_t>();
}

double validation_loss(gpt::Gpt& model, const std::pair<at::Tensor, at::Tensor>& windows, int64_t batch) {
  torch::NoGradGuard no_grad;
  model->eval();
  double sum = 0;
  const int64_t n = windows.first.size(0);
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t b = std::min(batch, n - start);
    sum += gpt::next_token_loss(model, windows.first.narrow(0, start, b), windows.second.narrow(0, start, b))
               .item<double>() * static_cast<double>(b);
  }
  model->train();
  return sum / static_cast<double>(n);
}

std::string printable(const std::string& text) {
  std::string out;
  for (unsigned char c : text) out.push_back(c == '\n' || c == '\t' || (c >= 32 && c < 127) ? char(c) : '?');
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args a = parse(argc, argv);
  torch::Device device(a.device);
  if (device.is_cuda() && !device.has_index()) {
    // One GPU per rank: LOCAL_RANK's, not cuda:0 on every rank.
    const zerotrain::LaunchInfo launch = zerotrain::resolve_launch({}, zerotrain::process_environment());
    device = torch::Device(torch::kCUDA, static_cast<torch::DeviceIndex>(zerotrain::rank_cuda_device(
                                             launch, static_cast<int>(torch::cuda::device_count()))));
  }
  const gpt::Corpus corpus = gpt::load_fortunes(a.data);

  torch::manual_seed(static_cast<int64_t>(a.seed));
  gpt::Gpt model(a.model);
  model->to(device);

  const std::optional<int64_t> schedule = schedule_length(a.config);
  const int64_t total_steps = a.steps > 0 ? a.steps : schedule.value_or(600);
  const int64_t context = a.model.context;

  zerotrain::InitOptions init;
  // Weight decay on matrices and embeddings only, as GPT-2 training does.
  zerotrain::ParamGroup decayed, undecayed;
  decayed.params = model->decayed_parameters();
  undecayed.params = model->undecayed_parameters();
  undecayed.weight_decay = 0.0;
  init.param_groups = {decayed, undecayed};
  // Activation checkpointing without touching the model: every block (a
  // zerotrain::Unit) is recomputed in backward, with the config's
  // activation_checkpointing options.
  init.recompute_units = a.checkpoint_activations;
  init.progress.total_steps = total_steps;
  init.progress.tokens_per_sample = context;
  init.progress.flops_per_sample = a.model.flops_per_token() * static_cast<double>(context);
  init.progress.bar = a.bar == "on" ? zerotrain::ProgressBar::kOn
                      : a.bar == "off" ? zerotrain::ProgressBar::kOff : zerotrain::ProgressBar::kAuto;
  // A config's "auto" values (Hugging Face Trainer style) take train_gpt's own settings.
  zerotrain::ResolveOptions resolve;
  zerotrain::AutoValues& autos = resolve.auto_values;
  autos.micro_batch_per_gpu = 16;
  autos.gradient_accumulation_steps = 1;
  autos.lr = 2e-3;
  autos.betas = std::array<double, 2>{0.9, 0.99};
  autos.eps = 1e-8;
  autos.weight_decay = 0.1;
  autos.gradient_clipping = 1.0;
  autos.warmup_steps = std::min<int64_t>(50, total_steps / 10);
  autos.total_steps = total_steps;
  autos.fp16 = false;
  autos.bf16 = false;
  autos.hidden_size = a.model.width;
  zerotrain::Engine engine =
      zerotrain::initialize(model.ptr(), zerotrain::Config::from_file(a.config, resolve), init);

  const int rank = engine.rank(), world = engine.world_size();
  const auto& batch = engine.config().batch();
  const int64_t micro = batch.micro_batch_per_gpu, gas = batch.gradient_accumulation_steps;
  const auto say = [&](const std::string& line) { engine.print_line(line); };

  if (!a.resume.empty())
    if (auto loaded = engine.load_checkpoint(a.resume))
      say("resumed from " + loaded->path + " at step " + std::to_string(engine.global_steps()));
  if (rank == 0) {
    char line[512];
    std::snprintf(line, sizeof line,
                  "train_gpt: %.2fM parameters (%s), %lld fortunes from %lld files: %.2f MB train, %.2f MB "
                  "validation; ZeRO stage %d, %s, %d rank%s, %lld samples of %lld bytes per step",
                  static_cast<double>(a.model.parameter_count()) / 1e6, a.model.to_string().c_str(),
                  static_cast<long long>(corpus.fortunes), static_cast<long long>(corpus.files),
                  static_cast<double>(corpus.train.size(0)) / 1e6,
                  static_cast<double>(corpus.validation.size(0)) / 1e6, engine.config().zero().stage,
                  zerotrain::to_string(engine.config().model_dtype()), world, world == 1 ? "" : "s",
                  static_cast<long long>(batch.train_batch_size), static_cast<long long>(context));
    say(line);
    if (schedule && *schedule != total_steps)
      say("train_gpt: note: the config's schedule ends at step " + std::to_string(*schedule) +
          ", the run at " + std::to_string(total_steps));
  }

  auto val_windows = gpt::fixed_windows(corpus.validation, a.val_windows, context);
  val_windows = {val_windows.first.to(device), val_windows.second.to(device)};
  std::optional<double> val_loss;
  const auto evaluate = [&] {
    val_loss = validation_loss(model, val_windows, micro);
    char line[128];
    std::snprintf(line, sizeof line, "validation loss %.4f at step %lld (%.3f bits per byte)", *val_loss,
                  static_cast<long long>(engine.global_steps()), *val_loss / std::log(2.0));
    say(line);
    engine.write_events({{"Validation/loss", *val_loss, engine.global_steps() * batch.train_batch_size}});
  };
  std::string checkpoint;
  const auto save = [&] {
    zerotrain::SaveCheckpointOptions options;
    options.client_state = {{"model", {{"layers", a.model.layers}, {"heads", a.model.heads},
                                       {"width", a.model.width}, {"context", a.model.context}}},
                            {"seed", a.seed}};
    checkpoint = engine.save_checkpoint(a.save, "", options);
    say("checkpoint: " + checkpoint);
  };

  model->train();
  while (engine.global_steps() < total_steps) {
    const int64_t step = engine.global_steps();
    for (int64_t k = 0; k < gas; ++k) {
      auto [x, y] = gpt::sample_batch(corpus.train, micro, context,
                                      gpt::mix_seed({a.seed, static_cast<uint64_t>(step),
                                                     static_cast<uint64_t>(k), static_cast<uint64_t>(rank)}));
      at::Tensor loss;
      {
        auto timer = engine.time(zerotrain::Phase::kForward);
        loss = gpt::next_token_loss(model, x.to(device), y.to(device));
      }
      engine.backward(loss);
      engine.step();
    }
    const int64_t done = engine.global_steps();
    if (a.eval_every > 0 && done % a.eval_every == 0 && done < total_steps) evaluate();
    if (!a.save.empty() && a.save_every > 0 && done % a.save_every == 0 && done < total_steps) save();
  }

  evaluate();
  if (!a.save.empty()) save();
  const std::string sample = gpt::generate(model, a.prompt, a.sample_bytes, gpt::mix_seed({a.seed, 7}));
  if (rank == 0) {
    std::printf("\n--- sample (%lld bytes after \"%s\") ---\n%s%s\n---\n",
                static_cast<long long>(a.sample_bytes), a.prompt.c_str(), printable(a.prompt).c_str(),
                printable(sample).c_str());
    std::printf("final validation loss: %.4f after %lld steps\n", *val_loss,
                static_cast<long long>(engine.global_steps()));
    if (const auto p = engine.checkpoint_profile())  // activation_checkpointing.profile
      std::printf("activation checkpointing: %lld checkpointed forwards (%.1f ms), %lld recomputes (%.1f ms), "
                  "%.1f MB of saved inputs\n",
                  static_cast<long long>(p->forwards), p->forward_ms, static_cast<long long>(p->recomputes),
                  p->recompute_ms, static_cast<double>(p->saved_input_bytes) / 1e6);
    if (!checkpoint.empty())
      std::printf("checkpoint: %s\nresume with the same command plus: --resume %s --steps %lld\n",
                  checkpoint.c_str(), a.save.c_str(), static_cast<long long>(total_steps * 2));
    std::fflush(stdout);
  }
  if (a.max_val_loss > 0 && *val_loss > a.max_val_loss) {
    if (rank == 0)
      std::fprintf(stderr, "train_gpt: validation loss %.4f is above --max-val-loss %.4f\n", *val_loss,
                   a.max_val_loss);
    return 1;
  }
  return 0;
} catch (const c10::Error& e) {
  std::cerr << "train_gpt: " << e.what_without_backtrace() << "\n";
  return 2;
} catch (const std::exception& e) {
  std::cerr << "train_gpt: " << e.what() << "\n";
  return 2;
}
