#pragma once
// What the hardware did and can do: peak memory of this process on its
// device, and the device's peak FLOP/s for MFU.

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>

namespace zerotrain::monitor {

/// A field of /proc/self/status in bytes ("VmRSS", "VmHWM"), or -1. VmHWM is
/// the peak of this process image only (getrusage's maxrss also counts the
/// image of the process that launched it).
int64_t proc_status_bytes(const std::string& field);

/// CPU: the process's peak resident set (VmHWM). GPU: the caching
/// allocator's peak allocated bytes on the device. -1 when unknown.
int64_t peak_memory_bytes(c10::Device device);
/// "peak RSS" or "peak allocated", for labels.
const char* peak_memory_kind(c10::Device device);

/// Dense peak FLOP/s of a GPU named `name` (as the driver reports it) for
/// matrix products in `dtype`; 0 when the name is not in the table.
double peak_flops(const std::string& name, c10::ScalarType dtype);
/// The device's name from the driver; empty on CPU or when unavailable.
std::string device_name(c10::Device device);

}  // namespace zerotrain::monitor
