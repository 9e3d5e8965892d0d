// Engine::load_checkpoint: onto any world size and ZeRO stage.
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

#include <zerotrain/engine.h>

#include "checkpoint/agree.h"
#include "checkpoint/engine_io.h"
#include "checkpoint/file_io.h"
#include "checkpoint/manifest.h"
#include "checkpoint/reader.h"
#include "checkpoint/safetensors.h"
#include "checkpoint/shard_pieces.h"
#include "engine/engine_state.h"
#include "zero/shard_optimizer.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/record_function.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>

#include <iostream>
#include <map>
#include <unordered_map>

namespace zerotrain {

using namespace checkpoint;

namespace {

// One tensor of one file that this rank reads, and where its bytes go.
struct Read {
  TensorSpec spec;           // as the file holds it
  uint64_t src_byte = 0;     // inside the tensor
  uint64_t bytes = 0;
  void* dst = nullptr;
};

class LoadPlan {
 public:
  void add(const std::string& file, Read r) { reads_[file].push_back(std::move(r)); }
  /// Opens, verifies and copies every planned file.
  void run(const std::string& tag_dir, const Manifest& m) const {
    for (const auto& [name, reads] : reads_) {
      const FileEntry* entry = m.file(name);
      TORCH_CHECK(entry != nullptr, "zerotrain: '", join_path(tag_dir, kManifestFile),
                  "' lists no file '", name, "'");
      const InputFile f = open_checked(tag_dir, *entry);
      std::vector<TensorSpec> specs;
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

struct GroupStaging {
  std::map<PieceState, at::Tensor> states;  // CPU, the group's owned size
};

struct Staged {
  std::vector<GroupStaging> groups;
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

void check_params_match(const detail::EngineState& s, const Manifest& m, const std::string& where,
                        const std::unordered_map<std::string, const ParamEntry*>& saved) {
  size_t matched = 0;
  for (const zero::FlatParamGroup& g : s.groups)
    for (int i = 0; i < g.layout().num_params(); ++i) {
      auto it = saved.find(g.name(i));
      TORCH_CHECK(it != saved.end(), "zerotrain: checkpoint '", where, "' has no parameter '", g.name(i),
                  "' that the model trains");
      const auto shape = g.params()[static_cast<size_t>(i)].sizes().vec();
      TORCH_CHECK(it->second->shape == shape, "zerotrain: checkpoint '", where, "': parameter '",
                  g.name(i), "' has shape ", c10::IntArrayRef(it->second->shape), " and the model's has ",
                  c10::IntArrayRef(shape));
      ++matched;
    }
  if (matched == saved.size()) return;
  for (const auto& [name, p] : saved) {
    bool found = false;
    for (const zero::FlatParamGroup& g : s.groups)
      for (int i = 0; i < g.layout().num_params() && !found; ++i) found = g.name(i) == name;
    TORCH_CHECK(found, "zerotrain: checkpoint '", where, "' trains parameter '", name,
                "' that the model does not train (", m.num_parameters(), " saved elements)");
  }
}

Staged plan_and_read(const detail::EngineState& s, const Manifest& m, const std::string& tag_dir,
                     const std::vector<PieceState>& states, bool with_rng, bool strict) {
  const auto saved = saved_params(m);
  check_params_match(s, m, tag_dir, saved);
  Staged st;
  LoadPlan plan;
  for (const zero::FlatParamGroup& g : s.groups) {
    GroupStaging gs;
    const std::vector<OwnedPiece> wants = owned_pieces(g.layout());
    for (PieceState state : states) {
      const at::ScalarType dt = piece_dtype(state, m.model_dtype);
      const int64_t esize = static_cast<int64_t>(c10::elementSize(dt));
      at::Tensor buf = at::zeros({g.layout().owned_numel()}, at::TensorOptions().dtype(dt));
      char* base = static_cast<char*>(buf.data_ptr());
      for (const OwnedPiece& want : wants) {
        const ParamEntry& p = *saved.at(g.name(want.param));
        for (const PieceCopy& c : plan_copies(p, want))
          plan.add(rank_file_name(c.source.rank),
                   {{piece_tensor_name(state, p.name, c.source.offset), dt, {c.source.numel}},
                    static_cast<uint64_t>(c.src_offset * esize),
                    static_cast<uint64_t>(c.numel * esize),
                    base + c.owned_offset * esize});
      }
      gs.states.emplace(state, std::move(buf));
    }
    st.groups.push_back(std::move(gs));
  }

  // Buffers and frozen parameters, by name, from module.safetensors.
  std::unordered_map<std::string, at::Tensor> model_tensors;
  for (ModuleTensor& t : module_tensors(*s.module)) model_tensors.emplace(t.name, t.tensor);
  const FileEntry* module_entry = m.file(kModuleFile);
  TORCH_CHECK(module_entry != nullptr, "zerotrain: '", join_path(tag_dir, kManifestFile), "' lists no ",
              kModuleFile);
  if (!m.module_tensors.empty() || !model_tensors.empty()) {
    const InputFile f = open_checked(tag_dir, *module_entry);
    const SafetensorsHeader h = read_safetensors_header(f);
    std::vector<CopyJob> jobs;
    size_t used = 0;
    for (const ModuleTensorEntry& e : m.module_tensors) {
      const TensorRecord* r = h.find(e.name);
      TORCH_CHECK(r != nullptr, "zerotrain: checkpoint file '", f.path(), "' lacks tensor '", e.name, "'");
      auto it = model_tensors.find(e.name);
      if (it == model_tensors.end()) {
        TORCH_CHECK(!strict, "zerotrain: checkpoint '", tag_dir, "' has ", e.kind, " '", e.name,
                    "' that the model lacks (load_module_strict)");
        continue;
      }
      ++used;
      TORCH_CHECK(it->second.sizes().vec() == r->spec.shape, "zerotrain: checkpoint '", tag_dir, "': ",
                  e.kind, " '", e.name, "' has shape ", c10::IntArrayRef(r->spec.shape),
                  " and the model's has ", it->second.sizes());
      at::Tensor v = at::empty(r->spec.shape, at::TensorOptions().dtype(r->spec.dtype));
      jobs.push_back({h.data_start + r->begin, r->end - r->begin, v.data_ptr()});
      st.module.emplace_back(it->second, v);
    }
    if (strict && used != model_tensors.size())
      for (const auto& [name, t] : model_tensors) {
        bool found = false;
        for (const ModuleTensorEntry& e : m.module_tensors) found = found || e.name == name;
        TORCH_CHECK(found, "zerotrain: checkpoint '", tag_dir, "' lacks '", name,
                    "', a buffer or frozen parameter of the model (load_module_strict)");
      }
    stream_file(f, *module_entry, std::move(jobs));
  }

  if (with_rng) {
    std::vector<std::string> names{"rng:cpu"};
    if (!s.device.is_cpu()) names.push_back("rng:cuda");
    const FileEntry* entry = m.file(rank_file_name(s.comm->rank()));
    TORCH_CHECK(entry != nullptr, "zerotrain: '", join_path(tag_dir, kManifestFile), "' lists no ",
                rank_file_name(s.comm->rank()));
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

std::string latest_tag(const std::string& dir) {
  const std::string path = join_path(dir, kLatestFile);
  TORCH_CHECK(path_exists(path), "zerotrain: '", path,
              "' does not exist: no complete checkpoint was saved in '", dir, "' (or give a tag)");
  std::string tag = read_small_file(path, 4096);
  while (!tag.empty() && std::isspace(static_cast<unsigned char>(tag.back()))) tag.pop_back();
  TORCH_CHECK(!tag.empty(), "zerotrain: '", path, "' is empty");
  check_tag(tag);
  return tag;
}

std::optional<LoadedCheckpoint> Engine::load_checkpoint(const std::string& dir, const std::string& tag_in,
                                                        const LoadCheckpointOptions& options) {
  detail::EngineState& s = *state_;
  RECORD_FUNCTION("zerotrain::load_checkpoint", std::vector<c10::IValue>());
  TORCH_CHECK(s.reducer->state() == zero::GradState::kClean && s.micro_steps % s.gas() == 0,
              "zerotrain: load_checkpoint() inside an accumulation window (micro step ", s.micro_steps,
              ") would mix the accumulated gradients with the loaded state; load between steps");
  if (tag_in.empty() && !path_exists(join_path(dir, kLatestFile))) {
    if (s.comm->rank() == 0)
      std::cerr << "zerotrain: no checkpoint to load: '" << join_path(dir, kLatestFile)
                << "' does not exist\n";
    return std::nullopt;
  }
  const bool full = !options.load_module_only && options.load_optimizer_states;
  Manifest m;
  Staged st;
  std::string tag_dir;
  std::string err = capture_error([&] {
    const std::string tag = tag_in.empty() ? latest_tag(dir) : tag_in;
    check_tag(tag);
    tag_dir = join_path(dir, tag);
    m = read_manifest(tag_dir);
    std::vector<PieceState> states;
    if (full)
      states = {PieceState::kMaster, PieceState::kExpAvg, PieceState::kExpAvgSq};
    else
      states = {m.has_model_pieces() ? PieceState::kModel : PieceState::kMaster};
    const bool rng = !options.load_module_only && m.world_size == s.comm->world_size();
    st = plan_and_read(s, m, tag_dir, states, rng, options.load_module_strict);
  });
  agree(*s.comm, s.device, err, "loading checkpoint from '" + dir + "'");

  // Note [A load changes nothing until every file is verified]: from here on, only copies.
  {
    c10::NoGradGuard no_grad;
    for (size_t gi = 0; gi < s.groups.size(); ++gi) {
      zero::FlatParamGroup& g = s.groups[gi];
      const auto& staged = st.groups[gi].states;
      for (const zero::Unit& u : g.units()) {
        const auto part = [&](PieceState state) {
          return staged.at(state).narrow(0, u.owned_offset, u.owned_numel);
        };
        if (full) {
          g.master(u).copy_(part(PieceState::kMaster));
          g.moments(u).exp_avg.copy_(part(PieceState::kExpAvg));
          g.moments(u).exp_avg_sq.copy_(part(PieceState::kExpAvgSq));
          if (g.master_bytes() > 0) g.owned_params(u).copy_(g.master(u));  // rounded as the step rounds
        } else {
          g.owned_params(u).copy_(part(staged.begin()->first));
          if (g.master_bytes() > 0) g.master(u).copy_(g.owned_params(u));
        }
      }
    }
    for (auto& [tensor, value] : st.module) tensor.copy_(value);
  }
  zero::gather_params(s.groups, *s.comm, s.config.zero().allgather_bucket_size);
  for (zero::FlatParamGroup& g : s.groups) g.zero_grads();
  s.reducer->mark_clean();
  for (const auto& [name, value] : st.rng) restore_rng(s.device, name, value);

  if (!options.load_module_only) {
    s.global_steps = m.engine.global_steps;
    s.micro_steps = m.engine.micro_steps;
    s.skipped_steps = m.engine.skipped_steps;
    if (full) s.applied_steps = m.engine.optimizer_steps;
    if (s.scaler.is_dynamic() && m.model_dtype == at::kHalf) s.scaler.restore(m.engine.loss_scaler);
    if (options.load_lr_scheduler_states && s.scheduler && m.engine.scheduler_last_batch_iteration)
      s.scheduler->set_last_batch_iteration(*m.engine.scheduler_last_batch_iteration);
  }
  s.step_applied = false;
  s.reporter->restart();  // rates and the ETA count from here
  LoadedCheckpoint out;
  out.path = tag_dir;
  out.tag = m.tag;
  out.client_state = m.client_state;
  out.saved_world_size = m.world_size;
  out.saved_zero_stage = m.zero_stage;
  out.rng_restored = !st.rng.empty();
  return out;
}

}  // namespace zerotrain
