#pragma once
// presence_client: an MQTT client that owns its connection status for its whole life (RAII).
//
//   mqtt_presence::presence_options opts;
//   opts.status.name = "sensor-1";
//   mqtt_presence::presence_client client(opts);
//   client.start();           // connects in the background; retained "1" on every (re)connect
//   client.mqtt().publish(...);
//   // ~presence_client: publishes "0" (reason clean), waits (bounded), disconnects
//
// Lifecycle (docs/conventions.md, "Lifecycle contract"): a fresh epoch and will at every CONNECT; its own reconnect loop with
// backoff and jitter (not Paho's automatic reconnect, which would reuse the first will); self-heal: it watches its own
// status topic and republishes "connected" when it sees a "disconnected" or an older epoch while connected. A newer
// epoch from another process is a name conflict: reported, and this client keeps quiet until that status goes away (the
// other process stopped or died: it republishes) or it reconnects. An epoch beyond the clock skew is forged, not a
// conflict: it heals. The app's subscriptions (`subscriptions`, or subscribe()) are made again at every connect.
//
// Stopping: "disconnected" (reason clean) is published and its acknowledgement awaited, all within stop_timeout.
// If it is not acknowledged, the will must survive: MQTT 5 disconnects with reason 0x04 (disconnect with will
// message); MQTT 3.1.1 ends the connection with a protocol error instead of a DISCONNECT packet (clean_stop.hpp).
// stop_all() stops many clients in parallel, bounded by one stop_timeout.
//
// Client ids: two processes with one client id make the broker drop each in turn. After a session that ended within
// 3 s of connecting, a client claims its id at each connect (a retained message on mqtt-presence/claim/<client id>
// with the time it was created; client_id_claim.hpp) and reads the other process's claim. The one created later is
// the newcomer: at the end of its next session it stops, and on_client_id_conflict says why (unless
// stop_on_client_id_conflict is false). The other (the incumbent) goes on, and reports it after three short
// sessions. Without a readable claim (an ACL that denies the topic), a client that never had a longer session
// stops after four short sessions in a row. A clean stop clears the claim it published.
//
// Threads: no thread per client. Every presence_client of a process shares one scheduler thread for its timed work
// (connect attempts, backoff, heartbeats, writing unhandled errors), and connects are paced process-wide
// (set_connect_rate). The handlers in presence_options run on Paho's callback thread; they must not block (never
// wait on a token there). Exceptions they throw are caught and reported through on_error. start()/stop() are for
// the owner's thread. Everything else is safe from any thread.
//
// Many clients in one process: Paho C 1.3.12 notices a new connect only when another of the process's sockets has
// traffic, or up to a second later. A connect still in flight after 100 ms has a connected client of the process
// unsubscribe from "mqtt-presence/paho-wake", a filter reserved for this (never subscribe to it): the broker's
// answer wakes Paho.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <mqtt/async_client.h>

#include <mqtt_presence/broker_options.hpp>
#include <mqtt_presence/status_announcer.hpp>

namespace mqtt_presence {

struct presence_options {
    broker_options broker;  ///< client_id empty: the status name (a stable id per status topic)
    status_options status;
    std::chrono::seconds will_delay{0};   ///< MQTT 5 only: the broker waits this long before sending the will
    std::chrono::milliseconds reconnect_min{500};
    std::chrono::milliseconds reconnect_max{30'000};
    std::chrono::milliseconds stop_timeout{2'000};  ///< bound on the clean stop
    /// Subscriptions of the app, made again at every (re)connect (the session is clean). subscribe() adds to them.
    std::vector<std::pair<std::string, int>> subscriptions;
    /// The newcomer of two processes that share a client id stops instead of taking turns with the other.
    bool stop_on_client_id_conflict = true;

    /// Called for each message on the app's own subscriptions (not the status topic). Paho's thread.
    std::function<void(mqtt::const_message_ptr)> on_message;
    /// Called after each (re)connect, after "connected" is queued. Paho's thread.
    std::function<void()> on_connected;
    /// Called when the connection is lost (not on stop()). Paho's thread.
    std::function<void(const std::string& cause)> on_connection_lost;
    /// Another process publishes this name with a newer epoch. Called once. Paho's thread.
    std::function<void(const std::string& description)> on_conflict;
    /// This client stopped because another process uses its client id (see stop_on_client_id_conflict). Called
    /// once, on the scheduler's thread (never Paho's).
    std::function<void(const std::string& description)> on_client_id_conflict;
    /// Errors that have no caller to throw to (failed publish, exceptions from the handlers above). Without it,
    /// they go to stderr (from the scheduler's thread or the owner's, never Paho's).
    std::function<void(const std::string& message)> on_error;

    /// Throws mqtt_presence::error naming the bad field and value.
    void validate() const;
};

class presence_client {
public:
    /// Validates the options and creates the Paho client; throws mqtt_presence::error. Does not connect.
    explicit presence_client(presence_options options);
    /// The clean stop, bounded by stop_timeout (Paho's own destructor would drop the will and leave "1").
    ~presence_client() noexcept;
    presence_client(const presence_client&) = delete;
    presence_client& operator=(const presence_client&) = delete;

    /// Starts connecting in the background (and keeps reconnecting). Returns at once.
    void start();
    /// Waits until connected and "connected" is published; false on timeout.
    bool wait_connected(std::chrono::milliseconds timeout);
    /// The clean stop: "disconnected" (reason clean), wait for its acknowledgement, disconnect; at most
    /// stop_timeout in all. Idempotent. Returns false when the status could not be delivered (the will is kept).
    bool stop() noexcept;
    /// stop() in two halves, for stopping many clients at once (stop_all): begin_stop() ends the reconnect loop and
    /// queues the clean "disconnected"; finish_stop() waits for it until `deadline`, then ends the connection.
    void begin_stop() noexcept;
    bool finish_stop(std::chrono::steady_clock::time_point deadline) noexcept;
    /// Subscribes now (if connected) and after every reconnect. Messages go to on_message.
    void subscribe(const std::string& filter, int qos = 1);
    /// Connects per second for every presence_client of this process (first connects and reconnects alike), so a
    /// large fleet never storms the broker; 0 (the default): unpaced.
    static void set_connect_rate(double per_second);
    /// True once this client stopped because another process uses its client id.
    [[nodiscard]] bool stopped_by_client_id_conflict() const noexcept;

    [[nodiscard]] bool connected() const noexcept;
    [[nodiscard]] std::uint64_t epoch() const noexcept;
    [[nodiscard]] const std::string& topic() const noexcept;
    [[nodiscard]] bool conflict_detected() const noexcept;
    /// The underlying client, for the app's own publishes and subscriptions (do not connect/disconnect it).
    [[nodiscard]] mqtt::async_client& mqtt() noexcept;

private:
    friend std::size_t stop_all(const std::vector<presence_client*>& clients) noexcept;
    struct impl;  // the connection's state machine: private, so that it may change without changing the ABI
    std::unique_ptr<impl> impl_;
};

/// Stops every client in parallel: the clean "disconnected" of all of them is sent first, then awaited until one
/// deadline (the largest stop_timeout). Returns how many were delivered.
std::size_t stop_all(const std::vector<presence_client*>& clients) noexcept;

}  // namespace mqtt_presence
