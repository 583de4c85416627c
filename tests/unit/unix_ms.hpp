#pragma once
// Milliseconds since 1970: how payloads write times, and how tests compare them.
#include <chrono>
#include <cstdint>

#include <mqtt_presence/status_record.hpp>

inline std::int64_t unix_ms(mqtt_presence::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
