// See manifest.h.

#include "checkpoint/manifest.h"

#include "checkpoint/checksum.h"

#include <c10/util/Exception.h>

#include <cstdio>

namespace zerotrain::ckpt {

namespace {

using nlohmann::json;

constexpr const char* kSelfChecksumKey = "manifest_checksum";

// Field access that names the file and the field on every failure.
class Fields {
 public:
  Fields(const json& j, std::string path, std::string where)
      : j_(j), path_(std::move(path)), where_(std::move(where)) {
    TORCH_CHECK(j_.is_object(), "zerotrain: '", path_, "': ", where_.empty() ? "the manifest" : where_,
                " is not a JSON object");
  }
  const json& at(const std::string& key) const {
    auto it = j_.find(key);
    TORCH_CHECK(it != j_.end(), "zerotrain: '", path_, "': missing field ", name(key));
    return *it;
  }
  bool has(const std::string& key) const { return j_.contains(key); }
  std::string str(const std::string& key) const {
    const json& v = at(key);
    check(v.is_string(), key, "a string");
    return v.get<std::string>();
  }
  int64_t integer(const std::string& key, int64_t min = INT64_MIN) const {
    const json& v = at(key);
    check(v.is_number_integer(), key, "an integer");
    const int64_t x = v.get<int64_t>();
    TORCH_CHECK(x >= min, "zerotrain: '", path_, "': field ", name(key), " is ", x,
                ", below its minimum ", min);
    return x;
  }
  double number(const std::string& key) const {
    const json& v = at(key);
    check(v.is_number(), key, "a number");
    return v.get<double>();
  }
  const json& array(const std::string& key) const {
    const json& v = at(key);
    check(v.is_array(), key, "a list");
    return v;
  }
  Fields child(const std::string& key) const { return Fields(at(key), path_, name(key)); }
  Fields element(const std::string& key, size_t i) const {
    return Fields(array(key)[i], path_, name(key) + "[" + std::to_string(i) + "]");
  }
  std::string name(const std::string& key) const { return where_.empty() ? key : where_ + "." + key; }
  const std::string& path() const { return path_; }

 private:
  void check(bool ok, const std::string& key, const char* what) const {
    TORCH_CHECK(ok, "zerotrain: '", path_, "': field ", name(key), " is not ", what);
  }
  const json& j_;
  std::string path_;
  std::string where_;
};

at::ScalarType dtype_from_name(const std::string& s, const std::string& path, const std::string& field) {
  if (s == "fp32") return at::kFloat;
  if (s == "bf16") return at::kBFloat16;
  if (s == "fp16") return at::kHalf;
  TORCH_CHECK(false, "zerotrain: '", path, "': field ", field, " is '", s, "', not fp32, bf16 or fp16");
}

}  // namespace

const char* to_string(PieceState s) {
  switch (s) {
    case PieceState::kMaster: return "master";
    case PieceState::kExpAvg: return "exp_avg";
    case PieceState::kExpAvgSq: return "exp_avg_sq";
    case PieceState::kModel: return "model";
  }
  return "?";
}

at::ScalarType piece_dtype(PieceState s, at::ScalarType model_dtype) {
  return s == PieceState::kModel ? model_dtype : at::kFloat;
}

const char* dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "fp32";
    case at::kBFloat16: return "bf16";
    case at::kHalf: return "fp16";
    default: TORCH_CHECK(false, "zerotrain: checkpoints hold fp32, bf16 or fp16 models, not ", dtype);
  }
}

std::string rank_file_name(int rank) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "rank_%05d.safetensors", rank);
  return buf;
}

std::string piece_tensor_name(PieceState state, const std::string& param, int64_t offset) {
  return std::string(to_string(state)) + ":" + param + ":" + std::to_string(offset);
}

int64_t ParamEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<PieceState> piece_states(at::ScalarType model_dtype) {
  std::vector<PieceState> s{PieceState::kMaster, PieceState::kExpAvg, PieceState::kExpAvgSq};
  if (model_dtype != at::kFloat) s.push_back(PieceState::kModel);
  return s;
}

int64_t Manifest::num_parameters() const {
  int64_t n = 0;
  for (const GroupEntry& g : groups)
    for (const ParamEntry& p : g.params) n += p.numel();
  return n;
}

const FileEntry* Manifest::file(const std::string& name) const {
  for (const FileEntry& f : files)
    if (f.name == name) return &f;
  return nullptr;
}

std::string Manifest::to_text() const {
  json j;
  j["format"] = kFormatName;
  j["format_version"] = format_version;
  j["zerotrain_version"] = zerotrain_version;
  j["torch_version"] = torch_version;
  j["tag"] = tag;
  j["world_size"] = world_size;
  j["zero_stage"] = zero_stage;
  j["model_dtype"] = dtype_name(model_dtype);
  j["optimizer"] = optimizer;
  j["config"] = config;
  j["client_state"] = client_state;
  json e;
  e["global_steps"] = engine.global_steps;
  e["micro_steps"] = engine.micro_steps;
  e["skipped_steps"] = engine.skipped_steps;
  e["optimizer_steps"] = engine.optimizer_steps;
  e["loss_scaler"] = {{"scale", engine.loss_scaler.scale},
                      {"iteration", engine.loss_scaler.iteration},
                      {"last_overflow_iteration", engine.loss_scaler.last_overflow_iteration},
                      {"hysteresis_left", engine.loss_scaler.hysteresis_left}};
  e["lr_scheduler"] = engine.scheduler_last_batch_iteration
                          ? json{{"last_batch_iteration", *engine.scheduler_last_batch_iteration}}
                          : json(nullptr);
  j["engine"] = e;
  json groups_j = json::array();
  for (const GroupEntry& g : groups) {
    json params = json::array();
    for (const ParamEntry& p : g.params) {
      json pieces = json::array();
      for (const PieceRef& r : p.pieces) pieces.push_back({r.rank, r.offset, r.numel});
      params.push_back({{"name", p.name}, {"shape", p.shape}, {"pieces", pieces}});
    }
    groups_j.push_back({{"lr", g.lr}, {"weight_decay", g.weight_decay}, {"params", params}});
  }
  j["groups"] = groups_j;
  json module_j = json::array();
  for (const ModuleTensorEntry& m : module_tensors) module_j.push_back({{"name", m.name}, {"kind", m.kind}});
  j["module_tensors"] = module_j;
  json files_j = json::array();
  for (const FileEntry& f : files)
    files_j.push_back({{"name", f.name}, {"bytes", f.bytes}, {"xxh3", Checksum::to_hex(f.checksum)}});
  j["files"] = files_j;

  Checksum self;
  const std::string body = j.dump();
  self.update(body.data(), body.size());
  j[kSelfChecksumKey] = Checksum::to_hex(self.digest());
  return j.dump(1) + "\n";
}

Manifest Manifest::parse(const std::string& text, const std::string& path) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    TORCH_CHECK(false, "zerotrain: '", path, "' is not valid JSON (corrupt or truncated): ", e.what());
  }
  {
    Fields f(j, path, "");
    TORCH_CHECK(f.has("format") && f.at("format") == kFormatName, "zerotrain: '", path,
                "' is not a zerotrain checkpoint manifest (no \"format\": \"", kFormatName, "\")");
    const std::string stored = f.str(kSelfChecksumKey);
    json body = j;
    body.erase(kSelfChecksumKey);
    const std::string dumped = body.dump();
    Checksum self;
    self.update(dumped.data(), dumped.size());
    TORCH_CHECK(Checksum::to_hex(self.digest()) == stored, "zerotrain: '", path,
                "' is corrupt: its content does not match its manifest_checksum");
  }
  Fields f(j, path, "");
  Manifest m;
  m.format_version = static_cast<int>(f.integer("format_version", 1));
  TORCH_CHECK(m.format_version <= kFormatVersion, "zerotrain: '", path, "' has format version ",
              m.format_version, "; this zerotrain reads versions up to ", kFormatVersion,
              " (upgrade zerotrain to load it)");
  m.zerotrain_version = f.str("zerotrain_version");
  m.torch_version = f.str("torch_version");
  m.tag = f.str("tag");
  m.world_size = static_cast<int>(f.integer("world_size", 1));
  m.zero_stage = static_cast<int>(f.integer("zero_stage", 0));
  m.model_dtype = dtype_from_name(f.str("model_dtype"), path, "model_dtype");
  m.optimizer = f.str("optimizer");
  m.config = f.at("config");
  m.client_state = f.at("client_state");

  const Fields e = f.child("engine");
  m.engine.global_steps = e.integer("global_steps", 0);
  m.engine.micro_steps = e.integer("micro_steps", 0);
  m.engine.skipped_steps = e.integer("skipped_steps", 0);
  m.engine.optimizer_steps = e.integer("optimizer_steps", 0);
  const Fields ls = e.child("loss_scaler");
  m.engine.loss_scaler.scale = ls.number("scale");
  m.engine.loss_scaler.iteration = ls.integer("iteration", 0);
  m.engine.loss_scaler.last_overflow_iteration = ls.integer("last_overflow_iteration", -1);
  m.engine.loss_scaler.hysteresis_left = ls.integer("hysteresis_left", 0);
  if (!e.at("lr_scheduler").is_null())
    m.engine.scheduler_last_batch_iteration = e.child("lr_scheduler").integer("last_batch_iteration", -1);

  const json& groups = f.array("groups");
  for (size_t g = 0; g < groups.size(); ++g) {
    const Fields gf = f.element("groups", g);
    GroupEntry ge;
    ge.lr = gf.number("lr");
    ge.weight_decay = gf.number("weight_decay");
    const json& params = gf.array("params");
    for (size_t i = 0; i < params.size(); ++i) {
      const Fields pf = gf.element("params", i);
      ParamEntry p;
      p.name = pf.str("name");
      for (const json& d : pf.array("shape")) {
        TORCH_CHECK(d.is_number_integer() && d.get<int64_t>() >= 0, "zerotrain: '", path, "': field ",
                    pf.name("shape"), " is not a list of sizes");
        p.shape.push_back(d.get<int64_t>());
      }
      int64_t covered = 0;
      for (const json& r : pf.array("pieces")) {
        TORCH_CHECK(r.is_array() && r.size() == 3 && r[0].is_number_integer() &&
                        r[1].is_number_integer() && r[2].is_number_integer(),
                    "zerotrain: '", path, "': field ", pf.name("pieces"), " holds ", r.dump(),
                    ", not [rank, offset, numel]");
        PieceRef piece{r[0].get<int>(), r[1].get<int64_t>(), r[2].get<int64_t>()};
        TORCH_CHECK(piece.rank >= 0 && piece.rank < m.world_size && piece.offset == covered &&
                        piece.numel > 0,
                    "zerotrain: '", path, "': the pieces of parameter '", p.name,
                    "' do not tile it (", r.dump(), " after ", covered, " elements)");
        covered += piece.numel;
        p.pieces.push_back(piece);
      }
      TORCH_CHECK(covered == p.numel(), "zerotrain: '", path, "': the pieces of parameter '", p.name,
                  "' cover ", covered, " of its ", p.numel(), " elements");
      ge.params.push_back(std::move(p));
    }
    m.groups.push_back(std::move(ge));
  }
  const json& module_tensors = f.array("module_tensors");
  for (size_t i = 0; i < module_tensors.size(); ++i) {
    const Fields mf = f.element("module_tensors", i);
    m.module_tensors.push_back({mf.str("name"), mf.str("kind")});
  }
  const json& files = f.array("files");
  for (size_t i = 0; i < files.size(); ++i) {
    const Fields ff = f.element("files", i);
    FileEntry fe;
    fe.name = ff.str("name");
    TORCH_CHECK(!fe.name.empty() && fe.name.find('/') == std::string::npos && fe.name[0] != '.',
                "zerotrain: '", path, "': field ", ff.name("name"), " is not a plain file name");
    fe.bytes = static_cast<uint64_t>(ff.integer("bytes", 0));
    fe.checksum = Checksum::from_hex(ff.str("xxh3"));
    m.files.push_back(std::move(fe));
  }
  return m;
}

}  // namespace zerotrain::ckpt
