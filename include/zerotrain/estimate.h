#pragma once
// Per-rank memory of model states (parameters, gradients, optimizer states)
// by the ZeRO paper's formulas, for planning before a run.
//
// With Ψ parameters on N ranks and Adam:
//   mixed precision (fp16/bf16 params and grads, fp32 master + m + v = 12 bytes):
//     stage 0: 2Ψ + 2Ψ + 12Ψ     stage 1: 2Ψ + 2Ψ + 12Ψ/N
//     stage 2: 2Ψ + 14Ψ/N        stage 3: 16Ψ/N
//   fp32 (4-byte params and grads): stage 0 keeps m + v (8 bytes) and updates
//     the parameters in place; stages 1-3 also keep an fp32 master shard, as
//     DeepSpeed's ZeRO optimizers do (12 bytes): 4Ψ + 4Ψ + 12Ψ/N at stage 1.
// Sharded terms use ceil(Ψ/N) elements per rank, the padding every rank's shard gets.
//
// Stage 3 holds full parameters only while they are used: on top of its
// shards, the units gathered at one time (docs/stage3.md): the persistent
// units, the unit running, the prefetch window and the units kept between
// their forward and backward for reuse, at most
//   persistent + largest unit + stage3_prefetch_bucket_size
//     + stage3_max_reuse_distance elements,
// capped by stage3_max_live_parameters and by the model (gathered_parameters below).
//
// Offload (docs/activation_checkpointing.md) moves the optimizer states (and
// with offload_param, stage 3's parameter shard) to host memory, where the
// engine also keeps an fp32 copy of the owned gradients and, unless the shard
// itself is on the host, a staging copy of the owned parameters:
//   host = 12Ψ/N + 4Ψ/N + (2 or 4)Ψ/N  (+ the shard with offload_param instead of the staging copy).
// Activations are not estimated: they depend on the model and the batch
// (benchmarks/e2e/capacity_bench measures them).

#include <cstdint>
#include <string>

#include "zerotrain/config.h"

namespace zerotrain {

struct EstimateOptions {
  int64_t parameters = 0;  // Ψ
  int64_t world_size = 1;  // N
  DType dtype = DType::kBFloat16;
  /// Optimizer states (fp32 master weights and moments) live in host memory.
  bool offload_optimizer = false;
  /// Stage 3's parameter shard lives in host memory (needs offload_optimizer).
  bool offload_param = false;
  // Stage 3's gathered window, in elements (0: not counted).
  int64_t largest_unit = 0;
  int64_t prefetch_bucket = 0;
  int64_t persistent = 0;
  int64_t reuse_distance = 0;
  int64_t max_live = INT64_MAX;
};

struct ModelStateBytes {
  int stage = 0;
  int64_t parameters = 0;
  int64_t gradients = 0;
  int64_t optimizer_states = 0;  // on the device, 0 when offloaded
  int64_t host_optimizer_states = 0;  // in host memory when offloaded
  int64_t gathered_parameters = 0;    // stage 3: full parameters held at one time
  int64_t host_parameters = 0;        // offload_param: stage 3's shard in host memory
  int64_t host_buffers = 0;           // offload: the host gradient copy and parameter staging
  int64_t device_total() const { return parameters + gathered_parameters + gradients + optimizer_states; }
  int64_t host_total() const { return host_optimizer_states + host_parameters + host_buffers; }
};

/// Throws std::invalid_argument for parameters < 1, world_size < 1, a stage
/// outside 0..3, optimizer offload at stage 0, parameter offload below stage 3
/// or without optimizer offload, or a negative window term.
ModelStateBytes estimate_model_states(const EstimateOptions& options, int stage);

/// Decimal units with one decimal rounded half away from zero, as the ZeRO paper
/// prints them: 31406250000 -> "31.4 GB", 1875000000 -> "1.9 GB".
std::string format_bytes(int64_t bytes);

}  // namespace zerotrain
