// The CPU optimizer kernels compiled for avx2; the flags are set in CMakeLists.txt.
#define ZEROTRAIN_CPU_ISA avx2
#define ZEROTRAIN_CPU_ISA_NAME "avx2"
#include "optim/cpu/cpu_kernels_impl.h"
