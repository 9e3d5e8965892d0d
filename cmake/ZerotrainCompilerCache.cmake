# Use ccache when it is installed and the caller has not chosen a launcher.
# The cache lives outside the clone (CCACHE_DIR, set by scripts/bootstrap.sh).
find_program(ZEROTRAIN_CCACHE ccache)
if(ZEROTRAIN_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER "${ZEROTRAIN_CCACHE}")
  set(CMAKE_CUDA_COMPILER_LAUNCHER "${ZEROTRAIN_CCACHE}")
endif()

function(zerotrain_set_warnings target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
    if(ZEROTRAIN_WARNINGS_AS_ERRORS)
      target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
    endif()
  endif()
endfunction()
