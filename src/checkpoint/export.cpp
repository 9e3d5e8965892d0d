// zerotrain::export_checkpoint and zerotrain::inspect_checkpoint: offline
// readers of a checkpoint directory (the `zerotrain checkpoint` commands).
//
// Note [Export holds one tensor at a time]
// Export first verifies every file's size and checksum in a streaming pass
// (constant memory), then assembles the parameters one by one from their
// pieces (Note [A parameter's pieces]) with positional reads, converts each to
// the requested dtype and writes it out before the next. Peak memory is
// about twice the largest parameter, not the model: the manifest gives every
// shape up front, so even the safetensors header is written before any data.

#include <zerotrain/checkpoint.h>

#include "checkpoint/file_io.h"
#include "checkpoint/manifest.h"
#include "checkpoint/reader.h"
#include "checkpoint/safetensors.h"
#include "checkpoint/torch_format.h"
#include "precision/scalar_type.h"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <map>
#include <memory>
#include <sstream>

namespace zerotrain {

using namespace ckpt;

namespace {

using precision::scalar_type;

std::string resolve(const std::string& dir, const std::string& tag) {
  const std::string t = tag.empty() ? latest_tag(dir) : tag;
  check_tag(t);
  return t;
}

// Opened files with their headers, by name.
class Files {
 public:
  Files(std::string tag_dir, const Manifest& m) : tag_dir_(std::move(tag_dir)), m_(m) {}
  struct Open {
    std::unique_ptr<InputFile> file;
    SafetensorsHeader header;
  };
  const Open& get(const std::string& name) {
    auto it = open_.find(name);
    if (it != open_.end()) return it->second;
    const FileEntry* e = m_.file(name);
    TORCH_CHECK(e != nullptr, "zerotrain: '", join_path(tag_dir_, kManifestFile), "' lists no file '", name,
                "'");
    Open o;
    o.file = std::make_unique<InputFile>(open_checked(tag_dir_, *e));
    o.header = read_safetensors_header(*o.file);
    return open_.emplace(name, std::move(o)).first->second;
  }
  /// Tensor `tensor` of file `name`, read whole into `out` (which has its size).
  void read(const std::string& name, const TensorSpec& tensor, void* out) {
    const Open& o = get(name);
    const TensorRecord* r = o.header.find(tensor.name);
    TORCH_CHECK(r != nullptr && r->spec.dtype == tensor.dtype && r->spec.shape == tensor.shape,
                "zerotrain: checkpoint file '", o.file->path(), "' lacks tensor '", tensor.name, "' (",
                tensor.dtype, ", ", tensor.numel(), " elements) that the manifest places there");
    o.file->read_at(o.header.data_start + r->begin, out, r->end - r->begin);
  }

 private:
  std::string tag_dir_;
  const Manifest& m_;
  std::map<std::string, Open> open_;
};

}  // namespace

ExportReport export_checkpoint(const std::string& dir, const std::string& out, const ExportOptions& options) {
  const std::string tag_dir = existing_or_replaced(join_path(dir, resolve(dir, options.tag)));
  const Manifest m = read_manifest(tag_dir);
  for (const FileEntry& e : m.files) stream_file(open_checked(tag_dir, e), e, {});

  Files files(tag_dir, m);
  const at::ScalarType dtype = scalar_type(options.dtype);
  std::vector<TensorSpec> specs;
  for (const GroupEntry& g : m.groups)
    for (const ParamEntry& p : g.params) specs.push_back({p.name, dtype, p.shape});
  const SafetensorsHeader& module_header = files.get(kModuleFile).header;
  for (const ModuleTensorEntry& t : m.module_tensors) {
    const TensorRecord* r = module_header.find(t.name);
    TORCH_CHECK(r != nullptr, "zerotrain: '", join_path(tag_dir, kModuleFile), "' lacks tensor '", t.name, "'");
    specs.push_back(r->spec);
  }

  ExportReport report;
  report.path = out;
  const std::string tmp = out + ".partial";
  std::unique_ptr<SafetensorsWriter> st;
  std::unique_ptr<TorchStateDictWriter> pt;
  if (options.format == ExportFormat::kSafetensors)
    st = std::make_unique<SafetensorsWriter>(tmp, specs, std::map<std::string, std::string>{{"format", "pt"}});
  else
    pt = std::make_unique<TorchStateDictWriter>(tmp);
  const auto emit = [&](const TensorSpec& spec, const at::Tensor& t) {
    if (st)
      st->write(t.data_ptr(), t.nbytes());
    else
      pt->add(spec.name, t.view(spec.shape));
    ++report.tensors;
  };

  size_t k = 0;
  for (const GroupEntry& g : m.groups)
    for (const ParamEntry& p : g.params) {
      at::Tensor full = at::empty({p.numel()}, at::TensorOptions().dtype(at::kFloat));
      char* base = static_cast<char*>(full.data_ptr());
      for (const PieceRef& piece : p.pieces)
        files.read(rank_file_name(piece.rank),
                   {piece_tensor_name(PieceState::kMaster, p.name, piece.offset), at::kFloat, {piece.numel}},
                   base + piece.offset * 4);
      at::Tensor t = dtype == at::kFloat ? full : full.to(dtype);
      const uint64_t held = full.nbytes() + (t.is_same(full) ? 0 : t.nbytes());
      report.largest_tensor_bytes = std::max<uint64_t>(report.largest_tensor_bytes, held);
      emit(specs[k++], t);
    }
  for (; k < specs.size(); ++k) {
    at::Tensor t = at::empty(specs[k].shape, at::TensorOptions().dtype(specs[k].dtype));
    files.read(kModuleFile, specs[k], t.data_ptr());
    report.largest_tensor_bytes = std::max<uint64_t>(report.largest_tensor_bytes, t.nbytes());
    emit(specs[k], t);
  }
  report.bytes = st ? st->finish().bytes : pt->finish();
  replace_path(tmp, out);
  return report;
}

bool CheckpointInfo::all_ok() const {
  for (const CheckpointFileStatus& f : files)
    if (!f.ok) return false;
  return true;
}

std::string CheckpointInfo::to_string() const {
  std::ostringstream o;
  o << "directory:   " << dir << "\n";
  o << "tags:        ";
  for (size_t i = 0; i < tags.size(); ++i) o << (i ? ", " : "") << tags[i];
  o << "\nlatest:      " << (latest.empty() ? "(none)" : latest) << "\n";
  o << "tag:         " << tag << " (format " << format_version << ", zerotrain " << zerotrain_version
    << ", LibTorch " << torch_version << ")\n";
  o << "saved by:    " << world_size << " rank" << (world_size == 1 ? "" : "s") << ", ZeRO stage "
    << zero_stage << ", " << model_dtype << " model, " << optimizer << "\n";
  o << "step:        " << global_steps << " (" << skipped_steps << " skipped)\n";
  o << "parameters:  " << num_parameters << "\n";
  o << "files:       " << files.size() << ", " << total_bytes << " bytes\n";
  for (const CheckpointFileStatus& f : files)
    o << "  " << f.name << "  " << f.bytes << " bytes  "
      << (!verified ? "not verified" : f.ok ? "checksum ok" : "BAD: " + f.problem) << "\n";
  if (verified) o << (all_ok() ? "all checksums verify\n" : "VERIFICATION FAILED\n");
  return o.str();
}

CheckpointInfo inspect_checkpoint(const std::string& dir, const std::string& tag, bool verify) {
  CheckpointInfo info;
  info.dir = dir;
  info.tags = list_tags(dir);
  if (path_exists(join_path(dir, kLatestFile))) info.latest = latest_tag(dir);
  info.tag = !tag.empty() ? tag : !info.latest.empty() ? info.latest : "";
  TORCH_CHECK(!info.tag.empty(), "zerotrain: '", dir, "' holds no checkpoint (no 'latest' file); "
              "tags found: ", info.tags.size());
  check_tag(info.tag);
  const std::string tag_dir = existing_or_replaced(join_path(dir, info.tag));
  const Manifest m = read_manifest(tag_dir);
  info.format_version = m.format_version;
  info.zerotrain_version = m.zerotrain_version;
  info.torch_version = m.torch_version;
  info.world_size = m.world_size;
  info.zero_stage = m.zero_stage;
  info.model_dtype = dtype_name(m.model_dtype);
  info.optimizer = m.optimizer;
  info.global_steps = m.engine.global_steps;
  info.skipped_steps = m.engine.skipped_steps;
  info.num_parameters = m.num_parameters();
  info.verified = verify;
  for (const FileEntry& e : m.files) {
    CheckpointFileStatus f{e.name, e.bytes, true, {}};
    info.total_bytes += e.bytes;
    if (verify) {
      try {
        const InputFile in = open_checked(tag_dir, e);
        read_safetensors_header(in);
        stream_file(in, e, {});
      } catch (const c10::Error& err) {
        f.ok = false;
        f.problem = err.what_without_backtrace();
      }
    }
    info.files.push_back(std::move(f));
  }
  return info;
}

}  // namespace zerotrain
