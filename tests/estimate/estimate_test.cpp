// The model-state estimate against the ZeRO paper (Rajbhandari et al. 2020,
// Figure 1: Ψ = 7.5B, N_d = 64, K = 12) and the fp32 variant.

#include <gtest/gtest.h>

#include "zerotrain/estimate.h"

namespace zerotrain {
namespace {

TEST(Estimate, ZeroPaperFigureOne) {
  EstimateOptions o;
  o.parameters = 7'500'000'000;
  o.world_size = 64;
  o.dtype = DType::kFloat16;
  EXPECT_EQ(format_bytes(estimate_model_states(o, 0).device_total()), "120.0 GB");
  EXPECT_EQ(format_bytes(estimate_model_states(o, 1).device_total()), "31.4 GB");
  EXPECT_EQ(format_bytes(estimate_model_states(o, 2).device_total()), "16.6 GB");
  EXPECT_EQ(format_bytes(estimate_model_states(o, 3).device_total()), "1.9 GB");
  // Exact bytes: 2Ψ + 2Ψ + 12Ψ/N, 2Ψ + 14Ψ/N, 16Ψ/N.
  EXPECT_EQ(estimate_model_states(o, 1).device_total(), 15'000'000'000 + 15'000'000'000 + 1'406'250'000);
  EXPECT_EQ(estimate_model_states(o, 2).device_total(), 15'000'000'000 + 1'640'625'000);
  EXPECT_EQ(estimate_model_states(o, 3).device_total(), 1'875'000'000);
}

TEST(Estimate, Bf16EqualsFp16AndFp32UsesFourByteParametersAndGradients) {
  EstimateOptions o;
  o.parameters = 1000;
  o.world_size = 4;
  o.dtype = DType::kBFloat16;
  const auto bf16 = estimate_model_states(o, 2);
  o.dtype = DType::kFloat16;
  EXPECT_EQ(estimate_model_states(o, 2).device_total(), bf16.device_total());
  o.dtype = DType::kFloat32;
  const auto s0 = estimate_model_states(o, 0);
  EXPECT_EQ(s0.parameters, 4000);
  EXPECT_EQ(s0.gradients, 4000);
  EXPECT_EQ(s0.optimizer_states, 8000);  // m and v, no master copy
  // Stages 1-3 keep an fp32 master shard apart from the parameters, as the
  // engine does (e2e_bench scaling compares the two).
  const auto s1 = estimate_model_states(o, 1);
  EXPECT_EQ(s1.optimizer_states, 12 * 250);
  const auto s3 = estimate_model_states(o, 3);
  EXPECT_EQ(s3.device_total(), (4 + 4 + 12) * 250);
}

TEST(Estimate, ShardsRoundUpToEqualPaddedShares) {
  EstimateOptions o;
  o.parameters = 10;
  o.world_size = 4;  // ceil(10 / 4) = 3 elements per rank
  o.dtype = DType::kBFloat16;
  const auto s = estimate_model_states(o, 3);
  EXPECT_EQ(s.parameters, 2 * 3);
  EXPECT_EQ(s.gradients, 2 * 3);
  EXPECT_EQ(s.optimizer_states, 12 * 3);
}

TEST(Estimate, OffloadMovesOptimizerStatesToHost) {
  EstimateOptions o;
  o.parameters = 1'000'000;
  o.world_size = 2;
  o.offload_optimizer = true;
  const auto s = estimate_model_states(o, 2);
  EXPECT_EQ(s.optimizer_states, 0);
  EXPECT_EQ(s.host_optimizer_states, 12 * 500'000);
  EXPECT_EQ(s.device_total(), 2'000'000 + 2 * 500'000);
  EXPECT_THROW(estimate_model_states(o, 0), std::invalid_argument);
}

// Offload's host side, as the engine's memory_report() counts it
// (tests/engine/offload_test.cpp checks the engine's side): an fp32 gradient
// copy and a staging copy of the owned parameters; with offload_param the
// shard moves to the host instead of the staging copy. Catches the staging
// copy counted with the shard on the host, or the shard left on the device.
TEST(Estimate, OffloadCountsTheHostBuffersAndTheParameterShard) {
  EstimateOptions o;
  o.parameters = 1'000'001;  // 500'001 per rank: the padded shard
  o.world_size = 2;
  o.offload_optimizer = true;
  const auto opt = estimate_model_states(o, 3);
  EXPECT_EQ(opt.host_buffers, 4 * 500'001 + 2 * 500'001);
  EXPECT_EQ(opt.parameters, 2 * 500'001);
  EXPECT_EQ(opt.host_total(), 12 * 500'001 + 6 * 500'001);
  o.offload_param = true;
  const auto both = estimate_model_states(o, 3);
  EXPECT_EQ(both.parameters, 0);
  EXPECT_EQ(both.host_parameters, 2 * 500'001);
  EXPECT_EQ(both.host_buffers, 4 * 500'001);
  EXPECT_EQ(both.host_total(), (12 + 2 + 4) * 500'001);
  EXPECT_THROW(estimate_model_states(o, 2), std::invalid_argument);
  o.offload_optimizer = false;
  EXPECT_THROW(estimate_model_states(o, 3), std::invalid_argument);
}

// Stage 3's gathered window: persistent + largest unit + prefetch bucket + reuse distance,
// capped by max_live and by the model; below stage 3 the parameters are whole
// and no window is added. Catches a window counted in elements instead of
// bytes, or added below stage 3.
TEST(Estimate, Stage3AddsTheGatheredWindow) {
  EstimateOptions o;
  o.parameters = 1000;
  o.world_size = 4;
  o.dtype = DType::kBFloat16;
  o.largest_unit = 100;
  o.prefetch_bucket = 150;
  o.persistent = 30;
  EXPECT_EQ(estimate_model_states(o, 3).gathered_parameters, 2 * 280);
  EXPECT_EQ(estimate_model_states(o, 3).device_total(), 16 * 250 + 2 * 280);
  EXPECT_EQ(estimate_model_states(o, 2).gathered_parameters, 0);
  o.max_live = 200;
  EXPECT_EQ(estimate_model_states(o, 3).gathered_parameters, 2 * 200);
  o.max_live = INT64_MAX;
  o.reuse_distance = 200;
  EXPECT_EQ(estimate_model_states(o, 3).gathered_parameters, 2 * 480);
  o.reuse_distance = 1'000'000'000;  // DeepSpeed's default: capped by the model
  EXPECT_EQ(estimate_model_states(o, 3).gathered_parameters, 2 * 1000);
  o.reuse_distance = 0;
  o.prefetch_bucket = 5000;
  EXPECT_EQ(estimate_model_states(o, 3).gathered_parameters, 2 * 1000);
  o.largest_unit = -1;
  EXPECT_THROW(estimate_model_states(o, 3), std::invalid_argument);
}

TEST(Estimate, RejectsInvalidInput) {
  EstimateOptions o;
  o.parameters = 0;
  EXPECT_THROW(estimate_model_states(o, 1), std::invalid_argument);
  o.parameters = 10;
  o.world_size = 0;
  EXPECT_THROW(estimate_model_states(o, 1), std::invalid_argument);
  o.world_size = 1;
  EXPECT_THROW(estimate_model_states(o, 4), std::invalid_argument);
  EXPECT_THROW(estimate_model_states(o, -1), std::invalid_argument);
}

TEST(Estimate, FormatBytesRoundsHalfAwayFromZero) {
  EXPECT_EQ(format_bytes(999), "999 B");
  EXPECT_EQ(format_bytes(1'875'000'000), "1.9 GB");
  EXPECT_EQ(format_bytes(1'250), "1.3 KB");
  EXPECT_EQ(format_bytes(999'960'000), "1.0 GB");  // rounds up into the next unit
  EXPECT_EQ(format_bytes(234'375'000), "234.4 MB");
}

}  // namespace
}  // namespace zerotrain
