include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(MQTT_PRESENCE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/mqtt_presence)

install(TARGETS mqtt_presence EXPORT mqtt_presenceTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/mqtt_presence DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_BINARY_DIR}/include/mqtt_presence/version.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mqtt_presence)
install(EXPORT mqtt_presenceTargets NAMESPACE mqtt_presence:: DESTINATION ${MQTT_PRESENCE_CMAKE_DIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/mqtt_presenceConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/mqtt_presenceConfig.cmake
                              INSTALL_DESTINATION ${MQTT_PRESENCE_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/mqtt_presenceConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/mqtt_presenceConfig.cmake ${PROJECT_BINARY_DIR}/mqtt_presenceConfigVersion.cmake
        DESTINATION ${MQTT_PRESENCE_CMAKE_DIR})

# The service library, its headers and its target, as the package's component `service`:
#   find_package(mqtt_presence REQUIRED COMPONENTS service)  ->  mqtt_presence::service
# A static archive (Debian's SQLiteCpp is one): a consumer links SQLiteCpp, libpqxx, cpp-httplib and OpenSSL too, which the
# component finds; one that asks for the core alone needs none of them.
if(TARGET mqtt_presence_service)
  install(TARGETS mqtt_presence_service EXPORT mqtt_presence_serviceTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/service/include/mqtt_presence/service
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/mqtt_presence)
  install(EXPORT mqtt_presence_serviceTargets NAMESPACE mqtt_presence:: DESTINATION ${MQTT_PRESENCE_CMAKE_DIR})
endif()

foreach(tool mqtt-presence-sensor mqtt-presence-scanner)
  if(TARGET ${tool})
    install(TARGETS ${tool} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endforeach()

# pkg-config, for builds without CMake.
file(RELATIVE_PATH pc_to_prefix /root/${CMAKE_INSTALL_LIBDIR}/pkgconfig /root)
configure_file(${PROJECT_SOURCE_DIR}/packaging/mqtt_presence.pc.in ${PROJECT_BINARY_DIR}/mqtt_presence.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/mqtt_presence.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# The documentation the tools' help and the unit link to; Debian's copyright and changelog beside it. docs/ keeps
# its place beside README.md, so that README's links work in the installed copy too.
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${PROJECT_SOURCE_DIR}/docs/architecture.md ${PROJECT_SOURCE_DIR}/docs/operations.md
              ${PROJECT_SOURCE_DIR}/docs/conventions.md ${PROJECT_SOURCE_DIR}/docs/tools.md
              ${PROJECT_SOURCE_DIR}/docs/service.md ${PROJECT_SOURCE_DIR}/docs/performance.md
              ${PROJECT_SOURCE_DIR}/docs/dashboard.png
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/config.toml DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
file(READ ${PROJECT_SOURCE_DIR}/LICENSE license_text)
string(REGEX REPLACE "\n\n" "\n.\n" license_text "${license_text}")
string(REGEX REPLACE "\n([^\n])" "\n \\1" license_text "${license_text}")
file(READ ${PROJECT_SOURCE_DIR}/packaging/copyright copyright_head)
file(WRITE ${PROJECT_BINARY_DIR}/packaging/copyright "${copyright_head}\nLicense: MIT\n ${license_text}")
configure_file(${PROJECT_SOURCE_DIR}/packaging/changelog.in ${PROJECT_BINARY_DIR}/packaging/changelog
               @ONLY)
add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/packaging/changelog.gz
                   COMMAND gzip -9nkf ${PROJECT_BINARY_DIR}/packaging/changelog
                   DEPENDS ${PROJECT_BINARY_DIR}/packaging/changelog)
add_custom_target(debian_changelog ALL DEPENDS ${PROJECT_BINARY_DIR}/packaging/changelog.gz)
install(FILES ${PROJECT_BINARY_DIR}/packaging/copyright ${PROJECT_BINARY_DIR}/packaging/changelog.gz
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

if(TARGET mqtt-presence-scanner)
  # The unit names the tool where this install puts it: written at install time, when the prefix is known (cmake
  # --install --prefix, cpack).
  install(CODE "
    set(CMAKE_INSTALL_FULL_BINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
    set(CMAKE_INSTALL_FULL_DOCDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DOCDIR}\")
    configure_file(\"${PROJECT_SOURCE_DIR}/packaging/mqtt-presence.service.in\"
                   \"${PROJECT_BINARY_DIR}/packaging/mqtt-presence.service\" @ONLY)
    file(INSTALL \"${PROJECT_BINARY_DIR}/packaging/mqtt-presence.service\"
         DESTINATION \"\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\")")

  # Man pages from the tools' own --help and --version (Debian's help2man), when it is there.
  find_program(HELP2MAN help2man)
  if(HELP2MAN)
    set(man_pages)
    foreach(tool mqtt-presence-sensor mqtt-presence-scanner)
      set(page ${PROJECT_BINARY_DIR}/man/${tool}.1)
      add_custom_command(OUTPUT ${page}.gz
                         COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man
                         COMMAND env MQTT_PRESENCE_CONFIG= ${HELP2MAN} --no-info --no-discard-stderr
                                 --name=${PROJECT_DESCRIPTION} --output=${page} $<TARGET_FILE:${tool}>
                         COMMAND gzip -9nf ${page}
                         DEPENDS ${tool} VERBATIM)
      list(APPEND man_pages ${page}.gz)
    endforeach()
    add_custom_target(man_pages ALL DEPENDS ${man_pages})
    install(FILES ${man_pages} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
  else()
    message(STATUS "help2man not found: no man pages (scripts/bootstrap installs it)")
  endif()
endif()
