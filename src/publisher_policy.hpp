#pragma once
// The publisher's rules, without MQTT, locks or clocks of its own (presence_client carries them out):
//   - reconnect_backoff: how long to wait before the next connect;
//   - next_beat: when the next heartbeat is due (a grid shared by the process);
//   - own_status_watch: what a status heard on the client's own topic means (self-heal, or another publisher);
//   - takeover_watch: whether this process is the newcomer of two that share a client id.
// Pure: the unit test drives each with made-up times.

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>

#include <mqtt_presence/status_record.hpp>

#include "client_id_claim.hpp"

namespace mqtt_presence::detail {

/// Exponential backoff with jitter: each wait is drawn in [b/2, b] (a fleet does not reconnect in lockstep), then b
/// doubles up to the maximum; a session that lasted sets it back to the minimum.
class reconnect_backoff {
public:
    reconnect_backoff(std::chrono::milliseconds min, std::chrono::milliseconds max) : min_(min), max_(max), next_(min) {}
    std::chrono::milliseconds next(std::minstd_rand& rng);
    void reset() noexcept { next_ = min_; }

private:
    std::chrono::milliseconds min_, max_, next_;
};

/// The first heartbeat time after `now` on the grid of `interval` at `phase` (in [0, 1), drawn once per process):
/// every client of a process beats at the same phase, so the process publishes its beats in one burst and Paho's
/// receive thread polls its sockets once for many acknowledgements.
std::chrono::steady_clock::time_point next_beat(std::chrono::steady_clock::time_point now,
                                                std::chrono::seconds interval, double phase);

/// What a status heard on the client's own topic means while it is connected.
class own_status_watch {
public:
    enum class verdict {
        nothing,          ///< our own status (or its echo): nothing to do
        heal,             ///< a late will, an older epoch, a cleared, unreadable or forged status: say "connected"
        newer_publisher,  ///< another live process publishes this name with a newer epoch: keep quiet (said once)
        plain_publisher,  ///< a "connected" without an epoch this connection did not send (said once)
    };

    explicit own_status_watch(bool mqtt5) : mqtt5_(mqtt5) {}
    /// A new connection looks again: the other publisher may be gone.
    void connected() noexcept;
    /// This connection sends a "connected" (before the publish: its echo may come first).
    void sent_connected() noexcept { ++connected_sent_; }
    /// `mine`: this connection's epoch; `now`: the clock that judges a forged epoch.
    verdict heard(const status_record& record, bool retained, std::uint64_t mine, time_point now);
    /// Another live process publishes this name: "connected" is not republished while it lives.
    [[nodiscard]] bool conflict() const noexcept { return conflict_; }

private:
    bool mqtt5_;
    bool conflict_ = false;
    bool plain_reported_ = false;
    // "connected" statuses without an epoch this connection sent and heard live on its topic: one heard beyond
    // those sent (MQTT 3.1.1 echoes our own; MQTT 5's no-local does not) is another publisher's.
    std::uint32_t connected_sent_ = 0;
    std::uint32_t connected_heard_ = 0;
};

/// Two processes with one client id make the broker drop each in turn: sessions that end within seconds.
class takeover_watch {
public:
    static constexpr std::chrono::seconds short_session{3};

    /// A session ended after `lasted`. True if it was short.
    bool session_ended(std::chrono::steady_clock::duration lasted) noexcept;
    /// Another process's claim on the client id (ours filtered out by the caller).
    void rival_claim(const client_id_claim& claim) noexcept { rival_ = claim; }
    /// Whether this process is the newcomer and stops; `why` says how it was decided. A fresh claim of the rival
    /// decides at any session's end (the process created later is the newcomer); without one, a client that never
    /// had a longer session is the newcomer after four short sessions in a row. `claim_topic` names where claims are.
    bool is_newcomer(const client_id_claim& mine, std::uint64_t now_ms, const std::string& claim_topic,
                     std::string& why) const;
    /// True once, after three short sessions in a row: the incumbent says another client probably uses its id.
    bool should_warn() noexcept;
    [[nodiscard]] int short_sessions() const noexcept { return short_sessions_; }

private:
    bool last_short_ = false;
    int short_sessions_ = 0;
    bool had_long_session_ = false;
    bool warned_ = false;
    std::optional<client_id_claim> rival_;
};

}  // namespace mqtt_presence::detail
