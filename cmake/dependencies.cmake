# Dependencies, found once. Paho's Debian CMake config fails when find_package(PahoMqttCpp) runs twice in one
# project (it re-declares imported targets), so it is guarded by the target it creates.
find_package(Threads REQUIRED)
if(NOT TARGET PahoMqttCpp::paho-mqttpp3)
  find_package(PahoMqttCpp REQUIRED)
endif()
if(NOT TARGET nlohmann_json::nlohmann_json)
  find_package(nlohmann_json 3.10 REQUIRED)
endif()
# The service's history store (SQLite through SQLiteCpp): found here so that tests can open the files it writes.
if(NOT TARGET SQLiteCpp)
  find_package(SQLiteCpp REQUIRED)
endif()
# The dashboard's HTTP server: Debian's cpp-httplib, whose header must see the definitions pkg-config gives (OpenSSL,
# zlib, brotli), or its classes differ from the compiled library's.
find_package(PkgConfig REQUIRED)
if(NOT TARGET PkgConfig::HTTPLIB)
  pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET GLOBAL cpp-httplib)
endif()
find_package(OpenSSL REQUIRED)
