#pragma once
// Durations as people write them on command lines: 500ms, 5s, 10m, 2h, 7d (a bare number is seconds).

#include <chrono>
#include <string>
#include <string_view>

namespace mqtt_presence {

/// The longest duration parse_duration() accepts: 100 years (added to a clock in nanoseconds, more would overflow).
inline constexpr std::chrono::milliseconds max_duration = std::chrono::hours(24 * 36500);

/// Throws mqtt_presence::error saying what is wrong and how to write it (also beyond max_duration).
[[nodiscard]] std::chrono::milliseconds parse_duration(std::string_view text);
/// Short human form: "850ms", "42s", "5m12s", "3h04m", "2d05h".
[[nodiscard]] std::string format_duration(std::chrono::milliseconds d);

}  // namespace mqtt_presence
