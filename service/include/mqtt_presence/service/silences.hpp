#pragma once
// Silences: maintenance windows that hold a client's (or a group's) alerts for a while. A person sets one with a
// reason ("firmware update"), it ends by itself at its time or when ended by hand, and the history keeps it, so a
// restart keeps it too. A held alert is recorded and counted, never sent; the client's history goes on as always.
// Thread-safe (one mutex): the HTTP threads add and end silences, the alert thread asks.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <mqtt_presence/status_record.hpp>

namespace mqtt_presence {

struct silence {
    std::string id;      ///< 16 hex digits, random
    std::string target;  ///< a client's name or a glob on names, or "group:NAME"
    std::string reason;
    std::string by;      ///< who set it: the HTTP user, or the peer's address without one
    time_point from{};
    time_point until{};
    std::optional<time_point> ended;  ///< ended by hand before `until`

    [[nodiscard]] bool active(time_point now) const noexcept { return !ended && from <= now && now < until; }
    /// {"id","target","reason","by","from","until","ended"} (times ISO 8601, ended null while it runs).
    [[nodiscard]] std::string json() const;
    /// Whether it covers a client of this name in these groups (or, with no name, the group of a group outage).
    [[nodiscard]] bool covers(const std::string& client, const std::vector<std::string>& groups) const;
};

/// A maintenance window that comes back every week, in the service's local time (its TZ): "group:garage Sun
/// 02:00-04:00 weekly backup", "boiler Mon-Fri 22:00-06:00 night" (an end before the start is on the next day).
struct recurring_silence {
    std::string target, reason;
    std::uint8_t days = 0;          ///< bit 0 Sunday ... bit 6 Saturday: the days a window begins
    std::uint16_t start_min = 0;    ///< minutes after midnight
    std::uint16_t end_min = 0;

    /// "TARGET DAYS HH:MM-HH:MM REASON"; DAYS is daily, a day (Sun), a range (Mon-Fri) or a list (Sat,Sun). Throws
    /// mqtt_presence::error saying how to write it.
    [[nodiscard]] static recurring_silence parse(const std::string& text);
    /// The window open at `now`, as a silence (id "every-N", by "configuration"); nullopt when closed.
    [[nodiscard]] std::optional<silence> open_at(time_point now, std::size_t index) const;
};

class silence_book {
public:
    /// The weekly windows (from the configuration), beside the silences people set.
    void recurring(std::vector<recurring_silence> windows);
    /// The longest silence: a forgotten one must end.
    static constexpr std::chrono::hours longest{24 * 90};

    /// A new silence from `now` for `duration`. Throws mqtt_presence::error naming what is wrong (an empty target or
    /// reason, a duration not in (0, 90 days], text too long).
    silence add(const std::string& target, std::chrono::milliseconds duration, const std::string& reason,
                const std::string& by, time_point now);
    /// Ends a running silence; nullopt when there is none of that id (unknown, ended or over).
    std::optional<silence> end(const std::string& id, time_point now);
    /// Those running at `now`, soonest end first.
    [[nodiscard]] std::vector<silence> active(time_point now) const;
    /// Puts back silences remembered from an earlier run (the history).
    void restore(const std::vector<silence>& remembered);
    /// The set silences become exactly these (a follower mirrors the leader's, as the history has them).
    void mirror(std::vector<silence> running);
    /// The running silence that covers the client (by name or group), or a group outage's group; nullopt if none.
    [[nodiscard]] std::optional<silence> covering(const std::string& client, const std::vector<std::string>& groups,
                                                  time_point now) const;
    /// Alerts held by a silence since the start.
    [[nodiscard]] std::uint64_t held() const;
    void count_held();

private:
    mutable std::mutex mutex_;
    std::vector<silence> silences_;  // running and recently over (over ones are dropped as new ones come)
    std::vector<recurring_silence> recurring_;
    std::uint64_t held_ = 0;
};

}  // namespace mqtt_presence
