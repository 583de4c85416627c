#pragma once
// Status payloads to records and back. Pure: no I/O, no Paho.
//
// decode() reads every convention users already have (case-insensitive, surrounding whitespace ignored):
//   connected:    1, 2 (mqtt-smarthome: connected, device OK), true, online, connected, ready, init, alert,
//                 JSON {"status":1|2|true|"online"}, {"online":true} (Sparkplug STATE), {"state":"online"}
//   disconnected: 0, false, offline, disconnected, lost, sleeping, and the JSON forms with 0/false/"offline"
//   empty:        the retained status was cleared (record.cleared)
//   anything else: state unknown, with the reason in `detail` and a bounded printable copy in `raw`.
// decode() never throws.

#include <cstddef>
#include <string>
#include <string_view>

#include <mqtt_presence/status_record.hpp>

namespace mqtt_presence {

/// Payloads larger than this are not parsed (a status is a few hundred bytes at most).
inline constexpr std::size_t max_status_payload = 64 * 1024;
/// How much of an unreadable payload is kept in record.raw.
inline constexpr std::size_t max_raw_copy = 256;

/// Reads a payload. Never throws.
[[nodiscard]] status_record decode(std::string_view payload) noexcept;
/// The same into `out` (replacing all of it), reusing its strings' storage: for a loop over many payloads.
void decode(std::string_view payload, status_record& out) noexcept;
/// True for a JSON member name the contract gives a meaning (status, epoch, ts, ...): metadata must not use one.
[[nodiscard]] bool is_status_member(std::string_view name) noexcept;

/// Writes a record in a publisher format. Throws mqtt_presence::error for state unknown (nothing to say) or
/// for record.meta that is not a JSON object.
[[nodiscard]] std::string encode(const status_record& record, payload_format format);

}  // namespace mqtt_presence
