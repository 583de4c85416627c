#pragma once
// sync_tracker: the scanner's sync protocol, without MQTT, locks or clocks of its own. Pure: the caller feeds it
// the events of one connection (the marker, the retained tail, status messages, mosquitto's drop counter, time
// passing) and carries out what it answers (subscribe exact topics, remove unconfirmed rows). The scanner calls it
// under its lock; the unit test drives it with made-up times in milliseconds.
//
// The protocol, per connection:
//   1. One SUBSCRIBE (status filters, then the tail's wildcard), then the marker "N" published; with an owned
//      client, a retained tail "N" published before the SUBSCRIBE.
//   2. The burst ends when both the marker and the retained tail are back (a broker that keeps order: the marker
//      alone; aedes: the tail may come after the marker). With no tail to wait for (a borrowed client), the marker
//      alone ends it.
//   3. The marker back and no tail a quiet period later: retained statuses came through the wildcards, so the broker
//      refused the tail's publish (an ACL), and the burst ended with the marker; none came, so the broker sends no
//      retained message to a wildcard subscription (RabbitMQ) or the fleet is empty.
//   4. When the burst ends, rows it did not confirm (and named clients) are asked for by their exact topics with a
//      second marker "confirm-N", unless the broker proved it sends retained messages to wildcards.
//   5. The sync then ends complete, partial (the broker sends no retained message to wildcards) or unverified (the
//      broker admits to drops; or no marker came back and a quiet period ended the wait).

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <mqtt_presence/scanner_status.hpp>

namespace mqtt_presence::detail {

class sync_tracker {
public:
    using steady = std::chrono::steady_clock;
    /// The exact topics of the rows to confirm (unconfirmed rows, named clients): asked only when needed.
    using exact_topics = std::function<std::vector<std::string>()>;

    /// What the caller does when an event ended a burst.
    struct burst_end {
        bool ended = false;                   ///< false: nothing to do
        std::vector<std::string> confirm;     ///< subscribe these, then publish "confirm-<seq>" to the marker topic
        std::uint64_t seq = 0;
        std::vector<std::string> unsubscribe;  ///< the confirmed round's exact topics, no longer needed
        bool remove_unconfirmed = false;       ///< the sync ended knowing the whole store: drop rows it did not bring
        bool state_changed = false;            ///< the sync state changed: tell whoever watches it
    };

    /// has_tail: a retained tail is published at each connect (an owned client); quiet_period: how long without a
    /// status message ends a wait that the protocol cannot end.
    sync_tracker(bool has_tail, std::chrono::milliseconds quiet_period);

    /// A (re)connection subscribed: a new burst begins. Returns the marker number to publish.
    std::uint64_t connected(steady::time_point now);
    /// The connection is lost: a sync in progress ends unverified.
    void lost();

    /// The marker topic brought `payload` ("N" or "confirm-N"; probes and purge markers are the caller's).
    burst_end marker_back(std::string_view payload, steady::time_point now, const exact_topics& topics);
    /// The tail topic brought `payload`; only this connection's retained tail counts.
    burst_end tail_back(bool retained, std::string_view payload, const exact_topics& topics);
    /// A status message arrived (the quiet period restarts).
    void status_message(bool retained, steady::time_point now);
    /// mosquitto's count of dropped messages: a rise since the sync began makes the sync unverified.
    void dropped(std::uint64_t count);
    /// Time passed: ends a burst whose tail is overdue (see the protocol, step 3).
    burst_end tick(steady::time_point now, const exact_topics& topics);

    enum class quiet { waiting, ended, ended_unverified };
    /// A wait for the sync: over (the sync ended, or a quiet period passed without the marker: then unverified,
    /// `ended_unverified` the first time), or not yet.
    quiet wait_state(steady::time_point now);

    [[nodiscard]] sync_state state() const noexcept { return state_; }
    [[nodiscard]] bool is_connected() const noexcept { return connected_; }
    /// The current connection's marker number; 0 before the first connection.
    [[nodiscard]] std::uint64_t marker() const noexcept { return marker_; }
    [[nodiscard]] bool tail_refused() const noexcept { return tail_refused_; }
    /// Messages the broker says it dropped since this sync began; 0 if none or unknown.
    [[nodiscard]] std::uint64_t broker_dropped() const noexcept;

private:
    [[nodiscard]] bool drops() const noexcept { return broker_dropped() > 0; }
    [[nodiscard]] bool syncing_now() const noexcept { return connected_ && state_ == sync_state::syncing; }
    burst_end end_burst(std::uint64_t seq, bool second, const exact_topics& topics);

    bool has_tail_;
    std::chrono::milliseconds quiet_period_;
    bool connected_ = false;
    sync_state state_ = sync_state::syncing;
    std::uint64_t marker_ = 0;
    bool tail_seen_ = false;          // this connection's retained tail arrived
    bool retained_in_burst_ = false;  // a retained status came through the wildcards in this burst
    bool tail_refused_ = false;
    std::optional<steady::time_point> marker_back_at_;  // this connection's marker back before the tail (aedes)
    std::optional<bool> wildcard_retained_;  // whether the broker sends retained messages to wildcard subscriptions
    std::optional<std::uint64_t> dropped_at_sync_, dropped_now_;
    std::vector<std::string> confirming_;  // exact topics subscribed to confirm rows
    steady::time_point subscribed_at_{};
    steady::time_point last_status_message_{};
};

}  // namespace mqtt_presence::detail
