# install() rules and the exported CMake package, so that another project does
#   find_package(zerotrain REQUIRED)
#   target_link_libraries(app PRIVATE zerotrain::zerotrain)
include(CMakePackageConfigHelpers)

install(TARGETS zerotrain zerotrain_cli
  EXPORT zerotrainTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/zerotrain DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/generated/zerotrain/version.h"
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/zerotrain)
install(DIRECTORY configs/ DESTINATION ${CMAKE_INSTALL_DATADIR}/zerotrain/configs)

set(ZEROTRAIN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/zerotrain)
install(EXPORT zerotrainTargets NAMESPACE zerotrain:: DESTINATION ${ZEROTRAIN_CMAKE_DIR})
configure_package_config_file(cmake/zerotrainConfig.cmake.in
  "${CMAKE_CURRENT_BINARY_DIR}/zerotrainConfig.cmake"
  INSTALL_DESTINATION ${ZEROTRAIN_CMAKE_DIR})
write_basic_package_version_file("${CMAKE_CURRENT_BINARY_DIR}/zerotrainConfigVersion.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES
  "${CMAKE_CURRENT_BINARY_DIR}/zerotrainConfig.cmake"
  "${CMAKE_CURRENT_BINARY_DIR}/zerotrainConfigVersion.cmake"
  DESTINATION ${ZEROTRAIN_CMAKE_DIR})
