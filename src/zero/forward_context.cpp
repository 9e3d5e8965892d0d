// See Note [Forwards inside activation checkpointing] in forward_context.h.

#include "zero/forward_context.h"

namespace zerotrain::zero {
namespace {
thread_local ForwardKind g_kind = ForwardKind::kPlain;
}  // namespace

ForwardKind current_forward_kind() noexcept { return g_kind; }

ForwardKindScope::ForwardKindScope(ForwardKind kind) noexcept : previous_(g_kind) { g_kind = kind; }
ForwardKindScope::~ForwardKindScope() { g_kind = previous_; }

}  // namespace zerotrain::zero
