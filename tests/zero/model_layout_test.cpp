// ModelLayout: each unit padded to N equal shards in a buffer of its own,
// owned parts back to back, and an optimizer group's elements as one run per
// unit (Note [Optimizer groups run over units]).

#include "zero/model_layout.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>

namespace zerotrain::zero {
namespace {

TEST(ModelLayout, EveryUnitIsPaddedOnItsOwnAndOwnedPartsLieBackToBack) {
  const std::vector<int64_t> numels{120, 20, 40, 50, 30};
  const ModelLayout m = ModelLayout::build({{0}, {1, 2}, {3, 4}}, numels, 2, /*sharded=*/true, 4);
  ASSERT_EQ(m.units().size(), 3u);
  // Unit 1: 20 at 0, 40 at 20, end 60 -> padded to a multiple of 2 * 4 = 64.
  EXPECT_EQ(m.unit(1).flat.padded_numel(), 64);
  EXPECT_EQ(m.param_offset(2), 20);  // inside its own unit's buffer
  EXPECT_EQ(m.place(4).unit, 2);
  EXPECT_EQ(m.place(4).slot, 1);
  // Rank 1 owns the second half of every unit; owned offsets are back to back.
  EXPECT_EQ(m.unit(1).owned_offset, 60);
  EXPECT_EQ(m.owned_range(1, 1), (std::pair<int64_t, int64_t>{32, 64}));
  // Unit 2: 50 at 0, 30 at 52 (aligned to 4), end 82 -> 88.
  EXPECT_EQ(m.padded_numel(), 120 + 64 + 88);
  EXPECT_EQ(m.owned_numel(), m.padded_numel() / 2);
  EXPECT_EQ(m.param_numel(), 260);
}

TEST(ModelLayout, StageZeroOwnsEveryUnitWhole) {
  const ModelLayout m = ModelLayout::build({{0, 1}, {2, 3}}, {7, 9, 11, 13}, 4, /*sharded=*/false, 1);
  EXPECT_FALSE(m.sharded());
  EXPECT_EQ(m.owned_numel(), m.padded_numel());
  EXPECT_EQ(m.owned_range(1, 3), (std::pair<int64_t, int64_t>{0, m.unit(1).flat.padded_numel()}));
  EXPECT_EQ(m.owned_segments(0, 2).size(), 2u);
}

TEST(ModelLayout, AGroupIsOneRunPerUnitClippedToTheOwnedShard) {
  // Unit 0 holds parameters 0, 2 (group A) then 1 (group B), in buffer order.
  const std::vector<int64_t> numels{10, 6, 12, 8};
  const ModelLayout m = ModelLayout::build({{0, 2, 1}, {3}}, numels, 2, /*sharded=*/true, 1);
  // Unit 0: 10 + 12 + 6 = 28 -> shards of 14. Group A spans [0, 22), B [22, 28).
  const std::vector<OwnedRun> a0 = m.owned_runs({0, 2}, 0), a1 = m.owned_runs({0, 2}, 1);
  ASSERT_EQ(a0.size(), 1u);
  EXPECT_EQ(a0[0].unit, 0);
  EXPECT_EQ(a0[0].begin, 0);
  EXPECT_EQ(a0[0].numel, 14);
  ASSERT_EQ(a1.size(), 1u);
  EXPECT_EQ(a1[0].begin, 0);
  EXPECT_EQ(a1[0].numel, 8);  // [14, 22) of the unit
  const std::vector<OwnedRun> b1 = m.owned_runs({1, 3}, 1);
  ASSERT_EQ(b1.size(), 2u);  // [22, 28) of unit 0 and rank 1's half of unit 1
  EXPECT_EQ(b1[0].begin, 8);
  EXPECT_EQ(b1[0].numel, 6);
  EXPECT_EQ(b1[1].unit, 1);
  EXPECT_EQ(b1[1].numel, 4);
  EXPECT_TRUE(m.owned_runs({1, 3}, 0).size() == 1u);  // rank 0 holds none of B in unit 0
  // A group whose parameters are not contiguous in a unit is a bug in the caller.
  EXPECT_THROW(m.owned_runs({0, 1}, 0), c10::Error);
}

}  // namespace
}  // namespace zerotrain::zero
