// ckpt::save_checkpoint and save_16bit_model (engine_checkpoint.h).
//
// Note [A save is atomic]
// Every rank writes its file into `<dir>/.<tag>.partial/` and fsyncs it; the
// ranks agree that all files are written (a failure anywhere fails the save on
// every rank and commits nothing); rank 0 writes the manifest with every
// file's size and checksum, fsyncs it and the directory, and moves the
// directory into place as `<dir>/<tag>` (a rename, or an atomic exchange
// when the tag already exists); only then is `<dir>/latest` replaced, through
// a temporary file and a rename. A process killed at any moment leaves either
// the previous state or the new complete tag, and `latest` always names a
// complete tag. A stale `.partial` directory is removed by the next save.

#include "checkpoint/engine_checkpoint.h"

#include "checkpoint/agree.h"
#include "checkpoint/checksum.h"
#include "checkpoint/file_io.h"
#include "checkpoint/manifest.h"
#include "checkpoint/reader.h"
#include "checkpoint/safetensors.h"
#include "checkpoint/shard_pieces.h"
#include "checkpoint/torch_format.h"
#include "zerotrain/version.h"

#include <ATen/record_function.h>
#include <c10/util/Exception.h>

#include <cstring>
#include <memory>
#include <unordered_map>
#include <iostream>

namespace zerotrain::ckpt {

namespace {

FileDigest write_file(const std::string& path, const std::vector<Slot>& slots,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  specs.reserve(slots.size());
  for (const Slot& s : slots) specs.push_back(s.spec);
  SafetensorsWriter w(path, std::move(specs), metadata);
  for (const Slot& s : slots) {
    const at::Tensor t = s.data.device().is_cpu() ? s.data.contiguous() : s.data.cpu().contiguous();
    TORCH_INTERNAL_ASSERT(t.nbytes() == s.spec.nbytes(), "slot ", s.spec.name, " has the wrong size");
    w.write(t.data_ptr(), t.nbytes());
  }
  return w.finish();
}

int64_t as_signed(uint64_t v) {
  int64_t out;
  std::memcpy(&out, &v, sizeof out);
  return out;
}
uint64_t as_unsigned(int64_t v) {
  uint64_t out;
  std::memcpy(&out, &v, sizeof out);
  return out;
}

// checkpoint.tag_validation: DeepSpeed compares the tag's hash across ranks.
void validate_tag(const EngineParts& e, const std::string& tag) {
  const TagValidation mode = e.config.checkpoint().tag_validation;
  if (mode == TagValidation::kIgnore) return;
  Checksum h;
  h.update(tag.data(), tag.size());
  const std::vector<int64_t> all =
      all_gather_values(e.comm, e.model.device(), std::vector<int64_t>{as_signed(h.digest())});
  for (size_t r = 1; r < all.size(); ++r) {
    if (all[r] == all[0]) continue;
    const std::string msg = "zerotrain: checkpoint tag '" + tag + "' differs between rank 0 and rank " +
                            std::to_string(r) + " (checkpoint.tag_validation)";
    TORCH_CHECK(mode != TagValidation::kFail, msg);
    if (e.comm.rank() == 0) std::cerr << msg << "; saving anyway (tag_validation is Warn)\n";
    return;
  }
}

Manifest build_manifest(const EngineParts& e, const EngineCounters& counters, const std::string& tag,
                        const nlohmann::json& client, const std::vector<int64_t>& digests,
                        const FileDigest& module_digest, const std::vector<detail::ModuleTensor>& module) {
  const zero::ShardedModel& model = e.model;
  Manifest m;
  m.zerotrain_version = ZEROTRAIN_VERSION_STRING;
  m.torch_version = ZEROTRAIN_TORCH_VERSION_STRING;
  m.tag = tag;
  m.world_size = e.comm.world_size();
  m.zero_stage = e.config.zero().stage;
  m.model_dtype = model.dtype();
  m.optimizer = to_string(e.config.optimizer()->kind);
  m.config = e.config.to_json();
  m.client_state = client;
  m.engine = counters;
  const auto pieces = saved_pieces(model.layout());
  for (const zero::OptimizerGroup& g : model.groups()) {
    GroupEntry ge;
    ge.lr = g.lr;
    ge.weight_decay = g.weight_decay;
    for (int p : g.params)
      ge.params.push_back({model.param_names()[static_cast<size_t>(p)], model.param(p).sizes().vec(),
                           pieces[static_cast<size_t>(p)]});
    m.groups.push_back(std::move(ge));
  }
  for (const detail::ModuleTensor& t : module) m.module_tensors.push_back({t.name, t.kind});
  for (int r = 0; r < m.world_size; ++r)
    m.files.push_back({rank_file_name(r), as_unsigned(digests[2 * static_cast<size_t>(r)]),
                       as_unsigned(digests[2 * static_cast<size_t>(r) + 1])});
  m.files.push_back({kModuleFile, module_digest.bytes, module_digest.checksum});
  return m;
}

}  // namespace

std::string save_checkpoint(const EngineParts& e, const EngineCounters& counters, const std::string& dir,
                            const std::string& tag_in, const SaveCheckpointOptions& options) {
  RECORD_FUNCTION("zerotrain::save_checkpoint", std::vector<c10::IValue>());
  const std::string tag = tag_in.empty() ? "global_step" + std::to_string(counters.global_steps) : tag_in;
  check_tag(tag);
  validate_tag(e, tag);
  Communicator& comm = e.comm;
  const c10::Device device = e.model.device();
  const int rank = comm.rank();
  const std::string tag_dir = join_path(dir, tag);
  const std::string tmp_dir = join_path(dir, "." + tag + ".partial");

  std::string err;
  if (rank == 0)
    err = capture_error([&] {
      make_directories(dir);
      remove_tree(tmp_dir);  // left by a save that was killed
      make_directories(tmp_dir);
    });
  agree(comm, device, err, "preparing checkpoint directory '" + tmp_dir + "'");

  FileDigest mine, module_digest;
  const std::vector<detail::ModuleTensor> module = e.access.module_tensors();
  err = capture_error([&] {
    std::vector<Slot> slots = piece_slots(e.model, piece_states(e.model.dtype()));
    for (Slot& r : rng_slots(device)) slots.push_back(std::move(r));
    mine = write_file(join_path(tmp_dir, rank_file_name(rank)), slots,
                      {{"format", kFormatName}, {"tag", tag}, {"rank", std::to_string(rank)}});
    if (rank == 0) {
      std::vector<Slot> module_slots;
      for (const detail::ModuleTensor& t : module)
        module_slots.push_back({{t.name, t.tensor.scalar_type(), t.tensor.sizes().vec()}, t.tensor});
      module_digest = write_file(join_path(tmp_dir, kModuleFile), module_slots, {{"format", kFormatName}, {"tag", tag}});
    }
  });
  agree(comm, device, err, "writing checkpoint files into '" + tmp_dir + "'");
  const std::vector<int64_t> digests =
      all_gather_values(comm, device, std::vector<int64_t>{as_signed(mine.bytes), as_signed(mine.checksum)});

  if (rank == 0)
    err = capture_error([&] {
      const Manifest m = build_manifest(e, counters, tag, options.client_state, digests, module_digest, module);
      const std::string text = m.to_text();
      OutputFile f(join_path(tmp_dir, kManifestFile));
      f.write(text.data(), text.size());
      f.sync_and_close();
      fsync_directory(tmp_dir);
      replace_path(tmp_dir, tag_dir);  // Note [A save is atomic]
      fsync_directory(dir);
      if (options.save_latest) write_file_atomically(join_path(dir, kLatestFile), tag);
    });
  agree(comm, device, err, "committing checkpoint '" + tag_dir + "'");
  return tag_dir;
}

namespace {

// The file save_16bit_model writes on rank 0, one tensor at a time.
class ModelFileWriter {
 public:
  ModelFileWriter(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                  bool safetensors) {
    if (safetensors) {
      std::vector<TensorSpec> specs;
      for (const auto& [name, t] : tensors) specs.push_back({name, t.scalar_type(), t.sizes().vec()});
      safetensors_ = std::make_unique<SafetensorsWriter>(path, std::move(specs),
                                                         std::map<std::string, std::string>{{"format", "pt"}});
    } else {
      torch_ = std::make_unique<TorchStateDictWriter>(path);
    }
  }
  void add(const std::string& name, const at::Tensor& t) {
    if (torch_) return torch_->add(name, t);
    const at::Tensor c = t.device().is_cpu() ? t.contiguous() : t.cpu().contiguous();
    safetensors_->write(c.data_ptr(), c.nbytes());
  }
  void finish() {
    if (torch_) torch_->finish();
    if (safetensors_) safetensors_->finish();
  }

 private:
  std::unique_ptr<SafetensorsWriter> safetensors_;
  std::unique_ptr<TorchStateDictWriter> torch_;
};

}  // namespace

std::string save_16bit_model(const EngineParts& e, const std::string& dir, const std::string& filename) {
  TORCH_CHECK(!filename.empty() && filename.find('/') == std::string::npos,
              "zerotrain: save_16bit_model() takes a file name without '/', got '", filename, "'");
  zero::ShardedModel& model = e.model;
  TORCH_CHECK(!model.shards_parameters() || e.config.zero().stage3.gather_16bit_weights_on_model_save,
              "zerotrain: save_16bit_model() at stage 3 gathers the sharded parameters unit by unit; set "
              "zero_optimization.stage3_gather_16bit_weights_on_model_save to true to allow it (as DeepSpeed "
              "requires)");
  const std::string path = join_path(dir, filename);
  const std::string tmp = path + ".partial";
  const bool rank0 = e.comm.rank() == 0;
  const std::vector<std::pair<std::string, at::Tensor>> tensors = e.access.state_tensors();
  // A trainable parameter is a view of its unit's flat buffer: its storage
  // names the unit, under every name a tied parameter is registered with.
  std::unordered_map<const c10::StorageImpl*, int> unit_of;
  for (const zero::FlatUnit& u : model.units())
    unit_of.emplace(u.flat_params().storage().unsafeGetStorageImpl(), u.index());
  std::string err;
  std::unique_ptr<ModelFileWriter> writer;
  if (rank0)
    err = capture_error([&] {
      make_directories(dir);
      const bool safetensors = filename.size() > 12 && filename.rfind(".safetensors") == filename.size() - 12;
      writer = std::make_unique<ModelFileWriter>(tmp, tensors, safetensors);
    });
  // Stage 3: every rank gathers each released unit as the file reaches it,
  // and releases it when the next tensor belongs elsewhere, so one unit is
  // gathered at a time (the file is written on rank 0 only).
  int held = -1;
  for (const auto& [name, t] : tensors) {
    const auto it = unit_of.find(t.storage().unsafeGetStorageImpl());
    const int unit = it == unit_of.end() ? -1 : it->second;
    if (unit != held && held >= 0) {
      model.release({held});
      held = -1;
    }
    if (unit >= 0 && model.units()[static_cast<size_t>(unit)].param_state() == zero::ParamState::kSharded) {
      model.gather({unit});
      held = unit;
    }
    if (rank0 && err.empty()) err = capture_error([&] { writer->add(name, t); });
  }
  if (held >= 0) model.release({held});
  if (rank0 && err.empty())
    err = capture_error([&] {
      writer->finish();
      replace_path(tmp, path);
      fsync_directory(dir);
    });
  agree(e.comm, model.device(), err, "save_16bit_model('" + path + "')");
  return path;
}

}  // namespace zerotrain::ckpt
