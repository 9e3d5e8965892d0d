// The flat buffer layout: offsets, padding, equal shards and the segments each
// rank owns, worked out by hand; and the invariant that the segments of all
// ranks cover every parameter element exactly once.

#include "zero/flat_layout.h"

#include <c10/util/Exception.h>

#include <gtest/gtest.h>

#include <vector>

namespace zerotrain::zero {
namespace {

TEST(FlatLayout, AlignedOffsetsPaddingAndSegmentsByHand) {
  // Sizes 5, 7, 1, 100 aligned to 4: offsets 0, 8, 16, 20; the end (120) is
  // already a multiple of 3 ranks x 4, so each shard holds 40 elements.
  const FlatLayout l = FlatLayout::build({5, 7, 1, 100}, 3, 4);
  ASSERT_EQ(l.slots().size(), 4u);
  EXPECT_EQ(l.slots()[0].offset, 0);
  EXPECT_EQ(l.slots()[1].offset, 8);
  EXPECT_EQ(l.slots()[2].offset, 16);
  EXPECT_EQ(l.slots()[3].offset, 20);
  EXPECT_EQ(l.param_numel(), 113);
  EXPECT_EQ(l.padded_numel(), 120);
  EXPECT_EQ(l.shard_numel(), 40);
  EXPECT_EQ(l.segments(0), (std::vector<Segment>{
                               {0, 0, 0, 5}, {1, 0, 8, 7}, {2, 0, 16, 1}, {3, 0, 20, 20}}));
  EXPECT_EQ(l.segments(1), (std::vector<Segment>{{3, 20, 0, 40}}));
  EXPECT_EQ(l.segments(2), (std::vector<Segment>{{3, 60, 0, 40}}));
}

TEST(FlatLayout, EndPaddingMakesEqualAlignedShards) {
  const FlatLayout l = FlatLayout::build({10}, 4, 8);  // 10 -> 32 = 4 x 8
  EXPECT_EQ(l.padded_numel(), 32);
  EXPECT_EQ(l.shard_numel(), 8);
  EXPECT_EQ(l.segments(1), (std::vector<Segment>{{0, 8, 0, 2}}));
  EXPECT_TRUE(l.segments(2).empty());  // padding only
  EXPECT_TRUE(l.segments(3).empty());
}

TEST(FlatLayout, SegmentsCoverEveryElementOnce) {
  const std::vector<int64_t> sizes{1, 65537, 7, 0, 4096, 3, 1000003};
  for (int n : {1, 2, 3, 4, 7}) {
    for (int64_t align : {1, 16}) {
      const FlatLayout l = FlatLayout::build(sizes, n, align);
      EXPECT_EQ(l.padded_numel() % (n * align), 0);
      std::vector<int64_t> covered(sizes.size(), 0);
      for (int r = 0; r < n; ++r) {
        int64_t previous_end = 0;
        for (const Segment& s : l.segments(r)) {
          EXPECT_GE(s.shard_offset, previous_end) << "segments are in buffer order";
          EXPECT_EQ(l.slots()[s.param].offset + s.param_offset,
                    l.shard_range(r).first + s.shard_offset);
          covered[s.param] += s.numel;
          previous_end = s.shard_offset + s.numel;
        }
        EXPECT_LE(previous_end, l.shard_numel());
      }
      EXPECT_EQ(covered, sizes) << "N = " << n << ", align = " << align;
    }
  }
}

TEST(FlatLayout, EmptyGroupAndBadArguments) {
  const FlatLayout l = FlatLayout::build({}, 2, 4);
  EXPECT_EQ(l.shard_numel(), 4);
  EXPECT_TRUE(l.segments(0).empty());
  EXPECT_THROW(FlatLayout::build({3}, 0, 1), c10::Error);
  EXPECT_THROW(FlatLayout::build({3}, 2, 0), c10::Error);
  EXPECT_THROW(FlatLayout::build({3}, 2, 1).segments(2), c10::Error);
}

}  // namespace
}  // namespace zerotrain::zero
