// ckpt::load_checkpoint (engine_checkpoint.h): onto any world size and ZeRO stage.
//
// Note [A load changes nothing until every file is verified]
// Each rank plans which byte ranges of which files its new shard needs (Note
// [A parameter's pieces]), reads every such file whole in one pass that
// checks its size and checksum while copying those ranges into staging
// buffers, and only when every rank has succeeded (agree()) copies the
// staging buffers into the engine. A missing, truncated or corrupt file, or
// a model that does not match the checkpoint, fails the load on every rank
// and leaves every engine as it was. Re-sharding is a change of plan, not a
// conversion step: the pieces tile each parameter, whatever layout wrote them.

#include "checkpoint/engine_checkpoint.h"

#include "checkpoint/agree.h"
#include "checkpoint/file_io.h"
#include "checkpoint/manifest.h"
#include "checkpoint/reader.h"
#include "checkpoint/safetensors.h"
#include "checkpoint/shard_pieces.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/record_function.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

#include <iostream>
#include <map>
#include <unordered_map>

namespace zerotrain::ckpt {

namespace {

// One tensor of one file that this rank reads, and where its bytes go.
struct Read {
  TensorSpec spec;           // as the file holds it
  uint64_t src_byte = 0;     // inside the tensor
  uint64_t bytes = 0;
  void* dst = nullptr;
};

// Every piece the manifest places in rank file `file`, in every state.
std::vector<TensorSpec> placed_in(const Manifest& m, const std::string& file) {
  std::vector<TensorSpec> out;
  for (const GroupEntry& g : m.groups)
    for (const ParamEntry& p : g.params)
      for (const PieceRef& piece : p.pieces)
        if (rank_file_name(piece.rank) == file)
          for (PieceState state : m.piece_states())
            out.push_back({piece_tensor_name(state, p.name, piece.offset), piece_dtype(state, m.model_dtype),
                           {piece.numel}});
  return out;
}

class LoadPlan {
 public:
  void add(const std::string& file, Read r) { reads_[file].push_back(std::move(r)); }
  /// Opens, verifies and copies every planned file. Each file's header is
  /// checked against every piece the manifest places in it, not only the
  /// pieces read: a manifest and files that disagree on a dtype or a shape
  /// are a damaged checkpoint even where this load would not notice.
  void run(const std::string& tag_dir, const Manifest& m) const {
    for (const auto& [name, reads] : reads_) {
      const FileEntry* entry = m.file(name);
      TORCH_CHECK(entry != nullptr, "zerotrain: '", join_path(tag_dir, kManifestFile),
                  "' lists no file '", name, "'");
      const InputFile f = open_checked(tag_dir, *entry);
      std::vector<TensorSpec> specs = placed_in(m, name);
      for (const Read& r : reads) specs.push_back(r.spec);
      const SafetensorsHeader h = read_checked_header(f, specs);
      std::vector<CopyJob> jobs;
      for (const Read& r : reads)
        jobs.push_back({h.data_start + h.find(r.spec.name)->begin + r.src_byte, r.bytes, r.dst});
      stream_file(f, *entry, std::move(jobs));
    }
  }

 private:
  std::map<std::string, std::vector<Read>> reads_;
};

struct Staged {
  std::map<PieceState, at::Tensor> states;  // CPU, the size of the owned buffers
  std::vector<std::pair<at::Tensor, at::Tensor>> module;  // (model tensor, staged value)
  std::vector<std::pair<std::string, at::Tensor>> rng;
};

// The saved parameters by name; each is matched to exactly one model parameter.
std::unordered_map<std::string, const ParamEntry*> saved_params(const Manifest& m) {
  std::unordered_map<std::string, const ParamEntry*> out;
  for (const GroupEntry& g : m.groups)
    for (const ParamEntry& p : g.params) out.emplace(p.name, &p);
  return out;
}

void check_params_match(const zero::ShardedModel& model, const Manifest& m, const std::string& where,
                        const std::unordered_map<std::string, const ParamEntry*>& saved) {
  const auto& names = model.param_names();
  for (size_t p = 0; p < names.size(); ++p) {
    auto it = saved.find(names[p]);
    TORCH_CHECK(it != saved.end(), "zerotrain: checkpoint '", where, "' has no parameter '", names[p],
                "' that the model trains");
    const auto shape = model.param(static_cast<int>(p)).sizes().vec();
    TORCH_CHECK(it->second->shape == shape, "zerotrain: checkpoint '", where, "': parameter '", names[p],
                "' has shape ", c10::IntArrayRef(it->second->shape), " and the model's has ", c10::IntArrayRef(shape));
  }
  if (names.size() == saved.size()) return;
  for (const auto& [name, p] : saved)
    TORCH_CHECK(std::find(names.begin(), names.end(), name) != names.end(), "zerotrain: checkpoint '", where,
                "' trains parameter '", name, "' that the model does not train (", m.num_parameters(),
                " saved elements)");
}

Staged plan_and_read(const EngineParts& e, const Manifest& m, const std::string& tag_dir,
                     const std::vector<PieceState>& states, bool with_rng, bool strict) {
  const zero::ShardedModel& model = e.model;
  const auto saved = saved_params(m);
  check_params_match(model, m, tag_dir, saved);
  for (const FileEntry& f : m.files) open_checked(tag_dir, f);  // every file there, at its size (cheap)
  Staged st;
  LoadPlan plan;
  const std::vector<OwnedPiece> wants = owned_pieces(model.layout(), model.owned().rank());
  for (PieceState state : states) {
    const at::ScalarType dt = piece_dtype(state, m.model_dtype);
    const int64_t esize = static_cast<int64_t>(c10::elementSize(dt));
    at::Tensor buf = at::zeros({model.layout().owned_numel()}, at::TensorOptions().dtype(dt));
    char* base = static_cast<char*>(buf.data_ptr());
    for (const OwnedPiece& want : wants) {
      const ParamEntry& p = *saved.at(model.param_names()[static_cast<size_t>(want.param)]);
      for (const PieceCopy& c : plan_copies(p, want))
        plan.add(rank_file_name(c.source.rank),
                 {{piece_tensor_name(state, p.name, c.source.offset), dt, {c.source.numel}},
                  static_cast<uint64_t>(c.src_offset * esize),
                  static_cast<uint64_t>(c.numel * esize),
                  base + c.owned_offset * esize});
    }
    st.states.emplace(state, std::move(buf));
  }

  // Buffers and frozen parameters, by name, from module.safetensors.
  std::unordered_map<std::string, at::Tensor> model_tensors;
  for (detail::ModuleTensor& t : e.access.module_tensors()) model_tensors.emplace(t.name, t.tensor);
  const FileEntry* module_entry = m.file(kModuleFile);
  TORCH_CHECK(module_entry != nullptr, "zerotrain: '", join_path(tag_dir, kManifestFile), "' lists no ",
              kModuleFile);
  if (!m.module_tensors.empty() || !model_tensors.empty()) {
    const InputFile f = open_checked(tag_dir, *module_entry);
    const SafetensorsHeader h = read_safetensors_header(f);
    std::vector<CopyJob> jobs;
    size_t used = 0;
    for (const ModuleTensorEntry& entry : m.module_tensors) {
      const TensorRecord* r = h.find(entry.name);
      TORCH_CHECK(r != nullptr, "zerotrain: checkpoint file '", f.path(), "' lacks tensor '", entry.name, "'");
      auto it = model_tensors.find(entry.name);
      if (it == model_tensors.end()) {
        TORCH_CHECK(!strict, "zerotrain: checkpoint '", tag_dir, "' has ", entry.kind, " '", entry.name,
                    "' that the model lacks (load_module_strict)");
        continue;
      }
      ++used;
      TORCH_CHECK(it->second.sizes().vec() == r->spec.shape, "zerotrain: checkpoint '", tag_dir, "': ",
                  entry.kind, " '", entry.name, "' has shape ", c10::IntArrayRef(r->spec.shape),
                  " and the model's has ", it->second.sizes());
      at::Tensor v = at::empty(r->spec.shape, at::TensorOptions().dtype(r->spec.dtype));
      jobs.push_back({h.data_start + r->begin, r->end - r->begin, v.data_ptr()});
      st.module.emplace_back(it->second, v);
    }
    if (strict && used != model_tensors.size())
      for (const auto& [name, t] : model_tensors) {
        bool found = false;
        for (const ModuleTensorEntry& entry : m.module_tensors) found = found || entry.name == name;
        TORCH_CHECK(found, "zerotrain: checkpoint '", tag_dir, "' lacks '", name,
                    "', a buffer or frozen parameter of the model (load_module_strict)");
      }
    stream_file(f, *module_entry, std::move(jobs));
  } else if (e.comm.rank() == 0) {
    // Nothing to read, but a damaged file is still a damaged checkpoint.
    const InputFile f = open_checked(tag_dir, *module_entry);
    read_safetensors_header(f);
    stream_file(f, *module_entry, {});
  }

  if (with_rng) {
    std::vector<std::string> names{"rng:cpu"};
    if (!model.device().is_cpu()) names.push_back("rng:cuda");
    const FileEntry* entry = m.file(rank_file_name(e.comm.rank()));
    TORCH_CHECK(entry != nullptr, "zerotrain: '", join_path(tag_dir, kManifestFile), "' lists no ",
                rank_file_name(e.comm.rank()));
    const InputFile f = open_checked(tag_dir, *entry);
    const SafetensorsHeader h = read_safetensors_header(f);
    for (const std::string& name : names) {
      const TensorRecord* r = h.find(name);
      if (r == nullptr) continue;  // saved by a CPU engine, loaded on CUDA: the CUDA RNG stays
      at::Tensor v = at::empty(r->spec.shape, at::TensorOptions().dtype(r->spec.dtype));
      plan.add(entry->name, {r->spec, 0, r->end - r->begin, v.data_ptr()});
      st.rng.emplace_back(name, v);
    }
  }
  plan.run(tag_dir, m);
  return st;
}

}  // namespace

}  // namespace zerotrain::ckpt

namespace zerotrain {

std::string latest_tag(const std::string& dir) {
  using namespace ckpt;
  const std::string path = join_path(dir, kLatestFile);
  TORCH_CHECK(path_exists(path), "zerotrain: '", path,
              "' does not exist: no complete checkpoint was saved in '", dir, "' (or give a tag)");
  std::string tag = read_small_file(path, 4096);
  while (!tag.empty() && std::isspace(static_cast<unsigned char>(tag.back()))) tag.pop_back();
  TORCH_CHECK(!tag.empty(), "zerotrain: '", path, "' is empty");
  check_tag(tag);
  return tag;
}

}  // namespace zerotrain

namespace zerotrain::ckpt {

std::optional<LoadResult> load_checkpoint(const EngineParts& e, const std::string& dir, const std::string& tag_in,
                                          const LoadCheckpointOptions& options) {
  RECORD_FUNCTION("zerotrain::load_checkpoint", std::vector<c10::IValue>());
  zero::ShardedModel& model = e.model;
  if (tag_in.empty() && !path_exists(join_path(dir, kLatestFile))) {
    if (e.comm.rank() == 0)
      std::cerr << "zerotrain: no checkpoint to load: '" << join_path(dir, kLatestFile) << "' does not exist\n";
    return std::nullopt;
  }
  const bool full = !options.load_module_only && options.load_optimizer_states;
  Manifest m;
  Staged st;
  std::string tag_dir;
  // zero_optimization.load_from_fp32_weights: false rebuilds the master
  // weights from the saved model-dtype weights, as DeepSpeed does.
  const bool master_from_fp32 = e.config.zero().load_from_fp32_weights;
  PieceState weights = PieceState::kMaster;
  std::string err = capture_error([&] {
    const std::string tag = tag_in.empty() ? latest_tag(dir) : tag_in;
    check_tag(tag);
    tag_dir = existing_or_replaced(join_path(dir, tag));  // Note [Replacing without an atomic exchange]
    m = read_manifest(tag_dir);
    if (m.has_model_pieces() && (!full || !master_from_fp32)) weights = PieceState::kModel;
    std::vector<PieceState> states{weights};
    if (full) {
      states.push_back(PieceState::kExpAvg);
      states.push_back(PieceState::kExpAvgSq);
    }
    const bool rng = !options.load_module_only && m.world_size == e.comm.world_size();
    st = plan_and_read(e, m, tag_dir, states, rng, options.load_module_strict);
  });
  agree(e.comm, model.device(), err, "loading checkpoint from '" + dir + "'");

  // Note [A load changes nothing until every file is verified]: from here on, only copies.
  {
    c10::NoGradGuard no_grad;
    zero::OwnedState& owned = model.owned();
    for (size_t ui = 0; ui < model.layout().units().size(); ++ui) {
      const int u = static_cast<int>(ui);
      const zero::UnitLayout& l = model.layout().unit(u);
      const auto part = [&](PieceState state) { return st.states.at(state).narrow(0, l.owned_offset, l.owned_numel); };
      if (full) {
        owned.moments(u).exp_avg.copy_(part(PieceState::kExpAvg));
        owned.moments(u).exp_avg_sq.copy_(part(PieceState::kExpAvgSq));
      }
      if (weights == PieceState::kMaster) {
        owned.master(u).copy_(part(PieceState::kMaster));
      } else {
        owned.owned_params(u).copy_(part(PieceState::kModel));
        owned.master(u).copy_(owned.owned_params(u));
      }
    }
    for (auto& [tensor, value] : st.module) tensor.copy_(value);
  }
  model.after_master_load();  // the parameters follow the master weights (rounded as the step rounds)
  for (const auto& [name, value] : st.rng) restore_rng(model.device(), name, value);

  LoadResult out;
  out.info.path = tag_dir;
  out.info.tag = m.tag;
  out.info.client_state = m.client_state;
  out.info.saved_world_size = m.world_size;
  out.info.saved_zero_stage = m.zero_stage;
  out.info.rng_restored = !st.rng.empty();
  out.counters = m.engine;
  out.saved_dtype = m.model_dtype;
  out.optimizer_states = full;
  if (m.config.is_object() && m.config.contains("gradient_accumulation_steps") &&
      m.config["gradient_accumulation_steps"].is_number_integer())
    out.saved_gas = m.config["gradient_accumulation_steps"].get<int64_t>();
  return out;
}

}  // namespace zerotrain::ckpt
