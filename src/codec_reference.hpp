#pragma once
// The decoder with its flat-object fast path switched off: nlohmann's parser reads every JSON payload. The fuzz
// target (tests/fuzz) requires both paths to give the same record. Private to the library.

#include <string_view>

#include <mqtt_presence/status_record.hpp>

namespace mqtt_presence::detail {

void decode_without_fast_path(std::string_view payload, status_record& out) noexcept;

}  // namespace mqtt_presence::detail
