include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(MQTT_PRESENCE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/mqtt_presence)

install(TARGETS mqtt_presence EXPORT mqtt_presenceTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/mqtt_presence DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT mqtt_presenceTargets NAMESPACE mqtt_presence:: DESTINATION ${MQTT_PRESENCE_CMAKE_DIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/mqtt_presenceConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/mqtt_presenceConfig.cmake
                              INSTALL_DESTINATION ${MQTT_PRESENCE_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/mqtt_presenceConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/mqtt_presenceConfig.cmake ${PROJECT_BINARY_DIR}/mqtt_presenceConfigVersion.cmake
        DESTINATION ${MQTT_PRESENCE_CMAKE_DIR})

foreach(tool mqtt-presence-sensor mqtt-presence-scanner)
  if(TARGET ${tool})
    install(TARGETS ${tool} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endforeach()
