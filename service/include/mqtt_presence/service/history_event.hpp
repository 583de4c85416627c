#pragma once
// One row of the history: a change of the table, with why it happened and when, as far as that is known.
// Pure: no SQLite, no MQTT.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <mqtt_presence/connection_table.hpp>

namespace mqtt_presence {

/// Why a client's row changed.
enum class cause : std::uint8_t {
    connected,  ///< a new connection (a "connected" status, or one with a newer epoch)
    clean,      ///< an orderly stop: a "disconnected" whose payload says reason "clean"
    lost,       ///< a will: a "disconnected" whose payload says reason "lost"
    unknown,    ///< a "disconnected" that does not say why (plain "0", "offline"), or an unreadable payload
    removed,    ///< the retained status was cleared (empty payload), or the broker no longer holds it
    stale,      ///< heartbeats stopped
    fresh,      ///< a stale client was heard from again
    unseen,     ///< the change happened while nobody watched: learned from the retained store afterwards
    overdue,    ///< unheard for longer than its expected interval (--expect)
    back,       ///< an overdue client was heard from again
};
[[nodiscard]] std::string_view to_string(cause c) noexcept;
[[nodiscard]] std::optional<cause> parse_cause(std::string_view text) noexcept;

struct history_event {
    std::int64_t id = 0;  ///< the store's sequence number (0 before it is stored)
    time_point observed;  ///< when the service learned of the change (the receive time of its message)
    /// When the change happened: the receive time of a live message; nullopt when it happened while nobody watched
    /// (or was read from the retained store, whose messages carry no time of delivery).
    std::optional<time_point> time;
    std::string client;
    std::string topic;
    std::optional<state> previous;  ///< nullopt: the client was not in the table before
    state status = state::unknown;  ///< the state after the change (for `removed`: the last state)
    bool stale = false;
    bool overdue = false;  ///< connected, but unheard for longer than expected
    enum cause why = cause::unknown;
    std::optional<std::uint64_t> epoch;
    std::string ip;
    bool retained = false;  ///< learned from the retained store (at start-up or a re-sync), not seen live
};

/// Why a change happened, by its kind, the payload's reason and whether it was seen live.
[[nodiscard]] cause cause_of(const change& c) noexcept;
/// When a change happened: the table's time for it when seen live; unknown when learned after the fact.
[[nodiscard]] inline std::optional<time_point> time_of(const change& c) noexcept {
    return c.live ? std::optional<time_point>(c.at) : std::nullopt;
}
/// The history row for a change (observed at the table's time for it, c.at).
[[nodiscard]] history_event event_of(const change& c);

}  // namespace mqtt_presence
