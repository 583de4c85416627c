#pragma once
// Uptime figures of one client over a window, from its history and the intervals the service watched. Time the
// service did not watch (not running, cut off from the broker, changes it had to drop) is unknown: it counts
// neither as up nor as down. Pure: no SQLite.

#include <chrono>
#include <functional>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <mqtt_presence/service/history_event.hpp>

namespace mqtt_presence {

struct interval {
    time_point from;
    time_point to;
};

struct uptime_figures {
    std::string client;
    std::string topic;
    std::string state;  ///< the current state: connected, disconnected, unknown, stale, overdue, or removed
    std::chrono::milliseconds up{0};       ///< watched while connected and not stale
    std::chrono::milliseconds down{0};     ///< watched while disconnected or stale
    std::chrono::milliseconds unknown{0};  ///< not watched, or the state was unknown (or the client absent)
    std::uint32_t disconnects = 0;         ///< connected -> disconnected within the window (seen or not)
    /// Of those, connections that ended while nobody watched: the service found the client connected again under a
    /// newer epoch (it died and came back meanwhile; when is unknown, between the last watched time and the new
    /// connection's start).
    std::uint32_t unseen_disconnects = 0;
    std::uint32_t flaps = 0;               ///< disconnects followed by a connect within the flap interval
    std::chrono::milliseconds longest_outage{0};  ///< the longest watched run of down time
    std::optional<time_point> last_seen;

    /// up / (up + down), in percent; nullopt when no time was watched.
    [[nodiscard]] std::optional<double> uptime_percent() const;
};

/// A group's figures: the sums of its clients' (uptime over all their watched time), how many it has and how many
/// are down now (disconnected, stale or overdue).
struct group_uptime {
    std::string group;
    std::size_t clients = 0;
    std::size_t down_now = 0;
    std::chrono::milliseconds up{0}, down{0}, unknown{0};
    std::uint32_t disconnects = 0;
    std::uint32_t flaps = 0;
    std::chrono::milliseconds longest_outage{0};  ///< the longest of one of its clients

    [[nodiscard]] std::optional<double> uptime_percent() const;
};

/// Per group, in the order of `names`, from the clients' figures and what groups each is in.
[[nodiscard]] std::vector<group_uptime> uptime_by_group(
    const std::vector<uptime_figures>& clients, const std::vector<std::string>& names,
    const std::function<std::vector<std::string>(const uptime_figures&)>& groups_of);

/// What a stretch of a client's time was: up (connected, not stale), down (disconnected or stale), or unknown (not
/// watched, unreadable, or not in the table).
enum class health : std::uint8_t { up, down, unknown };
[[nodiscard]] std::string_view to_string(health h) noexcept;

/// What a stretch of time looked like, finer than its health: up is connected; down is disconnected, stale or
/// overdue; unknown is unknown.
enum class shade : std::uint8_t { connected, disconnected, stale, overdue, unknown };
[[nodiscard]] std::string_view to_string(shade s) noexcept;

struct segment {
    time_point from;
    time_point to;
    enum health health = health::unknown;
    enum shade shade = shade::unknown;
};

/// The client's window as consecutive segments (adjacent ones of the same health merged); same arguments as
/// compute_uptime.
[[nodiscard]] std::vector<segment> compute_timeline(const std::optional<client_status>& current,
                                                    const std::vector<history_event>& events,
                                                    const std::vector<interval>& watched, time_point from,
                                                    time_point to);

/// `current`: the client's row now (or nullopt when it is no longer in the table); `events`: its events with
/// observed >= from, oldest first; `watched`: the intervals the service watched, sorted and disjoint.
[[nodiscard]] uptime_figures compute_uptime(const std::string& client, const std::string& topic,
                                            const std::optional<client_status>& current,
                                            const std::vector<history_event>& events,
                                            const std::vector<interval>& watched, time_point from, time_point to,
                                            std::chrono::milliseconds flap_interval);

}  // namespace mqtt_presence
