// Engine::save_checkpoint, load_checkpoint and save_16bit_model: the checks
// only the engine can make, then src/checkpoint/ with the parts it may see.

#include <zerotrain/engine.h>

#include "checkpoint/engine_checkpoint.h"
#include "engine/engine_impl.h"

#include <c10/util/Exception.h>

namespace zerotrain {

namespace {

ckpt::EngineParts parts(detail::EngineImpl& s) {
  return {s.config, *s.channels.reduce, *s.core, *s.model};
}

void check_between_steps(const detail::EngineImpl& s, const char* what) {
  TORCH_CHECK(s.core->grad_state() == zero::GradState::kClean && s.progress.between_steps(), "zerotrain: ", what,
              " inside an accumulation window (micro step ", s.progress.counters.micro_steps,
              ", gradient_accumulation_steps ", s.progress.gas(),
              ") would lose or mix the accumulated gradients; call it after the boundary step()");
}

}  // namespace

std::string Engine::save_checkpoint(const std::string& dir, const std::string& tag,
                                    const SaveCheckpointOptions& options) {
  detail::EngineImpl& s = *state_;
  check_between_steps(s, "save_checkpoint()");
  s.resolve_pending_step();  // the counts a checkpoint keeps
  return ckpt::save_checkpoint(parts(s), s.progress.save(), dir, tag, options);
}

std::optional<LoadedCheckpoint> Engine::load_checkpoint(const std::string& dir, const std::string& tag,
                                                        const LoadCheckpointOptions& options) {
  detail::EngineImpl& s = *state_;
  check_between_steps(s, "load_checkpoint()");
  std::optional<ckpt::LoadResult> r = ckpt::load_checkpoint(parts(s), dir, tag, options);
  if (!r) return std::nullopt;
  if (!options.load_module_only)
    s.progress.restore(r->counters, r->saved_gas, r->saved_dtype, r->optimizer_states,
                       options.load_lr_scheduler_states);
  s.progress.step_applied = false;
  s.reporter->restart();  // rates and the ETA count from here
  s.telemetry->rebase(s.channels.stats());
  return r->info;
}

std::string Engine::save_16bit_model(const std::string& dir, const std::string& filename) {
  return ckpt::save_16bit_model(parts(*state_), dir, filename);
}

}  // namespace zerotrain
