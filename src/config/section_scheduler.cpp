// `scheduler`: DeepSpeed's five LR schedules (runtime/lr_schedules.py) with
// their parameter names and defaults.

#include <string>

#include "config/sections.h"
#include "config/suggest.h"

namespace zerotrain::config_detail {
namespace {

constexpr const char* kTypes[] = {"WarmupLR", "WarmupDecayLR", "WarmupCosineLR", "OneCycle", "LRRangeTest"};

// DeepSpeed accepts per-parameter-group lists for some of these; zerotrain takes one number.
void reject_lists(ObjectReader& p, std::initializer_list<const char*> keys) {
  for (const char* key : keys) {
    const json* v = p.raw(key);
    if (v != nullptr && v->is_array()) {
      p.ctx().error(p.path_of(key), "per-parameter-group lists are not supported by zerotrain; give one number");
    }
  }
}

double required_double(ObjectReader& p, const char* key, Bounds bounds) {
  if (!p.has(key)) {
    p.ctx().error(p.path_of(key), "required by this scheduler");
    return 0.0;
  }
  return p.get_double(key, 0.0, bounds);
}

int64_t required_int(ObjectReader& p, const char* key, Bounds bounds) {
  if (!p.has(key)) {
    p.ctx().error(p.path_of(key), "required by this scheduler");
    return 0;
  }
  return p.get_int(key, 0, bounds);
}

WarmupType read_warmup_type(ObjectReader& p) {
  return p.get_enum("warmup_type", WarmupType::kLog, {{"log", WarmupType::kLog}, {"linear", WarmupType::kLinear}});
}

int64_t read_last_batch_iteration(ObjectReader& p) {
  return p.get_int("last_batch_iteration", -1, Bounds::at_least(-1));
}

}  // namespace

void parse_scheduler(ObjectReader& root, Sections& out) {
  ObjectReader sched = root.child("scheduler");
  if (!sched.present()) return;
  ParseContext& ctx = root.ctx();
  const json* type = sched.raw("type");
  std::string name;
  if (type != nullptr && type->is_string()) name = type->get<std::string>();
  bool known = false;
  for (const char* t : kTypes) known = known || name == t;
  if (!known) {
    std::string message = type == nullptr ? std::string("missing") : "unknown scheduler type " + describe(*type);
    message += "; supported: \"WarmupLR\", \"WarmupDecayLR\", \"WarmupCosineLR\", \"OneCycle\", \"LRRangeTest\"";
    if (!name.empty()) {
      if (auto near = closest_match(name, {std::begin(kTypes), std::end(kTypes)})) {
        message += " (did you mean \"" + *near + "\"?)";
      }
    }
    ctx.error(sched.path_of("type"), message);
    sched.declare("params");
    return;
  }

  ObjectReader p = sched.child("params");
  const Bounds non_negative = Bounds::at_least(0.0);
  const Bounds positive = Bounds::greater_than(0.0);
  if (name == "WarmupLR") {
    reject_lists(p, {"warmup_min_lr", "warmup_max_lr"});
    WarmupLRParams s;
    s.warmup_min_lr = p.get_double("warmup_min_lr", 0.0, non_negative);
    s.warmup_max_lr = p.get_optional_double("warmup_max_lr", non_negative);
    // DeepSpeed's None: the optimizer's lr.
    if (!s.warmup_max_lr && out.optimizer && !ctx.is_unresolved("optimizer.params.lr") &&
        !ctx.is_unresolved("scheduler.params.warmup_max_lr")) {
      s.warmup_max_lr = out.optimizer->lr;
    }
    s.warmup_num_steps = p.get_int("warmup_num_steps", 1000, positive);
    s.warmup_type = read_warmup_type(p);
    s.last_batch_iteration = read_last_batch_iteration(p);
    out.scheduler = s;
  } else if (name == "WarmupDecayLR") {
    reject_lists(p, {"warmup_min_lr", "warmup_max_lr"});
    WarmupDecayLRParams s;
    s.total_num_steps = required_int(p, "total_num_steps", positive);
    s.warmup_min_lr = p.get_double("warmup_min_lr", 0.0, non_negative);
    s.warmup_max_lr = p.get_double("warmup_max_lr", 0.001, non_negative);
    s.warmup_num_steps = p.get_int("warmup_num_steps", 1000, positive);
    s.warmup_type = read_warmup_type(p);
    s.last_batch_iteration = read_last_batch_iteration(p);
    out.scheduler = s;
  } else if (name == "WarmupCosineLR") {
    WarmupCosineLRParams s;
    s.total_num_steps = required_int(p, "total_num_steps", positive);
    s.warmup_min_ratio = p.get_double("warmup_min_ratio", 0.0, non_negative);
    s.warmup_num_steps = p.get_int("warmup_num_steps", 1000, positive);
    s.cos_min_ratio = p.get_double("cos_min_ratio", 1e-4, non_negative);
    s.warmup_type = read_warmup_type(p);
    s.last_batch_iteration = read_last_batch_iteration(p);
    out.scheduler = s;
  } else if (name == "OneCycle") {
    reject_lists(p, {"cycle_min_lr", "cycle_max_lr", "cycle_min_mom", "cycle_max_mom"});
    OneCycleParams s;
    s.cycle_min_lr = required_double(p, "cycle_min_lr", non_negative);
    s.cycle_max_lr = required_double(p, "cycle_max_lr", non_negative);
    s.decay_lr_rate = p.get_double("decay_lr_rate", 0.0, non_negative);
    s.cycle_first_step_size = p.get_int("cycle_first_step_size", 2000, positive);
    s.cycle_second_step_size =
        p.get_optional_int("cycle_second_step_size", non_negative).value_or(s.cycle_first_step_size);
    s.cycle_first_stair_count = p.get_int("cycle_first_stair_count", 0, non_negative);
    s.cycle_second_stair_count =
        p.get_optional_int("cycle_second_stair_count", non_negative).value_or(s.cycle_first_stair_count);
    s.decay_step_size = p.get_int("decay_step_size", 0, non_negative);
    s.cycle_momentum = p.get_bool("cycle_momentum", true);
    s.cycle_min_mom = p.get_double("cycle_min_mom", 0.8, Bounds::half_open(0.0, 1.0));
    s.cycle_max_mom = p.get_double("cycle_max_mom", 0.9, Bounds::half_open(0.0, 1.0));
    s.decay_mom_rate = p.get_double("decay_mom_rate", 0.0, non_negative);
    s.last_batch_iteration = read_last_batch_iteration(p);
    out.scheduler = s;
  } else {  // LRRangeTest
    reject_lists(p, {"lr_range_test_min_lr"});
    LRRangeTestParams s;
    s.min_lr = p.get_double("lr_range_test_min_lr", 1e-3, non_negative);
    s.step_size = p.get_int("lr_range_test_step_size", 2000, positive);
    s.step_rate = p.get_double("lr_range_test_step_rate", 1.0, non_negative);
    s.staircase = p.get_bool("lr_range_test_staircase", false);
    s.last_batch_iteration = read_last_batch_iteration(p);
    out.scheduler = s;
  }
}

}  // namespace zerotrain::config_detail
