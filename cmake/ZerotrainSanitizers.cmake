# Sanitizer builds (scripts/sanitize.sh, docs/reliability.md "Sanitizers").
# ZEROTRAIN_SANITIZE is empty (the default), "address,undefined" or "thread";
# it instruments every C++ target of this project (library, tests, examples).
# LibTorch itself stays uninstrumented: AddressSanitizer and LeakSanitizer
# still see its allocations through the intercepted malloc/free, and
# ThreadSanitizer sees its mutexes through the intercepted pthread calls.
set(ZEROTRAIN_SANITIZE "" CACHE STRING
    "Instrument the build: empty, 'address,undefined' or 'thread' (scripts/sanitize.sh)")
set_property(CACHE ZEROTRAIN_SANITIZE PROPERTY STRINGS "" "address,undefined" "thread")

if(ZEROTRAIN_SANITIZE STREQUAL "")
  return()
endif()
if(NOT ZEROTRAIN_SANITIZE STREQUAL "address,undefined" AND NOT ZEROTRAIN_SANITIZE STREQUAL "thread")
  message(FATAL_ERROR "ZEROTRAIN_SANITIZE must be empty, 'address,undefined' or 'thread', not '${ZEROTRAIN_SANITIZE}'")
endif()
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  message(FATAL_ERROR "ZEROTRAIN_SANITIZE needs gcc or clang, not ${CMAKE_CXX_COMPILER_ID}")
endif()
# CUDA objects would stay uninstrumented; sanitizer builds are CPU builds.
if(ZEROTRAIN_CUDA_ENABLED)
  message(FATAL_ERROR "ZEROTRAIN_SANITIZE needs -DZEROTRAIN_WITH_CUDA=OFF (CUDA objects are not instrumented)")
endif()

set(_zt_sanitize_flags -fsanitize=${ZEROTRAIN_SANITIZE} -fno-omit-frame-pointer)
if(ZEROTRAIN_SANITIZE STREQUAL "address,undefined")
  # Any UBSan finding aborts the process, so the test that met it fails.
  list(APPEND _zt_sanitize_flags -fno-sanitize-recover=undefined)
endif()
add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:${_zt_sanitize_flags}>")
add_link_options(-fsanitize=${ZEROTRAIN_SANITIZE})
message(STATUS "zerotrain: sanitizers ${ZEROTRAIN_SANITIZE}")
