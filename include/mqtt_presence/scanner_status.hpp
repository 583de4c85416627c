#pragma once
// What the scanner says about itself beside the table: its own connection and how complete its sync is. Pure: the
// renderers show it without knowing about MQTT.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <mqtt_presence/status_record.hpp>

namespace mqtt_presence {

/// mosquitto renews its retained $SYS topics every sys_interval (10 s by default): a retained sample may be that old.
inline constexpr std::chrono::seconds mosquitto_sys_interval{10};

/// How far the scanner trusts its table.
enum class sync_state : std::uint8_t {
    syncing,     ///< subscribed (or not yet connected); the retained burst is still arriving
    complete,    ///< the sync marker came back after the burst: every retained status of that moment is in
    unverified,  ///< a quiet period passed without the marker: the broker may have dropped messages
    /// The broker delivers no retained message to a wildcard subscription (RabbitMQ): the table holds the clients
    /// heard live and those asked for by their exact topics (restored or named rows), not every retained status.
    partial,
};
[[nodiscard]] std::string_view to_string(sync_state s) noexcept;

/// No round trip through the broker for this long while connected (the probe comes back every second): the scanner
/// is blind (the broker frozen, the path cut) before the keepalive declares the loss. Every output says so.
inline constexpr std::chrono::seconds no_news_after{3};

/// The scanner's own connection, as every output reports it beside the table.
struct scanner_status {
    bool connected = false;
    /// When it connected; when it lost the connection, the last time it heard from the broker (the table is as of
    /// then, not as of the moment the loss was noticed); nullopt: never connected.
    std::optional<time_point> since;
    /// The last round trip through the broker (the connect, or the scanner's own probe coming back, every second):
    /// what it sends reaches the broker and what the broker sends reaches it. nullopt before the first. While
    /// connected, a gap of a few seconds means the connection is cut and not yet declared lost.
    std::optional<time_point> last_heard;
    sync_state sync = sync_state::syncing;
    std::uint64_t broker_dropped = 0;  ///< messages the broker says it dropped since the sync began ($SYS), if known
    /// Clients connected to the broker by its own count (mosquitto's $SYS/broker/clients/connected, this scanner
    /// included); nullopt where the broker publishes no such topic. Beside the table's connected count it shows
    /// how many clients connect without announcing a status.
    std::optional<std::uint64_t> broker_clients;
    /// When that count arrived, and whether it was sampled after this connection began (a live message); a
    /// retained one is the broker's last sample, taken before the scanner connected (up to a sys_interval ago).
    std::optional<time_point> broker_clients_at;
    bool broker_clients_live = false;
    /// The first few topics that matched a status filter but no template (stats.unmatched counts them all),
    /// printable and bounded.
    std::vector<std::string> unmatched_examples;
    /// The scanner's sync tail never came back although retained statuses did: the broker refused its publish to
    /// mqtt-presence-sync/<id>/tail (an ACL), and the sync ended with its marker.
    bool sync_tail_refused = false;
    /// When the broker last started, from its uptime ($SYS/broker/uptime: mosquitto); nullopt where unknown.
    std::optional<time_point> broker_started;
    /// broker_started is said to the second (a live uptime), not an early estimate from a retained one.
    bool broker_started_exact = false;

    /// Connected, but nothing heard through the broker for no_news_after or longer (as of `now`).
    [[nodiscard]] bool no_news(time_point now) const { return connected && last_heard && now - *last_heard >= no_news_after; }
    /// Not connected, or no news (as of `now`): the scanner's table is as of blind_since(), not as of now.
    [[nodiscard]] bool blind(time_point now) const { return !connected || no_news(now); }
    /// While blind, the last time it heard from its broker (nullopt: never connected).
    [[nodiscard]] std::optional<time_point> blind_since() const { return connected ? last_heard : since; }
};

}  // namespace mqtt_presence
