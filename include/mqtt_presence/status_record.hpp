#pragma once
// What one status payload says: the value type that flows from the codec into the connection table.
// Pure: no I/O, no Paho.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mqtt_presence {

using clock = std::chrono::system_clock;
using time_point = clock::time_point;

/// The connection state a status payload reports. Staleness (missed heartbeats) is a separate flag.
enum class state : std::uint8_t { connected, disconnected, unknown };

/// Payload formats a publisher writes (a scanner reads these and more; see status_codec.hpp).
enum class payload_format : std::uint8_t {
    plain,  ///< "1" / "0"
    json,   ///< {"status":1,"client":..,"epoch":..,"ts":..,"ip":..,...}
    text,   ///< "online" / "offline" (Home Assistant, ESPHome, Tasmota)
};

[[nodiscard]] std::string_view to_string(state s) noexcept;
[[nodiscard]] std::string_view to_string(payload_format f) noexcept;
/// Parses "connected" / "disconnected" / "unknown"; nullopt for anything else.
[[nodiscard]] std::optional<state> parse_state(std::string_view text) noexcept;
/// Parses "plain" / "json" / "text" (case-insensitive); throws mqtt_presence::error naming the valid values.
[[nodiscard]] payload_format parse_payload_format(std::string_view text);

struct status_record {
    state status = state::unknown;
    /// The payload was empty: the retained status was deleted and the client leaves the table.
    bool cleared = false;
    /// Details beside the state: Homie's init/sleeping/alert, mqtt-smarthome's device-ok, or, for state unknown,
    /// why the payload could not be read.
    std::string detail;
    /// JSON "reason": "clean" for an orderly stop, "lost" for a will.
    std::string reason;
    /// Connection epoch; larger for every new connection of the client (protects against late wills).
    std::optional<std::uint64_t> epoch;
    /// A session that a death must match to count (Sparkplug B's bdSeq: it cycles 0-255, so it is matched, never
    /// ordered like an epoch).
    std::optional<std::uint64_t> session;
    /// When the payload was made (for a will: when it was registered, the start of its connection).
    std::optional<time_point> timestamp;
    /// Heartbeat interval the publisher promised; the client is stale after three missed intervals.
    std::optional<std::chrono::seconds> heartbeat;
    std::string client;  ///< the name the payload claims (JSON "client"), may be empty
    std::string ip;      ///< the publisher's address (JSON "ip"), may be empty
    std::string host;    ///< the publisher's host name (JSON "host"), may be empty
    /// Extra JSON members (firmware, location, ...) as a compact JSON object text, or empty.
    std::string meta;
    /// For state unknown: the start of the raw payload, made printable (bounded, valid UTF-8).
    std::string raw;

    [[nodiscard]] bool malformed() const noexcept { return status == state::unknown && !cleared; }
};

}  // namespace mqtt_presence
