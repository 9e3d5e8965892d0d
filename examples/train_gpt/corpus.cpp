// See corpus.h.

#include "corpus.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace gpt {
namespace {

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  if (!in) throw std::runtime_error("train_gpt: cannot read " + path);
  return s.str();
}

at::Tensor to_tensor(const std::string& text) {
  return torch::from_blob(const_cast<char*>(text.data()), {static_cast<int64_t>(text.size())}, torch::kUInt8)
      .clone();
}

}  // namespace

Corpus load_fortunes(const std::string& dir, int64_t hold_out_every) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  Corpus c;
  std::string train, validation;
  for (const std::string& name : names) {
    const std::string path = dir + "/" + name;
    // A fortune file is a regular file with a strfile index `<name>.dat` beside it.
    if (!is_regular_file(path) || !is_regular_file(path + ".dat")) continue;
    ++c.files;
    std::istringstream text(read_file(path));
    std::string line, fortune;
    const auto flush = [&] {
      if (fortune.find_first_not_of(" \t\n") != std::string::npos) {
        (++c.fortunes % hold_out_every == 0 ? validation : train) += fortune + "\n";
      }
      fortune.clear();
    };
    while (std::getline(text, line)) {
      if (line == "%") flush();
      else fortune += line + "\n";
    }
    flush();
  }
  if (c.files == 0)
    throw std::runtime_error("train_gpt: no fortune files in " + dir +
                             " (install Debian's `fortunes` package, or pass --data DIR)");
  c.train = to_tensor(train);
  c.validation = to_tensor(validation);
  return c;
}

uint64_t mix_seed(std::initializer_list<uint64_t> parts) {
  uint64_t h = 0x9E3779B97F4A7C15ull;
  for (uint64_t p : parts) {
    uint64_t z = h + p + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    h = z ^ (z >> 31);
  }
  return h;
}

std::pair<at::Tensor, at::Tensor> sample_batch(const at::Tensor& data, int64_t batch, int64_t context,
                                               uint64_t seed) {
  const int64_t n = data.size(0);
  TORCH_CHECK(n > context + 1, "train_gpt: ", n, " bytes of text are too few for a context of ", context);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> offset(0, n - context - 1);
  std::vector<at::Tensor> rows;
  for (int64_t b = 0; b < batch; ++b) rows.push_back(data.narrow(0, offset(rng), context + 1));
  const at::Tensor windows = torch::stack(rows).to(torch::kLong);
  return {windows.narrow(1, 0, context), windows.narrow(1, 1, context)};
}

std::pair<at::Tensor, at::Tensor> fixed_windows(const at::Tensor& data, int64_t count, int64_t context) {
  const int64_t available = (data.size(0) - 1) / context;
  TORCH_CHECK(available > 0, "train_gpt: the validation text is shorter than one context");
  const int64_t k = std::min(count, available);
  std::vector<at::Tensor> rows;
  for (int64_t i = 0; i < k; ++i) rows.push_back(data.narrow(0, (i * available / k) * context, context + 1));
  const at::Tensor windows = torch::stack(rows).to(torch::kLong);
  return {windows.narrow(1, 0, context), windows.narrow(1, 1, context)};
}

}  // namespace gpt
