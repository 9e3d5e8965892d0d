// train_mnist: a small network on Fashion-MNIST (Debian's dataset-fashion-mnist
// package, the IDX files read directly) trained with the zerotrain engine.
// A real-data sanity check: at ZeRO stage 2 or 3 on 2 CPU ranks it reaches
// the dataset's published MLP baselines (about 85-88% test accuracy) in 2 epochs.
//
//   train_mnist --config configs/zero2_fp32.json [--epochs 2] [--data DIR]   (or zero3_*.json)
//               [--save DIR] [--resume DIR] [--min-accuracy 0.85]
//   torchrun --no-python --standalone --nproc-per-node=2 build/examples/train_mnist/train_mnist ...
//
// Each rank takes its own rows of every global batch (micro batch x gradient
// accumulation x world size), from one shuffle shared by all ranks.

#include <zerotrain/zerotrain.h>

#include <torch/torch.h>
#include <zlib.h>

#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Args {
  std::string config = "configs/zero2_fp32.json";
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string save, resume;
  int epochs = 2;
  double min_accuracy = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--config") a.config = v;
    else if (k == "--data") a.data = v;
    else if (k == "--save") a.save = v;
    else if (k == "--resume") a.resume = v;
    else if (k == "--epochs") a.epochs = std::stoi(v);
    else if (k == "--min-accuracy") a.min_accuracy = std::stod(v);
    else throw std::invalid_argument("train_mnist: unknown option " + k);
  }
  return a;
}

// An IDX file (gzip-compressed): big-endian magic, dimension sizes, then uint8 data.
at::Tensor read_idx(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr)
    throw std::runtime_error("train_mnist: cannot open " + path + " (apt install dataset-fashion-mnist)");
  std::vector<unsigned char> bytes;
  unsigned char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) bytes.insert(bytes.end(), buf, buf + n);
  gzclose(f);
  const auto be32 = [&](size_t at) {
    if (at + 4 > bytes.size()) throw std::runtime_error("train_mnist: " + path + " is truncated");
    return (int64_t(bytes[at]) << 24) | (int64_t(bytes[at + 1]) << 16) | (int64_t(bytes[at + 2]) << 8) |
           int64_t(bytes[at + 3]);
  };
  if (bytes.size() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08)
    throw std::runtime_error("train_mnist: " + path + " is not an IDX file of uint8");
  std::vector<int64_t> shape;
  for (int d = 0; d < bytes[3]; ++d) shape.push_back(be32(4 + 4 * size_t(d)));
  const size_t offset = 4 + 4 * shape.size();
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  if (bytes.size() != offset + size_t(numel))
    throw std::runtime_error("train_mnist: " + path + " has the wrong size");
  return torch::from_blob(bytes.data() + offset, shape, torch::kUInt8).clone();
}

// Each layer is marked as a unit: at stage 3 it is gathered for its forward
// and backward and released in between (docs/stage3.md).
struct Net : torch::nn::Module {
  zerotrain::Unit<torch::nn::Linear> fc1{nullptr}, fc2{nullptr}, fc3{nullptr};
  Net() {
    fc1 = register_module("fc1", zerotrain::Unit<torch::nn::Linear>(784, 256));
    fc2 = register_module("fc2", zerotrain::Unit<torch::nn::Linear>(256, 128));
    fc3 = register_module("fc3", zerotrain::Unit<torch::nn::Linear>(128, 10));
  }
  at::Tensor forward(const at::Tensor& x) {
    return fc3->forward(torch::relu(fc2->forward(torch::relu(fc1->forward(x)))));
  }
};

at::Tensor images(const at::Tensor& raw) {  // [n, 784], normalised as the dataset's baselines do
  return (raw.reshape({raw.size(0), 784}).to(torch::kFloat) / 255.0 - 0.2860) / 0.3530;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args a = parse(argc, argv);
  const at::Tensor train_x = images(read_idx(a.data + "/train-images-idx3-ubyte.gz"));
  const at::Tensor train_y = read_idx(a.data + "/train-labels-idx1-ubyte.gz").to(torch::kLong);
  const at::Tensor test_x = images(read_idx(a.data + "/t10k-images-idx3-ubyte.gz"));
  const at::Tensor test_y = read_idx(a.data + "/t10k-labels-idx1-ubyte.gz").to(torch::kLong);

  torch::manual_seed(0);
  auto net = std::make_shared<Net>();
  zerotrain::Engine engine = zerotrain::initialize(net, zerotrain::Config::from_file(a.config));
  const int rank = engine.rank(), world = engine.world_size();
  const auto& batch = engine.config().batch();
  const int64_t micro = batch.micro_batch_per_gpu, gas = batch.gradient_accumulation_steps;
  const int64_t global = micro * gas * world;
  const at::ScalarType dtype = net->parameters().front().scalar_type();

  int first_epoch = 0;
  if (!a.resume.empty())
    if (auto loaded = engine.load_checkpoint(a.resume)) {
      first_epoch = loaded->client_state.value("epoch", 0);
      if (rank == 0) std::cout << "resumed from " << loaded->path << " at epoch " << first_epoch << "\n";
    }

  double accuracy = 0;
  for (int epoch = first_epoch; epoch < a.epochs; ++epoch) {
    engine.train();
    torch::manual_seed(1000 + epoch);  // the same shuffle on every rank
    const at::Tensor order = torch::randperm(train_x.size(0));
    double loss_sum = 0;
    int64_t loss_count = 0;
    for (int64_t start = 0; start + global <= order.size(0); start += global)
      for (int64_t k = 0; k < gas; ++k) {
        const at::Tensor rows = order.narrow(0, start + (k * world + rank) * micro, micro);
        const at::Tensor logits = net->forward(train_x.index_select(0, rows).to(dtype)).to(torch::kFloat);
        const at::Tensor loss = torch::nn::functional::cross_entropy(logits, train_y.index_select(0, rows));
        engine.backward(loss);
        engine.step();
        loss_sum += loss.item<double>();
        ++loss_count;
      }
    engine.eval();
    {
      torch::NoGradGuard no_grad;
      const at::Tensor pred = net->forward(test_x.to(dtype)).argmax(1);
      accuracy = pred.eq(test_y).to(torch::kDouble).mean().item<double>();
    }
    if (rank == 0)
      std::printf("epoch %d: train loss %.4f, test accuracy %.2f%% (step %lld, %d rank%s)\n", epoch + 1,
                  loss_sum / double(loss_count), 100 * accuracy, static_cast<long long>(engine.global_steps()),
                  world, world == 1 ? "" : "s");
    if (!a.save.empty()) {
      zerotrain::SaveCheckpointOptions so;
      so.client_state = {{"epoch", epoch + 1}};
      const std::string path = engine.save_checkpoint(a.save, "", so);
      if (rank == 0) std::cout << "checkpoint: " << path << "\n";
    }
  }
  if (accuracy < a.min_accuracy) {
    if (rank == 0)
      std::fprintf(stderr, "train_mnist: test accuracy %.4f is below --min-accuracy %.4f\n", accuracy,
                   a.min_accuracy);
    return 1;
  }
  return 0;
} catch (const c10::Error& e) {
  std::cerr << "train_mnist: " << e.what_without_backtrace() << "\n";
  return 2;
} catch (const std::exception& e) {
  std::cerr << "train_mnist: " << e.what() << "\n";
  return 2;
}
