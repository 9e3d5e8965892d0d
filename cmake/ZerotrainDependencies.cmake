# Finds zerotrain's dependencies and decides whether the CUDA configuration is built.
#
# LibTorch: pass its CMake prefix in CMAKE_PREFIX_PATH (scripts/bootstrap.sh prints the
# one of the pinned PyPI wheel; a downloaded LibTorch zip works the same way).

if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST} AND NOT TORCH_CUDA_ARCH_LIST)
  # Without it LibTorch's CMake probes for a GPU and falls back to every architecture.
  set(TORCH_CUDA_ARCH_LIST "9.0")
endif()
# Decided before LibTorch's CMake enables CUDA, which would otherwise fill in nvcc's
# own default (sm_75 for CUDA 13), which runs on a Hopper GPU only through
# PTX compiled at load time.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  # Hopper (H100/H200) is what we validate on; override for other GPUs.
  set(CMAKE_CUDA_ARCHITECTURES 90 CACHE STRING "CUDA architectures to build the kernels for")
endif()
find_package(Torch REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)

# Directory holding libtorch*.so, for the RPATH of what we build and install.
find_library(ZEROTRAIN_TORCH_CPU_LIBRARY torch_cpu PATHS ${TORCH_INSTALL_PREFIX}/lib NO_DEFAULT_PATH)
get_filename_component(ZEROTRAIN_TORCH_LIBRARY_DIR "${ZEROTRAIN_TORCH_CPU_LIBRARY}" DIRECTORY)

# ---- CUDA: ON, OFF or AUTO -------------------------------------------------
set(_zt_torch_has_cuda OFF)
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(_zt_torch_has_cuda ON)
endif()
include(CheckLanguage)
check_language(CUDA)

string(TOUPPER "${ZEROTRAIN_WITH_CUDA}" _zt_cuda_request)
if(_zt_cuda_request STREQUAL "AUTO")
  if(_zt_torch_has_cuda AND CMAKE_CUDA_COMPILER)
    set(ZEROTRAIN_CUDA_ENABLED ON)
  else()
    set(ZEROTRAIN_CUDA_ENABLED OFF)
    message(STATUS "zerotrain: CUDA off (LibTorch with CUDA: ${_zt_torch_has_cuda}, nvcc: '${CMAKE_CUDA_COMPILER}')")
  endif()
elseif(_zt_cuda_request STREQUAL "ON" OR _zt_cuda_request STREQUAL "TRUE" OR _zt_cuda_request STREQUAL "1")
  if(NOT _zt_torch_has_cuda)
    message(FATAL_ERROR "ZEROTRAIN_WITH_CUDA=ON but the LibTorch found at ${TORCH_INSTALL_PREFIX} has no CUDA")
  endif()
  if(NOT CMAKE_CUDA_COMPILER)
    message(FATAL_ERROR "ZEROTRAIN_WITH_CUDA=ON but no CUDA compiler (nvcc) was found")
  endif()
  set(ZEROTRAIN_CUDA_ENABLED ON)
elseif(_zt_cuda_request STREQUAL "OFF" OR _zt_cuda_request STREQUAL "FALSE" OR _zt_cuda_request STREQUAL "0")
  set(ZEROTRAIN_CUDA_ENABLED OFF)
else()
  message(FATAL_ERROR "ZEROTRAIN_WITH_CUDA must be ON, OFF or AUTO, not '${ZEROTRAIN_WITH_CUDA}'")
endif()

if(ZEROTRAIN_CUDA_ENABLED)
  enable_language(CUDA)
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
endif()

# ---- Communication backends ------------------------------------------------
# LibTorch has c10d's Gloo compiled in but ships neither Gloo's headers nor
# USE_C10D_GLOO; zerotrain's one Gloo translation unit (src/comm/gloo_backend.cpp)
# needs them to construct ProcessGroupGloo. Debian's libgloo-dev provides them;
# only declarations are used (nothing links against Debian's libgloo).
find_path(ZEROTRAIN_GLOO_INCLUDE_DIR gloo/context.h)
if(ZEROTRAIN_GLOO_INCLUDE_DIR)
  set(ZEROTRAIN_HAVE_GLOO ON)
else()
  set(ZEROTRAIN_HAVE_GLOO OFF)
  message(WARNING "zerotrain: Gloo headers not found (install libgloo-dev): CPU collectives will "
                  "raise an error at run time; adopting a torch.distributed group still works")
endif()

if(ZEROTRAIN_CUDA_ENABLED)
  # NCCL's header from the wheel's nvidia-nccl package (the version LibTorch was
  # built with), else the CUDA toolkit's.
  find_path(ZEROTRAIN_NCCL_INCLUDE_DIR nccl.h
    HINTS "${TORCH_INSTALL_PREFIX}/../nvidia/nccl/include" ENV NCCL_INCLUDE_DIR
    PATH_SUFFIXES include)
  if(NOT ZEROTRAIN_NCCL_INCLUDE_DIR)
    message(FATAL_ERROR "zerotrain: the CUDA configuration needs nccl.h (set NCCL_INCLUDE_DIR)")
  endif()
  find_package(CUDAToolkit REQUIRED)
endif()
