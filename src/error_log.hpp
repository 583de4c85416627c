#pragma once
// Errors that reach no handler are written to stderr, not dropped. Private to the library.

#include <string_view>

namespace mqtt_presence::detail {

/// Writes "mqtt-presence: WHO: TEXT" to stderr: at most one line a second for the whole process, the errors in
/// between counted into the next line. Call it from a thread of the library's own, never from Paho's.
void write_unhandled_error(std::string_view who, std::string_view text) noexcept;

}  // namespace mqtt_presence::detail
