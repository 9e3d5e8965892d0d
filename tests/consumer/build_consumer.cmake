# Installs the zerotrain build tree into a scratch prefix, then configures,
# builds and runs examples/cmake_consumer against that install, the way a user's
# own project would use it. Run by ctest with -D variables (tests/CMakeLists.txt).
foreach(var ZEROTRAIN_BUILD_DIR CONSUMER_SOURCE_DIR WORK_DIR TORCH_PREFIX CONFIG_FILE GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "build_consumer.cmake needs -D${var}=...")
  endif()
endforeach()

function(run step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${step} failed (${rc}):\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/install")
run("install" ${CMAKE_COMMAND} --install "${ZEROTRAIN_BUILD_DIR}" --prefix "${prefix}")
# Through the environment (':'-separated): a ';' list would be split into
# separate arguments on its way through run().
get_filename_component(torch_prefix "${TORCH_PREFIX}" ABSOLUTE)
run("configure consumer" ${CMAKE_COMMAND} -E env "CMAKE_PREFIX_PATH=${prefix}:${torch_prefix}"
    ${CMAKE_COMMAND} -S "${CONSUMER_SOURCE_DIR}" -B "${WORK_DIR}/build" -G "${GENERATOR}")
run("build consumer" ${CMAKE_COMMAND} --build "${WORK_DIR}/build")
run("run consumer" "${WORK_DIR}/build/check_config" "${CONFIG_FILE}" 2)
if(NOT last_output MATCHES "stage 2, bf16, micro batch 8 x 1 steps x 2 ranks = 16")
  message(FATAL_ERROR "unexpected consumer output: ${last_output}")
endif()
# The installed CLI works from the install tree too.
run("installed cli" "${prefix}/bin/zerotrain" config check --quiet "${CONFIG_FILE}")
message(STATUS "consumer output: ${last_output}")
