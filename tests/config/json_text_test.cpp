// The JSON text layer: comments, duplicate keys with their paths, syntax errors.

#include <gtest/gtest.h>

#include "config/json_text.h"
#include "config/suggest.h"
#include "zerotrain/config.h"

namespace zerotrain::config_detail {
namespace {

TEST(JsonText, LineAndBlockCommentsAreAccepted) {
  std::vector<ConfigProblem> problems;
  const auto doc = parse_config_text(R"({
    // a line comment
    "a": 1, /* a block
               comment */ "b": [1, 2]
  })", problems);
  ASSERT_TRUE(problems.empty());
  EXPECT_EQ(doc["a"], 1);
  EXPECT_EQ(doc["b"].size(), 2u);
}

TEST(JsonText, EveryDuplicateIsReportedWithItsPath) {
  std::vector<ConfigProblem> problems;
  parse_config_text(R"({"a": 1, "n": {"x": [0, {"k": 1, "k": 2}], "y": 1, "y": 2}, "a": 3})", problems);
  ASSERT_EQ(problems.size(), 3u);
  EXPECT_EQ(problems[0].path, "n.x[1].k");
  EXPECT_EQ(problems[1].path, "n.y");
  EXPECT_EQ(problems[2].path, "a");
}

TEST(JsonText, SameKeyInDifferentObjectsIsNotADuplicate) {
  std::vector<ConfigProblem> problems;
  parse_config_text(R"({"fp16": {"enabled": true}, "bf16": {"enabled": false}, "l": [{"e": 1}, {"e": 2}]})", problems);
  EXPECT_TRUE(problems.empty());
}

TEST(JsonText, SyntaxErrorNamesLineAndColumn) {
  std::vector<ConfigProblem> problems;
  parse_config_text("{\n\"a\": 1,\n\"b\": ]\n}", problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].path, "");
  EXPECT_NE(problems[0].message.find("line 3"), std::string::npos) << problems[0].message;
}

TEST(Suggest, EditDistanceCountsTranspositionsAndIgnoresCase) {
  EXPECT_EQ(edit_distance("stage", "stage"), 0u);
  EXPECT_EQ(edit_distance("satge", "stage"), 1u);
  EXPECT_EQ(edit_distance("STAGE", "stage"), 0u);
  EXPECT_EQ(edit_distance("zero_optimisation", "zero_optimization"), 1u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
}

TEST(Suggest, ClosestMatchOnlyWhenClose) {
  EXPECT_EQ(closest_match("overlap_com", {"overlap_comm", "stage"}), "overlap_comm");
  EXPECT_EQ(closest_match("xyz", {"overlap_comm", "stage"}), std::nullopt);
  EXPECT_EQ(closest_match("gradient_accumulation", {"gradient_accumulation_steps"}), "gradient_accumulation_steps");
}

}  // namespace
}  // namespace zerotrain::config_detail
