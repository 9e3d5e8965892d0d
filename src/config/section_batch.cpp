// The batch triple, resolved as DeepSpeed does (runtime/config.py
// _set_batch_related_parameters and _batch_assertion), with its messages.

#include <string>

#include "config/sections.h"

namespace zerotrain::config_detail {

void parse_batch(ObjectReader& root, Sections& out) {
  ParseContext& ctx = root.ctx();
  const size_t unresolved_before = ctx.unresolved().size();
  const size_t errors_before = ctx.errors().size();
  std::optional<int64_t> tb = root.get_optional_int("train_batch_size");
  std::optional<int64_t> mb = root.get_optional_int("train_micro_batch_size_per_gpu");
  std::optional<int64_t> gas = root.get_optional_int("gradient_accumulation_steps");
  out.given_train_batch_size = tb;
  out.given_micro_batch = mb;
  out.given_gradient_accumulation_steps = gas;
  if (ctx.unresolved().size() != unresolved_before || ctx.errors().size() != errors_before) {
    return;  // "auto" still to be resolved, or a type error already reported
  }
  const int64_t w = ctx.options().world_size;
  if (w < 1) return;  // reported by Config

  // DeepSpeed's messages for a value that is not positive. Given values are
  // checked first, so that nothing is derived from a zero or negative one.
  const auto positive = [&](const std::optional<int64_t>& v, const char* key, const char* what,
                            const std::string& note) {
    if (!v || *v > 0) return true;
    ctx.error(key, std::string(what) + ": " + std::to_string(*v) + " has to be greater than 0" + note);
    return false;
  };
  bool given_ok = positive(tb, "train_batch_size", "Train batch size", "");
  given_ok = positive(mb, "train_micro_batch_size_per_gpu", "Micro batch size per gpu", "") && given_ok;
  given_ok = positive(gas, "gradient_accumulation_steps", "Gradient accumulation steps", "") && given_ok;
  if (!given_ok) return;

  // Which values were given decides which are derived (floor division, as DeepSpeed).
  std::string derived;
  if (tb && mb && gas) {
  } else if (tb && mb) {
    gas = *tb / *mb / w;
    derived = "gradient_accumulation_steps = train_batch_size // train_micro_batch_size_per_gpu // world_size";
  } else if (tb && gas) {
    mb = *tb / w / *gas;
    derived = "train_micro_batch_size_per_gpu = train_batch_size // world_size // gradient_accumulation_steps";
  } else if (mb && gas) {
    tb = *mb * *gas * w;
    derived = "train_batch_size = train_micro_batch_size_per_gpu * gradient_accumulation_steps * world_size";
  } else if (tb) {
    gas = 1;
    mb = *tb / w;
    derived = "train_micro_batch_size_per_gpu = train_batch_size // world_size";
  } else if (mb) {
    gas = 1;
    tb = *mb * w;
    derived = "train_batch_size = train_micro_batch_size_per_gpu * world_size";
  } else {
    ctx.error("train_batch_size",
              "Either train_batch_size or train_micro_batch_size_per_gpu needs to be provided");
    return;
  }
  const std::string note = derived.empty() ? "" : " (derived: " + derived + ")";
  bool ok = positive(tb, "train_batch_size", "Train batch size", note);
  ok = positive(mb, "train_micro_batch_size_per_gpu", "Micro batch size per gpu", note) && ok;
  ok = positive(gas, "gradient_accumulation_steps", "Gradient accumulation steps", note) && ok;
  if (!ok) return;
  if (*tb != *mb * *gas * w) {
    ctx.error("train_batch_size",
              "Check batch related parameters. train_batch_size is not equal to micro_batch_per_gpu * "
              "gradient_acc_step * world_size " +
                  std::to_string(*tb) + " != " + std::to_string(*mb) + " * " + std::to_string(*gas) + " * " +
                  std::to_string(w) + note);
    return;
  }
  out.batch = BatchConfig{*tb, *mb, *gas, w};
  out.batch_resolved = true;
}

}  // namespace zerotrain::config_detail
