// See resources.h.

#include "monitor/resources.h"

#include <c10/core/CachingDeviceAllocator.h>

#include <fstream>
#include <string>

#if defined(ZEROTRAIN_WITH_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace zerotrain::monitor {

int64_t proc_status_bytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))  // "VmHWM:   123 kB"
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1)) * 1024;
  return -1;
}

int64_t peak_memory_bytes(c10::Device device) {
  if (device.is_cpu()) return proc_status_bytes("VmHWM");
  const auto stats = c10::getDeviceAllocator(device.type())->getDeviceStats(device.index());
  return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
}

const char* peak_memory_kind(c10::Device device) { return device.is_cpu() ? "peak RSS" : "peak allocated"; }

double peak_flops(const std::string& name, c10::ScalarType dtype) {
  // Dense (no sparsity) tensor-core peaks from the vendors' data sheets, in
  // TFLOP/s: {bf16/fp16, fp32 without TF32}. Order matters: first match wins.
  struct Row {
    const char* pattern;
    double half, single;
  };
  static const Row rows[] = {
      {"H100 PCIe", 756.0, 51.2}, {"H100 NVL", 835.0, 60.0}, {"H100", 989.4, 66.9}, {"H200", 989.4, 66.9},
      {"GH200", 989.4, 66.9},     {"B200", 2250.0, 80.0},    {"A100", 312.0, 19.5}, {"A10G", 70.0, 31.2},
      {"L40S", 362.0, 91.6},      {"L4", 121.0, 30.3},
  };
  for (const Row& r : rows)
    if (name.find(r.pattern) != std::string::npos) {
      const bool half = dtype == c10::kBFloat16 || dtype == c10::kHalf;
      return (half ? r.half : r.single) * 1e12;
    }
  return 0;
}

std::string device_name(c10::Device device) {
#if defined(ZEROTRAIN_WITH_CUDA)
  if (device.is_cuda()) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, device.has_index() ? device.index() : 0) == cudaSuccess)
      return prop.name;
  }
#endif
  (void)device;
  return {};
}

}  // namespace zerotrain::monitor
