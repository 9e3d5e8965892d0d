// See engine_io.h.

#include "checkpoint/engine_io.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>

#include <mutex>

namespace zerotrain::checkpoint {

at::ScalarType engine_model_dtype(const detail::EngineState& s) {
  return s.groups.front().flat_params().scalar_type();
}

at::Tensor state_buffer(const zero::FlatParamGroup& g, const zero::Unit& unit, PieceState state) {
  switch (state) {
    case PieceState::kMaster: return g.master(unit);
    case PieceState::kExpAvg: return g.moments(unit).exp_avg;
    case PieceState::kExpAvgSq: return g.moments(unit).exp_avg_sq;
    case PieceState::kModel: return g.owned_params(unit);
  }
  TORCH_INTERNAL_ASSERT(false, "unknown piece state");
}

std::vector<Slot> piece_slots(const detail::EngineState& s, const std::vector<PieceState>& states) {
  std::vector<Slot> out;
  const int rank = s.comm->rank();
  const at::ScalarType model_dtype = engine_model_dtype(s);
  for (const zero::FlatParamGroup& g : s.groups) {
    if (!writes_pieces(g.layout(), rank)) continue;
    const std::vector<OwnedPiece> pieces = owned_pieces(g.layout());
    for (PieceState state : states)
      for (const OwnedPiece& p : pieces) {
        const at::Tensor buf = state_buffer(g, g.units()[static_cast<size_t>(p.unit)], state);
        out.push_back({{piece_tensor_name(state, g.name(p.param), p.param_offset),
                        piece_dtype(state, model_dtype),
                        {p.numel}},
                       buf.narrow(0, p.unit_offset, p.numel)});
      }
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

std::vector<ModuleTensor> module_tensors(const torch::nn::Module& module) {
  std::vector<ModuleTensor> out;
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    if (!item.value().requires_grad()) out.push_back({item.key(), "frozen_parameter", item.value()});
  for (const auto& item : module.named_buffers(/*recurse=*/true))
    if (item.value().defined()) out.push_back({item.key(), "buffer", item.value()});
  return out;
}

}  // namespace zerotrain::checkpoint
