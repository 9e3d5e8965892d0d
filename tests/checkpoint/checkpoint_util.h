#pragma once
// Shared by the checkpoint tests: temporary directories, byte surgery on
// files, and a checkpoint's full per-parameter state assembled from its pieces.

#include "checkpoint/file_io.h"
#include "checkpoint/manifest.h"
#include "checkpoint/reader.h"
#include "checkpoint/safetensors.h"

#include <zerotrain/engine.h>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <string>

#include "support/paths.h"

namespace zerotrain::testing {

/// A fresh directory under $TMPDIR (or /tmp), removed with its content.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base ? base : "/tmp") + "/zt-ckpt-XXXXXX";
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : "";
  }
  ~TempDir() { ckpt::remove_tree(path_); }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return ckpt::join_path(path_, name); }

 private:
  std::string path_;
};

inline void flip_byte(const std::string& path, uint64_t offset) {
  std::string bytes = ckpt::read_small_file(path);
  bytes.at(offset) = static_cast<char>(bytes.at(offset) ^ 0x5a);
  ckpt::OutputFile f(path);
  f.write(bytes.data(), bytes.size());
  f.sync_and_close();
}

inline void truncate_file(const std::string& path, uint64_t size) {
  std::string bytes = ckpt::read_small_file(path);
  bytes.resize(size);
  ckpt::OutputFile f(path);
  f.write(bytes.data(), bytes.size());
  f.sync_and_close();
}

/// Every parameter's `state`, assembled from the pieces in whichever rank files hold them.
inline std::map<std::string, at::Tensor> full_state(const std::string& tag_dir, ckpt::PieceState state) {
  using namespace ckpt;
  const Manifest m = read_manifest(tag_dir);
  const at::ScalarType dt = piece_dtype(state, m.model_dtype);
  std::map<std::string, at::Tensor> out;
  for (const GroupEntry& g : m.groups)
    for (const ParamEntry& p : g.params) {
      at::Tensor t = at::empty({p.numel()}, at::TensorOptions().dtype(dt));
      for (const PieceRef& piece : p.pieces) {
        const InputFile f(join_path(tag_dir, rank_file_name(piece.rank)));
        const SafetensorsHeader h = read_safetensors_header(f);
        const TensorRecord* r = h.find(piece_tensor_name(state, p.name, piece.offset));
        TORCH_CHECK(r != nullptr, "no piece ", piece_tensor_name(state, p.name, piece.offset));
        f.read_at(h.data_start + r->begin,
                  static_cast<char*>(t.data_ptr()) + piece.offset * static_cast<int64_t>(t.element_size()),
                  r->end - r->begin);
      }
      out.emplace(p.name, t.view(p.shape));
    }
  return out;
}

/// Every tensor of a safetensors file, by name.
inline std::map<std::string, at::Tensor> read_safetensors(const std::string& path) {
  using namespace ckpt;
  const InputFile f(path);
  const SafetensorsHeader h = read_safetensors_header(f);
  std::map<std::string, at::Tensor> out;
  for (const TensorRecord& r : h.tensors) {
    at::Tensor t = at::empty(r.spec.shape, at::TensorOptions().dtype(r.spec.dtype));
    f.read_at(h.data_start + r.begin, t.data_ptr(), r.end - r.begin);
    out.emplace(r.spec.name, t);
  }
  return out;
}

/// A checkpoint saved by the engine before units were module subtrees
/// (commit d273064): see data/v1_mlp_zero2_bf16_n2/README.md.
inline std::string v1_checkpoint_dir() { return testing::tests_dir() + "/checkpoint/data/v1_mlp_zero2_bf16_n2"; }

/// The message of the c10::Error `fn` throws (without backtrace), or "" when it does not throw.
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "";
}

/// A copy of every parameter of `m`, by name.
inline std::map<std::string, at::Tensor> snapshot(const torch::nn::Module& m) {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : m.named_parameters()) out.emplace(p.key(), p.value().detach().clone());
  return out;
}

/// A copy of every parameter of `m`, trained by `engine`: at stage 3 the
/// units are gathered for the copy (collective).
inline std::map<std::string, at::Tensor> snapshot(Engine& engine, const torch::nn::Module& m) {
  GatheredParameters full = engine.gathered_parameters();
  std::map<std::string, at::Tensor> out = snapshot(m);
  full.close();
  return out;
}

/// Bitwise equality of two tensors of the same dtype (NaNs included).
inline bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const at::Tensor x = a.contiguous().cpu(), y = b.contiguous().cpu();
  return std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

}  // namespace zerotrain::testing
