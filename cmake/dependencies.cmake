# Dependencies, found once. Paho's Debian CMake config fails when find_package(PahoMqttCpp) runs twice in one
# project (it re-declares imported targets), so it is guarded by the target it creates.
find_package(Threads REQUIRED)
if(NOT TARGET PahoMqttCpp::paho-mqttpp3)
  find_package(PahoMqttCpp REQUIRED)
endif()
if(NOT TARGET nlohmann_json::nlohmann_json)
  find_package(nlohmann_json 3.10 REQUIRED)
endif()
find_package(PkgConfig REQUIRED)
# The service only (a core-only build needs Paho and nothing else).
if(MQTT_PRESENCE_BUILD_SERVICE)
  # The history store (SQLite through SQLiteCpp): found here so that tests can open the files it writes.
  if(NOT TARGET SQLiteCpp)
    find_package(SQLiteCpp REQUIRED)
  endif()
  # The dashboard's HTTP server: Debian's cpp-httplib, whose header must see the definitions pkg-config gives
  # (OpenSSL, zlib, brotli), or its classes differ from the compiled library's.
  if(NOT TARGET PkgConfig::HTTPLIB)
    pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET GLOBAL cpp-httplib)
  endif()
  find_package(OpenSSL REQUIRED)
  # The history in PostgreSQL (--db postgresql://...): Debian's libpqxx, the official C++ client, over libpq.
  if(NOT TARGET PkgConfig::PQXX)
    pkg_check_modules(PQXX REQUIRED IMPORTED_TARGET GLOBAL libpqxx libpq)
  endif()
endif()
# Sparkplug B edge node payloads (protobuf) through Debian's nanopb: on by default where it is installed.
if(NOT TARGET nanopb::protobuf-nanopb-static)
  find_package(nanopb CONFIG QUIET)
endif()
find_program(NANOPB_GENERATOR NAMES nanopb_generator.py nanopb_generator)
if(TARGET nanopb::protobuf-nanopb-static AND NANOPB_GENERATOR)
  set(mqtt_presence_nanopb_found ON)
else()
  set(mqtt_presence_nanopb_found OFF)
endif()
option(MQTT_PRESENCE_SPARKPLUG "Read Sparkplug B NBIRTH/NDEATH payloads (Debian: nanopb libnanopb-dev)"
       ${mqtt_presence_nanopb_found})
if(MQTT_PRESENCE_SPARKPLUG AND NOT mqtt_presence_nanopb_found)
  message(FATAL_ERROR "MQTT_PRESENCE_SPARKPLUG needs nanopb: apt-get install nanopb libnanopb-dev, or set it OFF")
endif()
