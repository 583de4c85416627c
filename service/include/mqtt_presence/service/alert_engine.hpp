#pragma once
// alert_engine: when a change of the table deserves a person's attention, and when it does not. Pure (no I/O, no
// clock of its own: every call gets `now`), so that its rules are tested with scripted times.
//
//  - down: a client disconnected (or stale) for `after` without coming back; "recovered" when it returns, only if
//    "down" was sent. A disconnect shorter than `after` sends nothing. A connected client unheard for longer than
//    expected (overdue) is down the same way, as "overdue" and "back".
//  - flapping: `flap_count` disconnects within `flap_window` send one "flapping" and silence the client until it
//    has been stable (no disconnect) for the window.
//  - outage: when the service itself is cut off from the broker for `after`, or when more than `outage_percent` of a
//    topic scheme's clients (or of a group's: a client's first group) go down within `outage_window`, one "outage"
//    ("8 of 20 in garage are down") instead of one alert per client. It is
//    sent once the downs settle (a second without another, or `after` at most), so its count and sample are of the
//    whole outage. Its members (down when it began, or going down during it) get no alert of their own: when the
//    scheme is back (every client up, or its downs under the threshold and none for `outage_window`; then no
//    return for 5 s), one
//    "outage-over" counts and samples those still down, and that stands for their "down" (no "recovered" follows).
//  - watch lists: `only` (names or globs that matter; empty: all) and `exclude`.
//  - a new or removed client is an event, not an alert, unless `on_new` / `on_removed`.

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <mqtt_presence/connection_table.hpp>

namespace mqtt_presence {

struct alert_options {
    std::chrono::milliseconds after = std::chrono::minutes(1);
    std::uint32_t flap_count = 5;
    std::chrono::milliseconds flap_window = std::chrono::minutes(10);
    double outage_percent = 20.0;
    std::chrono::milliseconds outage_window = std::chrono::seconds(30);
    std::size_t outage_min_clients = 5;  ///< a scheme with fewer clients never makes an outage
    std::vector<std::string> only;       ///< glob patterns (fnmatch); empty: every client
    std::vector<std::string> exclude;
    bool on_new = false;
    bool on_removed = false;

    /// Throws mqtt_presence::error naming the bad value.
    void validate() const;
};

struct alert {
    std::string kind;  ///< down, recovered, overdue, back, flapping, outage, outage-over, already-down, new, removed
    /// Why. down, flapping: the disconnect's cause (lost, clean, stale, unseen, unknown); recovered: connected or
    /// fresh; overdue: overdue; back: seen; outage and outage-over: broker or scheme; already-down: unknown.
    std::string cause;
    std::string client;
    std::string topic;
    std::string scheme;  ///< the client's (or the outage's) topic scheme: its subscription filter
    std::string group;   ///< a group's outage: the group (--group); its clients' outage is one alert
    std::vector<std::string> groups;  ///< the client's groups: where else the alert is posted, what silences it
    std::string silenced;             ///< the silence that held it (recorded, not sent); empty: none
    std::string broker;  ///< the broker's URI (the service sets it)
    std::string url;     ///< the client (or the dashboard) for a person, with --public-url; empty without
    time_point time;
    std::optional<time_point> since;  ///< when the state it reports began (unknown: nullopt)
    std::optional<std::chrono::milliseconds> down_for;  ///< recovered, back: how long it was down (unknown: nullopt)
    std::optional<std::chrono::milliseconds> expected;  ///< overdue: how long it may go unheard (its expectation)
    std::size_t count = 0;            ///< how many clients: 1 for a client's own alert
    std::size_t total = 0;            ///< outages: how many clients the scheme or group has
    std::vector<std::string> sample;  ///< outages and already-down: some of their names
    std::string reason;               ///< outages: "broker" (the service lost it) or the scheme's topic filter
    std::int64_t outbox_id = 0;       ///< its row in the history's outbox (0: none)

    /// One line for a person: "kitchen is down", "12 of sensors/connected/+ are down (outage)".
    [[nodiscard]] std::string title() const;
    /// A sentence or two with the cause, the times and the topic.
    [[nodiscard]] std::string message() const;
    /// {"alert","cause","client","topic","scheme","broker","time","since","down_for_s","count","sample","reason",
    /// "title","message","url"}; times ISO 8601, null when unknown.
    [[nodiscard]] std::string json() const;
    /// The alert json() wrote (an outbox row read back after a restart); nullopt if it is not one.
    [[nodiscard]] static std::optional<alert> from_json(const std::string& text);
};

class alert_engine {
public:
    /// `scheme_filters`: each topic scheme's subscription filter (a scheme outage's reason), by the rows' source.
    explicit alert_engine(alert_options options, std::vector<std::string> scheme_filters = {});

    /// A row the service already knows (after its first sync, or restored): `down_sent` when a "down" was sent for
    /// it before a restart (it is not sent again).
    void seed(const client_status& row, bool down_sent, time_point now);
    /// Down, for these rules: disconnected, or connected with its heartbeats overdue (stale).
    [[nodiscard]] static bool down(const client_status& row) noexcept;
    /// At the service's first start (no history yet): the clients the first sync found down, watched ones, as one
    /// "already-down" alert (their count and the first 20 names); each is then seeded as alerted. nullopt: none.
    std::optional<alert> already_down(const std::vector<client_status>& down_rows, time_point now);
    std::vector<alert> on_change(const change& c, time_point now);
    /// The service's own connection: watching = connected and synced.
    std::vector<alert> on_service(bool watching, time_point now);
    /// Due debounces, silences and outage ends. Call often (every second).
    std::vector<alert> tick(time_point now);
    /// The next time tick() has something to do (time_point::max(): nothing pending).
    [[nodiscard]] time_point next_due() const;

private:
    struct client_state {
        std::string client, topic;
        std::uint16_t source = 0;  // its topic scheme
        std::uint16_t scheme = 0;  // its outage scope: its topic scheme, or its first group (scope_of)
        std::vector<std::string> groups;
        bool down = false;             // disconnected or stale now
        std::optional<time_point> down_since;
        std::string down_cause = "unknown";  // the disconnect's cause, for its "down" and "flapping"
        std::optional<std::chrono::milliseconds> expected;  // its expected interval, for an "overdue"
        time_point down_at{};          // when this engine saw it go down (the debounce runs from here)
        bool down_sent = false;
        bool held = false;             // its down alert waits for an outage to end
        std::deque<time_point> disconnects;
        bool flapping = false;
        bool member = false;   // down during its scheme's outage: the outage speaks for it
        bool covered = false;  // still down when the outage ended: its "down" was the outage-over's summary
    };
    struct scheme_outage {
        bool active = false;
        bool announced = false;         // the "outage" went out
        time_point detected{};
        time_point last_up{};           // the latest return in this scheme
        std::deque<time_point> downs;  // recent downs in this scheme
        std::size_t clients = 0;       // kept as clients come, go, fall and return: no walk over the fleet per change
        std::size_t down = 0;
    };

    [[nodiscard]] bool watched(const std::string& client) const;
    [[nodiscard]] bool in_outage(const client_state& s) const;
    void went_down(client_state& s, std::optional<time_point> since, std::string cause, time_point now,
                   std::vector<alert>& out);
    void came_back(client_state& s, std::optional<time_point> since, time_point now, std::vector<alert>& out);
    [[nodiscard]] alert make(const std::string& kind, const client_state& s, time_point now) const;
    /// An outage alert counting (and sampling) the clients `counted` picks: built only when one is sent.
    template <class Pick>
    [[nodiscard]] alert outage(const char* kind, std::string reason, time_point now, Pick counted) const;
    void check_outage(std::uint16_t scheme, time_point now, std::vector<alert>& out);
    void end_outage(std::uint16_t scheme, time_point now, std::vector<alert>& out);
    // The row's state, created (counted in its outage scope) when new; its topic, groups and interval kept current.
    client_state& track(const client_status& row);
    std::uint16_t scope_of(const client_status& row);
    [[nodiscard]] std::string scope_reason(std::uint16_t scope) const;  // a scheme's filter, or "group:NAME"
    static constexpr std::uint16_t first_group_scope = 32768;
    void set_down(client_state& s, bool down);                              // keeps the scheme's count

    alert_options options_;
    std::vector<std::string> scheme_filters_;
    std::map<std::pair<std::string, std::uint16_t>, client_state> clients_;
    std::map<std::uint16_t, scheme_outage> schemes_;  // by outage scope: topic schemes, then groups
    std::map<std::string, std::uint16_t> group_scopes_;
    std::map<std::uint16_t, std::string> scope_groups_;
    bool service_watching_ = true;
    std::optional<time_point> service_lost_;
    bool broker_outage_ = false;
};

}  // namespace mqtt_presence
