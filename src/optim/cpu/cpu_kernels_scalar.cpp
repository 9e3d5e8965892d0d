// The CPU optimizer kernels compiled for scalar; the flags are set in CMakeLists.txt.
#define ZEROTRAIN_CPU_ISA scalar
#define ZEROTRAIN_CPU_ISA_NAME "scalar"
#include "optim/cpu/cpu_kernels_impl.h"
