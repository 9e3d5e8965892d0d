// The checkpoint format's building blocks without an engine: safetensors
// writing and validated reading, the manifest's round trip and its errors, and
// the piece arithmetic that re-sharding rests on.

#include "checkpoint/checksum.h"
#include "checkpoint/shard_pieces.h"
#include "checkpoint_util.h"

#include <gtest/gtest.h>

#include <numeric>

namespace zerotrain::testing {
namespace {

using namespace ckpt;

TEST(Safetensors, RoundTripsAndChecksumMatchesTheFile) {
  TempDir dir;
  const std::string path = dir / "t.safetensors";
  at::Tensor a = at::arange(7, at::kFloat), b = at::arange(6, at::kLong).view({2, 3}).to(at::kBFloat16);
  SafetensorsWriter w(path, {{"a", at::kFloat, {7}}, {"b", at::kBFloat16, {2, 3}}}, {{"k", "v"}});
  w.write(a.data_ptr(), 12);  // any split of the bytes is allowed
  w.write(static_cast<char*>(a.data_ptr()) + 12, 16);
  w.write(b.data_ptr(), b.nbytes());
  const FileDigest d = w.finish();

  const InputFile f(path);
  EXPECT_EQ(f.size(), d.bytes);
  const SafetensorsHeader h = read_safetensors_header(f);
  EXPECT_EQ(h.data_start % 8, 0u);
  EXPECT_EQ(h.metadata.at("k"), "v");
  ASSERT_NE(h.find("b"), nullptr);
  EXPECT_EQ(h.find("b")->spec.shape, (std::vector<int64_t>{2, 3}));
  at::Tensor back = at::empty({2, 3}, at::kBFloat16);
  f.read_at(h.data_start + h.find("b")->begin, back.data_ptr(), back.nbytes());
  EXPECT_TRUE(same_bits(back, b));

  const std::string all = read_small_file(path);
  Checksum c;
  c.update(all.data(), all.size());
  EXPECT_EQ(c.digest(), d.checksum);
  FileEntry entry{"t.safetensors", d.bytes, d.checksum};
  at::Tensor copied = at::zeros({7}, at::kFloat);
  stream_file(f, entry, {{h.data_start + h.find("a")->begin, 28, copied.data_ptr()}});
  EXPECT_TRUE(same_bits(copied, a));
}

TEST(Safetensors, RejectsTruncatedAndInconsistentFilesNamingThem) {
  TempDir dir;
  const std::string path = dir / "t.safetensors";
  at::Tensor a = at::arange(100, at::kFloat);
  SafetensorsWriter w(path, {{"a", at::kFloat, {100}}});
  w.write(a.data_ptr(), a.nbytes());
  const FileDigest d = w.finish();

  truncate_file(path, d.bytes - 4);
  std::string e = error_of([&] { read_safetensors_header(InputFile(path)); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;

  truncate_file(path, 5);
  e = error_of([&] { read_safetensors_header(InputFile(path)); });
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;

  // A checksum catches a flipped data byte the header cannot see.
  SafetensorsWriter w2(path, {{"a", at::kFloat, {100}}});
  w2.write(a.data_ptr(), a.nbytes());
  const FileDigest d2 = w2.finish();
  flip_byte(path, d2.bytes - 10);
  e = error_of([&] { stream_file(InputFile(path), {"t.safetensors", d2.bytes, d2.checksum}, {}); });
  EXPECT_NE(e.find("corrupt"), std::string::npos) << e;
  EXPECT_NE(e.find(path), std::string::npos) << e;
}

Manifest small_manifest() {
  Manifest m;
  m.zerotrain_version = "0.1.0";
  m.torch_version = "2.11.0";
  m.tag = "global_step3";
  m.world_size = 2;
  m.zero_stage = 2;
  m.model_dtype = at::kBFloat16;
  m.optimizer = "AdamW";
  m.config = {{"train_batch_size", 8}};
  m.client_state = {{"epoch", 2}, {"note", "x"}};
  m.engine.global_steps = 3;
  m.engine.optimizer_steps = 2;
  m.engine.loss_scaler.scale = 1024;
  m.engine.scheduler_last_batch_iteration = 1;
  m.groups.push_back({1e-3, 0.01, {{"w", {3, 5}, {{0, 0, 8}, {1, 8, 7}}}}});
  m.module_tensors.push_back({"bn.running_mean", "buffer"});
  m.files.push_back({"rank_00000.safetensors", 123, 0xdeadbeef12345678ULL});
  return m;
}

TEST(Manifest, RoundTripsThroughText) {
  const Manifest m = small_manifest();
  const Manifest back = Manifest::parse(m.to_text(), "manifest.json");
  EXPECT_EQ(back.tag, m.tag);
  EXPECT_EQ(back.world_size, 2);
  EXPECT_EQ(back.model_dtype, at::kBFloat16);
  EXPECT_EQ(back.client_state, m.client_state);
  EXPECT_EQ(back.engine.scheduler_last_batch_iteration, 1);
  EXPECT_EQ(back.engine.loss_scaler, m.engine.loss_scaler);
  ASSERT_EQ(back.groups.at(0).params.at(0).pieces.size(), 2u);
  EXPECT_EQ(back.groups[0].params[0].pieces[1].offset, 8);
  EXPECT_EQ(back.files.at(0).checksum, 0xdeadbeef12345678ULL);
  EXPECT_EQ(back.piece_states().size(), 4u);  // bf16: the model copy too
}

TEST(Manifest, ErrorsNameTheFileAndTheProblem) {
  const std::string text = small_manifest().to_text();
  // Any edit breaks the self-checksum.
  std::string edited = text;
  edited.replace(edited.find("\"world_size\": 2"), 15, "\"world_size\": 3");
  std::string e = error_of([&] { Manifest::parse(edited, "/x/manifest.json"); });
  EXPECT_NE(e.find("/x/manifest.json"), std::string::npos) << e;
  EXPECT_NE(e.find("corrupt"), std::string::npos) << e;
  e = error_of([&] { Manifest::parse(text.substr(0, text.size() / 2), "/x/manifest.json"); });
  EXPECT_NE(e.find("not valid JSON"), std::string::npos) << e;
  e = error_of([&] { Manifest::parse("{\"format\": \"other\"}", "/x/manifest.json"); });
  EXPECT_NE(e.find("not a zerotrain checkpoint manifest"), std::string::npos) << e;

  Manifest gap = small_manifest();
  gap.groups[0].params[0].pieces[1].offset = 9;  // a hole in the tiling
  e = error_of([&] { Manifest::parse(gap.to_text(), "/x/manifest.json"); });
  EXPECT_NE(e.find("do not tile"), std::string::npos) << e;
  Manifest future = small_manifest();
  future.format_version = kFormatVersion + 1;
  e = error_of([&] { Manifest::parse(future.to_text(), "/x/manifest.json"); });
  EXPECT_NE(e.find("format version"), std::string::npos) << e;
}

// Whatever the world size and stage, the pieces of all ranks tile every
// parameter exactly once, and plan_copies fills any other layout's shard
// from them element for element.
TEST(ShardPieces, EveryLayoutRoundTripsThroughAnyOther) {
  const std::vector<int64_t> numels{5, 130, 1, 64, 77, 3, 250};
  const std::vector<std::string> names{"a", "b", "c", "d", "e", "f", "g"};
  // Saved and loaded layouts cut the model into different units, as a save
  // before the unit redesign (or with another wrap policy) would.
  const std::vector<std::vector<std::vector<int>>> unit_cuts{
      {{0, 1, 2}, {3, 4}, {5, 6}}, {{0, 1, 2, 3, 4, 5, 6}}, {{6}, {0, 2, 4}, {1, 3, 5}}};
  int cut = 0;
  const auto build = [&](int world, int /*rank*/, int stage) {
    return zero::ModelLayout::build(unit_cuts[static_cast<size_t>(cut)], numels, world, stage >= 1, 4);
  };
  // A "parameter value" is its global element index, so any misplaced copy shows.
  std::vector<int64_t> start(numels.size(), 0);
  for (size_t i = 1; i < numels.size(); ++i) start[i] = start[i - 1] + numels[i - 1];
  for (auto [w_from, s_from] : std::vector<std::pair<int, int>>{{2, 2}, {4, 1}, {1, 0}, {3, 0}, {3, 2}}) {
    cut = (w_from + s_from) % 3;
    std::vector<ParamEntry> saved(numels.size());
    std::map<int, std::vector<float>> files;  // rank -> its owned buffer
    for (int r = 0; r < w_from; ++r) {
      const auto layout = build(w_from, r, s_from);
      if (!writes_pieces(layout, r)) continue;
      std::vector<float> owned(static_cast<size_t>(layout.owned_numel()), -1.0f);
      for (const OwnedPiece& p : owned_pieces(layout, r)) {
        saved[static_cast<size_t>(p.param)].pieces.push_back({r, p.param_offset, p.numel});
        for (int64_t k = 0; k < p.numel; ++k)
          owned[static_cast<size_t>(p.owned_offset + k)] = static_cast<float>(start[p.param] + p.param_offset + k);
      }
      files[r] = owned;
    }
    for (size_t i = 0; i < numels.size(); ++i) {
      auto& pieces = saved[i].pieces;
      std::sort(pieces.begin(), pieces.end(), [](auto& a, auto& b) { return a.offset < b.offset; });
      int64_t covered = 0;
      for (const PieceRef& p : pieces) {
        ASSERT_EQ(p.offset, covered) << "param " << i << " from N=" << w_from;
        covered += p.numel;
      }
      ASSERT_EQ(covered, numels[i]);
      saved[i].name = names[i];
      saved[i].shape = {numels[i]};
    }
    // Where the saved pieces' elements sit inside each saved rank's owned buffer.
    const auto source_value = [&](int param, const PieceRef& src, int64_t k) {
      for (const OwnedPiece& p : owned_pieces(build(w_from, src.rank, s_from), src.rank))
        if (p.param == param && p.param_offset == src.offset)
          return files[src.rank][static_cast<size_t>(p.owned_offset + k)];
      return -2.0f;
    };
    const int saved_cut = cut;
    for (auto [w_to, s_to] : std::vector<std::pair<int, int>>{{1, 0}, {4, 2}, {2, 1}, {5, 2}}) {
      for (int r = 0; r < w_to; ++r) {
        cut = (saved_cut + 1 + w_to) % 3;
        const auto layout = build(w_to, r, s_to);
        cut = saved_cut;  // source_value() rebuilds the saved layouts
        for (const OwnedPiece& want : owned_pieces(layout, r)) {
          int64_t filled = 0;
          for (const PieceCopy& c : plan_copies(saved[static_cast<size_t>(want.param)], want)) {
            for (int64_t k = 0; k < c.numel; ++k) {
              const int64_t element = want.param_offset + (c.owned_offset - want.owned_offset) + k;
              ASSERT_EQ(source_value(want.param, c.source, c.src_offset + k),
                        static_cast<float>(start[want.param] + element))
                  << "N=" << w_from << " stage " << s_from << " -> N=" << w_to << " stage " << s_to;
            }
            filled += c.numel;
          }
          ASSERT_EQ(filled, want.numel);
        }
      }
    }
  }
}

}  // namespace
}  // namespace zerotrain::testing
