// Every example in configs/ loads, at several world sizes, and its resolved
// form parses back to the same config.

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "zerotrain/config.h"

#include "support/paths.h"

namespace zerotrain {
namespace {

std::vector<std::string> config_files() {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(testing::configs_dir())) {
    if (entry.path().extension() == ".json") files.push_back(entry.path().filename().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

class ConfigFile : public ::testing::TestWithParam<std::string> {
 protected:
  std::string path() const { return testing::config_path(GetParam()); }
};

TEST_P(ConfigFile, LoadsAtWorldSizes1To4AndRoundTrips) {
  for (int64_t w : {1, 2, 4}) {
    ResolveOptions o;
    o.world_size = w;
    const Config c = Config::from_file(path(), o);
    EXPECT_TRUE(c.warnings().empty()) << GetParam() << " has warnings";
    const nlohmann::json resolved = c.to_json();
    const Config again = Config::from_json(resolved, o);
    EXPECT_EQ(again.to_json(), resolved) << GetParam() << " at world size " << w;
    if (c.unresolved_auto().empty()) {
      EXPECT_EQ(c.batch().world_size, w);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Examples, ConfigFile, ::testing::ValuesIn(config_files()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param.substr(0, info.param.size() - 5);
                           for (char& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

TEST(ConfigFiles, CoverEveryStagePrecisionSchedulerAndOffload) {
  std::set<int> stages;
  std::set<DType> dtypes;
  std::set<std::string> schedulers;
  bool offload_optimizer = false, offload_param = false, lamb = false;
  for (const std::string& f : config_files()) {
    ResolveOptions o;
    o.auto_values.hidden_size = 8;
    const Config c = Config::from_file(testing::config_path(f), o);
    stages.insert(c.zero().stage);
    dtypes.insert(c.model_dtype());
    if (c.scheduler()) schedulers.insert(scheduler_type_name(*c.scheduler()));
    offload_optimizer |= c.zero().offload_optimizer.enabled();
    offload_param |= c.zero().offload_param.enabled();
    lamb |= c.optimizer() && c.optimizer()->kind == OptimizerKind::kLamb;
  }
  EXPECT_EQ(stages.size(), 4u);
  EXPECT_EQ(dtypes.size(), 3u);
  EXPECT_EQ(schedulers.size(), 5u);
  EXPECT_TRUE(offload_optimizer);
  EXPECT_TRUE(offload_param);
  EXPECT_TRUE(lamb);
}

}  // namespace
}  // namespace zerotrain
