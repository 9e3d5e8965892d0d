#pragma once
// Note [Every rank starts from the same model and config]
// A data-parallel job is only correct when every rank trains the same model
// with the same settings. Ranks that read different config files, or built
// different models, train silently wrong or hang in a collective whose sizes
// do not match. So initialize() compares, with one small all-gather, a digest
// of the effective config, of the parameters' names, shapes and dtypes, and
// of their values; only when one differs does it exchange enough to name what
// differs: the config key and both values, or the first differing parameter.
// A config or a model structure that differs is an error on every rank.
// Values that differ (each rank initialised from its own seed) are not: every
// rank trains from rank 0's values, broadcast by the core as DeepSpeed's
// engine broadcasts them, so the job is correct; initialize() warns, naming
// the parameter, since an unseeded rank often means an unseeded data order.

#include <zerotrain/comm.h>
#include <zerotrain/config.h>

#include "zero/model_spec.h"

#include <c10/core/Device.h>

#include <string>

namespace zerotrain::detail {

/// Collective. Throws on every rank when the effective configs or the
/// parameters' names, shapes and dtypes differ between ranks: a ConfigError
/// naming the first differing key, or a c10::Error naming the parameter and
/// the ranks. Returns a warning (empty if none) when the parameters' values
/// differ; `values_sharded` (pieces cut at creation) skips the values.
std::string check_ranks_agree(Communicator& comm, c10::Device device, const Config& config,
                              const zero::ModelSpec& spec, bool values_sharded);

}  // namespace zerotrain::detail
