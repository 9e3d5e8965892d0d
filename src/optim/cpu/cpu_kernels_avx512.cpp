// The CPU optimizer kernels compiled for avx512; the flags are set in CMakeLists.txt.
#define ZEROTRAIN_CPU_ISA avx512
#define ZEROTRAIN_CPU_ISA_NAME "avx512"
#include "optim/cpu/cpu_kernels_impl.h"
