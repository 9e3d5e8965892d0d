// Bad checkpoint files (docs/reliability.md, "Bad files"): truncated,
// bit-flipped, missing, extra and another model's files, a manifest whose
// shapes, dtype or format version are wrong (rewritten with a valid checksum
// of its own, so only the content is wrong), and a `latest` naming a missing
// tag. Each load must fail with an error naming the file and the problem,
// and leave the engine exactly as it was: parameters, master weights,
// moments and counters compared bit for bit before and after.

#include "checkpoint/checkpoint_util.h"
#include "engine/training.h"
#include "reliability/sized_model.h"

#include <gtest/gtest.h>

#include <dirent.h>

namespace zerotrain::testing {
namespace {

constexpr int64_t kMicro = 4;

Config bad_files_config() { return test_config(1, "bf16", kMicro, 1, 1.0); }

Engine engine_for(const std::shared_ptr<TestModel>& model) {
  InitOptions io;
  io.communicator = one_rank_communicator();
  return initialize(model, bad_files_config(), io);
}

// Everything a load could change, read through a save (moments included).
struct EngineState {
  std::map<std::string, at::Tensor> tensors;
  int64_t global_steps = 0;
};
EngineState state_of(Engine& e, TestModel& m, const std::string& scratch, const std::string& tag) {
  EngineState s;
  for (const auto& [name, t] : snapshot(e, m)) s.tensors["param:" + name] = t;
  SaveCheckpointOptions o;
  o.save_latest = false;
  e.save_checkpoint(scratch, tag, o);
  for (ckpt::PieceState st : {ckpt::PieceState::kMaster, ckpt::PieceState::kExpAvg, ckpt::PieceState::kExpAvgSq})
    for (auto& [name, t] : full_state(scratch + "/" + tag, st))
      s.tensors[std::string(ckpt::to_string(st)) + ":" + name] = t;
  s.global_steps = e.global_steps();
  return s;
}

// std::filesystem is avoided: libtorch.so exports an incompatible copy of it.
std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  while (d != nullptr) {
    const dirent* e = ::readdir(d);
    if (e == nullptr) break;
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") out.emplace_back(e->d_name);
  }
  if (d != nullptr) ::closedir(d);
  return out;
}
void copy_file(const std::string& from, const std::string& to) {
  ckpt::write_file_atomically(to, ckpt::read_small_file(from));
}
void copy_tree(const std::string& from, const std::string& to) {
  ckpt::make_directories(to);
  for (const std::string& name : entries(from)) {
    if (ckpt::is_directory(from + "/" + name)) copy_tree(from + "/" + name, to + "/" + name);
    else copy_file(from + "/" + name, to + "/" + name);
  }
}
uint64_t file_size(const std::string& path) { return ckpt::InputFile(path).size(); }

// The manifest parsed, changed by `edit`, and written back with a valid checksum.
void rewrite_manifest(const std::string& tag_dir, const std::function<void(ckpt::Manifest&)>& edit) {
  const std::string path = tag_dir + "/manifest.json";
  ckpt::Manifest m = ckpt::Manifest::parse(ckpt::read_small_file(path), path);
  edit(m);
  ckpt::write_file_atomically(path, m.to_text());
}

// What this catches: a load that applies the files it read before finding a
// bad one (the state comparison fails), a damage that is not detected (the
// load succeeds), and an error that does not say which file or what is wrong.
TEST(BadFiles, EveryDamagedCheckpointIsRejectedNamingTheFileAndChangesNothing) {
  TempDir good_dir, other_dir, scratch;
  {
    auto model = make_model(ModelKind::kMlp);
    Engine e = engine_for(model);
    const Data data = make_data(*model, 2, kMicro);
    for (int s = 0; s < 2; ++s) engine_step(e, *model, data, s, kMicro);
    e.save_checkpoint(good_dir.path(), "good");
    auto other = std::make_shared<Sized>(12);
    Engine o = engine_for(other);
    o.save_checkpoint(other_dir.path(), "good");
  }
  auto model = make_model(ModelKind::kMlp, 99);
  Engine e = engine_for(model);
  const Data data = make_data(*model, 1, kMicro);
  engine_step(e, *model, data, 0, kMicro);  // moments and counters that a bad load could overwrite
  const EngineState before = state_of(e, *model, scratch.path(), "before");

  const std::string tag_dir = good_dir / "good";
  const std::string rank_file = tag_dir + "/rank_00000.safetensors", module_file = tag_dir + "/module.safetensors";
  const std::string manifest = tag_dir + "/manifest.json";
  struct Case {
    std::string what;
    std::function<void()> damage;
    std::string names;   // the file the error must name
    std::string reason;  // and a word of what is wrong
  };
  const uint64_t rank_bytes = file_size(rank_file);
  const std::vector<Case> cases{
      {"a truncated rank file", [&] { truncate_file(rank_file, rank_bytes / 2); }, rank_file, "truncated"},
      {"a rank file cut by one byte", [&] { truncate_file(rank_file, rank_bytes - 1); }, rank_file, "truncated"},
      {"a flipped data byte", [&] { flip_byte(rank_file, rank_bytes - 3); }, rank_file, "corrupt"},
      {"a flipped header byte", [&] { flip_byte(rank_file, 40); }, rank_file, ""},
      {"a flipped module byte", [&] { flip_byte(module_file, file_size(module_file) - 2); },
       module_file, "corrupt"},
      {"a missing rank file", [&] { ckpt::remove_tree(rank_file); }, rank_file, "missing"},
      {"a missing module file", [&] { ckpt::remove_tree(module_file); }, module_file, "missing"},
      {"a missing manifest", [&] { ckpt::remove_tree(manifest); }, manifest, "missing"},
      {"a flipped manifest byte", [&] { flip_byte(manifest, file_size(manifest) / 2); }, manifest,
       ""},
      {"an extra rank file", [&] { copy_file(rank_file, tag_dir + "/rank_00001.safetensors"); },
       tag_dir + "/rank_00001.safetensors", "not listed"},
      {"another model's files",
       [&] {
         for (const std::string& name : entries(other_dir / "good"))
           copy_file(other_dir / ("good/" + name), tag_dir + "/" + name);
       },
       tag_dir, "l1.weight"},
      {"a manifest with a transposed shape",
       [&] {
         rewrite_manifest(tag_dir, [](ckpt::Manifest& m) {
           auto& shape = m.groups.at(0).params.at(0).shape;
           std::swap(shape[0], shape[1]);
         });
       },
       tag_dir, "l1.weight"},
      {"a manifest with another dtype",
       [&] { rewrite_manifest(tag_dir, [](ckpt::Manifest& m) { m.model_dtype = at::kHalf; }); }, tag_dir, ""},
      {"a checkpoint from a future format version",
       [&] { rewrite_manifest(tag_dir, [](ckpt::Manifest& m) { m.format_version = ckpt::kFormatVersion + 1; }); },
       manifest, "format version 2"},
      {"a latest naming a missing tag", [&] { ckpt::write_file_atomically(good_dir / "latest", "gone"); },
       good_dir / "gone", "does not exist"},
  };
  const std::string pristine = scratch / "pristine";
  copy_tree(good_dir.path(), pristine);
  int rejected = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ckpt::remove_tree(good_dir.path());
    copy_tree(pristine, good_dir.path());
    ASSERT_TRUE(inspect_checkpoint(good_dir.path(), "good").all_ok());
    c.damage();
    const std::string err = error_of([&] { e.load_checkpoint(good_dir.path()); });
    std::printf("%-42s -> %s\n", c.what.c_str(), err.substr(0, err.find('\n')).c_str());
    EXPECT_FALSE(err.empty()) << "loaded";
    EXPECT_NE(err.find(c.names), std::string::npos) << err;
    EXPECT_NE(err.find(c.reason), std::string::npos) << err;
    if (!err.empty()) ++rejected;
  }
  const EngineState after = state_of(e, *model, scratch.path(), "after");
  EXPECT_EQ(after.global_steps, before.global_steps);
  ASSERT_EQ(after.tensors.size(), before.tensors.size());
  for (const auto& [name, t] : before.tensors) EXPECT_TRUE(same_bits(t, after.tensors.at(name))) << "changed: " << name;
  std::printf("bad checkpoints tried: %zu, rejected: %d, engine state changed: %s\n", cases.size(), rejected,
              ::testing::Test::HasFailure() ? "see failures" : "no");
}

}  // namespace
}  // namespace zerotrain::testing
