// GroupLayout: units cut in reverse registration order by the bucket size,
// each unit padded to N equal shards, owned offsets back to back.

#include "zero/group_layout.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>

namespace zerotrain::zero {
namespace {

TEST(GroupLayout, CutsUnitsFromTheLastParameterAndKeepsRegistrationOrder) {
  // Bucket 100: from the end, 30 + 50 fit (80), 40 would overflow -> new unit;
  // 40 + 20 = 60; 120 alone is larger than the bucket.
  const std::vector<int64_t> numels{120, 20, 40, 50, 30};
  const GroupLayout g = GroupLayout::build(numels, 2, 1, ShardingPolicy::for_stage(2), 100, 4);
  ASSERT_EQ(g.units().size(), 3u);
  EXPECT_EQ(g.units()[0].first_param, 0);
  EXPECT_EQ(g.units()[0].num_params, 1);
  EXPECT_EQ(g.units()[1].first_param, 1);
  EXPECT_EQ(g.units()[1].num_params, 2);
  EXPECT_EQ(g.units()[2].first_param, 3);
  EXPECT_EQ(g.units()[2].num_params, 2);
  // Unit 1: offsets 0 and 20, end 60 -> padded to a multiple of 2 * 4 = 64.
  EXPECT_EQ(g.units()[1].layout.padded_numel(), 64);
  EXPECT_EQ(g.units()[1].flat_offset, 120);
  EXPECT_EQ(g.param_offset(2), 120 + 20);
  EXPECT_EQ(g.unit_of(4), 2);
  // Rank 1 owns the second half of every unit; owned offsets are back to back.
  EXPECT_EQ(g.units()[1].owned_offset, 60);
  const std::pair<int64_t, int64_t> owned{152, 184};
  EXPECT_EQ(g.owned_range_in_flat(g.units()[1]), owned);
  // Unit 2: 50 at 0, 30 at 52 (aligned to 4), end 82 -> 88.
  EXPECT_EQ(g.flat_numel(), 120 + 64 + 88);
  EXPECT_EQ(g.owned_numel(), g.flat_numel() / 2);
  EXPECT_EQ(g.param_numel(), 260);
}

TEST(GroupLayout, StageZeroOwnsEveryUnitWholeAndUnitsDoNotDependOnWorldSize) {
  const std::vector<int64_t> numels{7, 9, 11, 13};
  const GroupLayout z = GroupLayout::build(numels, 4, 3, ShardingPolicy::for_stage(0), 20, 1);
  EXPECT_FALSE(z.sharded());
  EXPECT_EQ(z.owned_numel(), z.flat_numel());
  EXPECT_EQ(z.owned_range_in_flat(z.units()[0]).first, 0);
  for (int n : {1, 2, 3, 8}) {
    const GroupLayout g = GroupLayout::build(numels, n, 0, ShardingPolicy::for_stage(1), 20, 1);
    ASSERT_EQ(g.units().size(), z.units().size()) << "N=" << n;
    for (size_t u = 0; u < g.units().size(); ++u) {
      EXPECT_EQ(g.units()[u].first_param, z.units()[u].first_param);
      EXPECT_EQ(g.units()[u].layout.padded_numel() % n, 0);
    }
  }
}

TEST(GroupLayout, RejectsANonPositiveBucket) {
  EXPECT_THROW(GroupLayout::build({4}, 1, 0, ShardingPolicy::for_stage(1), 0, 1), c10::Error);
}

}  // namespace
}  // namespace zerotrain::zero
