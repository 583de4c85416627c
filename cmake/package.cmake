# cpack -G DEB: one package, mqtt-presence, with the tools, the unit, the library, its headers and the docs.
set(CPACK_PACKAGE_NAME mqtt-presence)
set(CPACK_PACKAGE_VENDOR "mqtt-presence authors")
set(CPACK_PACKAGE_CONTACT "mqtt-presence authors <mqtt-presence@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "which MQTT clients are connected, since when, and which died")
set(CPACK_PACKAGE_DESCRIPTION
    "A C++17 library on Eclipse Paho that gives MQTT clients a retained status and\n"
    "a Last Will, a scanner that keeps the table of clients from those statuses,\n"
    "and a service that keeps their history, testifies to every death on the\n"
    "broker, serves a live dashboard and an HTTP API, and sends alerts.")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
# DESTDIR staging: the install scripts see the package's own prefix (the unit's ExecStart names /usr/bin).
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/mqtt-presence/mqtt-presence")
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)
include(CPack)
