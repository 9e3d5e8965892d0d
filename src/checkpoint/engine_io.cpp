// See engine_io.h.

#include "checkpoint/engine_io.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <c10/util/Exception.h>

#include <mutex>

namespace zerotrain::ckpt {

at::Tensor state_buffer(const zero::OwnedState& owned, int u, PieceState state) {
  switch (state) {
    case PieceState::kMaster: return owned.master(u);
    case PieceState::kExpAvg: return owned.moments(u).exp_avg;
    case PieceState::kExpAvgSq: return owned.moments(u).exp_avg_sq;
    case PieceState::kModel: return owned.owned_params(u);
  }
  TORCH_INTERNAL_ASSERT(false, "unknown piece state");
}

std::vector<Slot> piece_slots(const zero::ShardedModel& model, const std::vector<PieceState>& states) {
  std::vector<Slot> out;
  const int rank = model.owned().rank();
  if (!writes_pieces(model.layout(), rank)) return out;
  const std::vector<OwnedPiece> pieces = owned_pieces(model.layout(), rank);
  for (PieceState state : states)
    for (const OwnedPiece& p : pieces) {
      const at::Tensor buf = state_buffer(model.owned(), p.unit, state);
      out.push_back({{piece_tensor_name(state, model.param_names()[static_cast<size_t>(p.param)], p.param_offset),
                      piece_dtype(state, model.dtype()),
                      {p.numel}},
                     buf.narrow(0, p.unit_offset, p.numel)});
    }
  return out;
}

namespace {
at::Generator default_generator(c10::Device device) {
  return device.is_cpu() ? at::detail::getDefaultCPUGenerator()
                         : at::globalContext().defaultGenerator(device);
}
}  // namespace

std::vector<Slot> rng_slots(c10::Device device) {
  std::vector<Slot> out;
  std::vector<c10::Device> devices{c10::Device(c10::kCPU)};
  if (!device.is_cpu()) devices.push_back(device);
  for (const c10::Device& d : devices) {
    at::Generator gen = default_generator(d);
    at::Tensor state;
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      state = gen.get_state();
    }
    out.push_back({{std::string("rng:") + (d.is_cpu() ? "cpu" : "cuda"), at::kByte, {state.numel()}},
                   state.reshape({-1})});
  }
  return out;
}

void restore_rng(c10::Device device, const std::string& name, const at::Tensor& state) {
  const c10::Device d = name == "rng:cpu" ? c10::Device(c10::kCPU) : device;
  at::Generator gen = default_generator(d);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

}  // namespace zerotrain::ckpt
