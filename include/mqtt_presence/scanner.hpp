#pragma once
// scanner: subscribes to status topics and keeps the connected-clients table.
//
//   mqtt_presence::scanner_options opts;                 // tcp://localhost:1883, sensors/connected/{client}
//   mqtt_presence::scanner scan(opts);
//   scan.on_change([](const mqtt_presence::change& c) { ... });   // Paho's thread: do not block
//   scan.start();                                        // connects (bounded), subscribes; throws on failure
//   scan.wait_synced(std::chrono::seconds(10));          // the retained burst is complete
//   for (auto& row : scan.snapshot()) ...
//
// Or with a client the app already owns: construct with the client, call on_connected() from the app's connected
// handler and handle_message() from its message callback (both non-blocking).
//
// Threads: messages are decoded and applied under a short lock on Paho's callback thread, which only queues the
// resulting change. One delivery thread calls on_change and on_status, in the order the table changed, one call at a
// time, fenced with try/catch: a slow callback (a terminal, a pipe nobody reads) delays delivery, never intake.
// Heartbeat expiry runs on a timer thread and queues its changes the same way. snapshot(), counts(), stats(),
// find() and purge() are safe from any thread; a snapshot judges heartbeats at the moment it is taken.
//
// Sync: after every (re)subscribe the scanner publishes a marker to a private topic; when it comes back, the
// retained burst before it is complete (sync_state::complete) and rows the broker no longer holds are removed. Rows
// the wildcard burst did not confirm (restored from a history, or known before a reconnect) are first asked for by
// their exact topics, with a second marker: RabbitMQ delivers no retained message to a wildcard subscription, but
// does to an exact one. If
// it does not come back, a quiet period ends the wait, but the sync is only `unverified`: a broker that dropped
// messages (mosquitto's max_queued_messages) drops the marker too.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <mqtt/async_client.h>

#include <mqtt_presence/broker_options.hpp>
#include <mqtt_presence/client_groups.hpp>
#include <mqtt_presence/connection_table.hpp>
#include <mqtt_presence/scanner_status.hpp>
#include <mqtt_presence/topic_scheme.hpp>

namespace mqtt_presence {

/// A broker's name in a view of several (scanner_options::broker_name): letters, digits, '.', '_', '-', at most 40
/// (empty: no name). Throws mqtt_presence::error saying how to write one.
void check_broker_name(std::string_view name);

struct scanner_options {
    scanner_options() { broker.connect_timeout = std::chrono::seconds(5); }

    broker_options broker;  ///< client_id empty: mqtt-presence-scanner-<pid>-<random>
    /// The broker's name in a view of several ("site-a": letters, digits, '.', '_', '-'; at most 40), carried by
    /// every row (client_status::broker); empty: one broker, no name.
    std::string broker_name;
    std::vector<std::string> topics{"sensors/connected/{client}"};  ///< templates, one {client} level each
    int qos = 0;  ///< subscription QoS; 0: the retained store is re-read in full at every (re)subscribe
    /// Fallback for brokers that do not keep order: synced after this long without a status message.
    std::chrono::milliseconds quiet_period{1000};
    std::chrono::milliseconds expire_interval{1000};  ///< how often heartbeat staleness is checked
    /// A round trip through the broker this often (a QoS 0 message on the scanner's own marker topic) while
    /// connected, so that scanner_status::last_heard says how fresh the table is even in a quiet fleet; 0: none.
    /// (Paho shows no PINGRESP: a cut connection is otherwise silent until the keepalive declares it lost.)
    std::chrono::milliseconds probe_interval{1000};
    /// Activity templates (same placeholders as `topics`): a live message on one is a sign of life of the client of
    /// that name in every status scheme (connection_table::seen): its last_seen moves, a stale row is fresh. The
    /// payload is never decoded or kept; retained ones (as old as the broker's store) are not signs of life. E.g.
    /// "tele/{client}/STATE" beside Tasmota's "tele/{client}/LWT". Subscribed at QoS 0.
    std::vector<std::string> activity;
    /// An activity template's own status templates (by their text in `topics`): its readings are signs of life only
    /// of the clients of those schemes, e.g. Tasmota's "tele/{client}/STATE" of "tele/{client}/LWT" alone, never of
    /// a "kitchen" of another convention. A template not here is a sign of life in every scheme.
    std::map<std::string, std::vector<std::string>> activity_statuses;
    /// Glob patterns (fnmatch: `*`, `?`, `[...]`; `*` also crosses '/') of names or topics to leave out: a status
    /// or reading whose client name or topic fits one is counted (stats().excluded) and goes no further, e.g.
    /// "homeassistant" under "{client}/status". Every mode and output.
    std::vector<std::string> exclude;
    /// Expected intervals (expectation::parse: "10m", "auto", "kitchen*=2h"): a connected client unheard for longer
    /// (no status, no reading on an activity topic) is overdue (client_status::overdue, change_kind::overdue) until
    /// heard again (change_kind::back). The first rule whose glob fits a client's name or status topic applies,
    /// else the last without a glob. Asked once per client, as it enters the table.
    std::vector<expectation> expect;
    /// Groups (group_rule::parse: "garage=garage-*", "battery=meta.power=battery"): each row leaving the scanner
    /// (snapshots, changes, find) carries the groups it is in (client_status::groups). An `expect` rule
    /// "group:NAME=DURATION" applies to a group's clients (by its name and topic rules).
    std::vector<group_rule> groups;
    /// Only the clients of these groups (names from `groups`): a status of a client in none is left out and counted
    /// as excluded, as `exclude` does; a client that leaves them (its metadata changed) leaves the table (removed).
    std::vector<std::string> only_groups;
    /// Clients asked for by their exact topics (in every scheme) at every sync: their retained statuses arrive even
    /// from a broker that sends none to a wildcard subscription (RabbitMQ), so --require is right everywhere.
    std::vector<std::string> named_clients;
    /// Reads a Sparkplug B NBIRTH/NDEATH payload (bdSeq into session, its timestamp): set it to
    /// mqtt_presence::sparkplug::read_node_payload (library mqtt_presence_sparkplug) for the "sparkplug-nodes"
    /// scheme. Without it, births and deaths are read from their topics alone, and a death is not matched to its
    /// birth. Called on Paho's thread: must not block or throw.
    std::function<bool(std::string_view payload, status_record& out)> sparkplug_reader;

    /// Throws mqtt_presence::error naming the bad field and value.
    void validate() const;
};

class scanner {
public:
    using change_callback = std::function<void(const change&)>;

    /// Owns its client. Validates the options (throws mqtt_presence::error); does not connect yet.
    explicit scanner(scanner_options options);
    /// Borrows the app's client: the app connects it, calls on_connected() and handle_message().
    scanner(mqtt::async_client& client, scanner_options options);
    ~scanner() noexcept;
    scanner(const scanner&) = delete;
    scanner& operator=(const scanner&) = delete;

    /// Connects (bounded by connect_timeout) and subscribes; re-subscribes after every reconnect.
    /// Throws mqtt_presence::error when the broker cannot be reached. Owned client only.
    void start();
    /// Disconnects (owned client) and stops the expiry timer. Idempotent.
    void stop() noexcept;

    /// Subscribes the status filters and sends the sync marker. Non-blocking: call from a connected handler.
    void on_connected() noexcept;
    /// Feeds one message; true if it was a status (or the sync marker). Never throws, never blocks.
    bool handle_message(const mqtt::const_message_ptr& msg) noexcept;
    /// With a borrowed client: call from the app's connection-lost handler, so that the scanner's outputs say the
    /// data is as of then. Non-blocking.
    void on_connection_lost(const std::string& cause = {}) noexcept;

    /// Waits until the sync of the current connection ends: complete (true), or unverified after the quiet period
    /// (true; see status().sync). False on timeout.
    bool wait_synced(std::chrono::milliseconds timeout);
    /// True once the marker of the current connection came back (sync_state::complete).
    [[nodiscard]] bool synced() const;
    /// Waits (bounded) until `condition` holds, checking it after every message and change. The condition runs on
    /// the calling thread without the scanner's lock, so it may call snapshot(), find() and friends.
    bool wait_for(const std::function<bool()>& condition, std::chrono::milliseconds timeout);
    /// Called with every change, on the delivery thread, in order, one at a time. Set before start().
    void on_change(change_callback callback);
    /// Called when the connection is lost or restored (text for a status line), on the delivery thread.
    void on_status(std::function<void(const std::string&)> callback);
    /// Called whenever the scanner's own state changes (connected and syncing, sync ended, connection lost), on the
    /// delivery thread, in order with the changes: what a history needs to know which times it watched. Set before
    /// start().
    void on_state(std::function<void(const scanner_status&)> callback);
    /// Also subscribes to `topic` (an exact topic, no wildcard) at every (re)connect and calls `callback` with each
    /// message's payload on the delivery thread (in order with the changes): how a service hears, say, Home
    /// Assistant's birth message. Set before start().
    void on_message(std::string topic, std::function<void(const std::string& payload)> callback);
    /// Publishes through the scanner's connection without waiting; false when not connected or not queued.
    bool publish(const std::string& topic, const std::string& payload, int qos, bool retained) noexcept;
    /// Waits, at most `timeout`, until the broker acknowledged every QoS 1 or 2 message publish() queued: before
    /// a stop that must not lose them. False on timeout or when not connected.
    bool wait_published(std::chrono::milliseconds timeout) noexcept;
    /// Puts back rows remembered from an earlier run (each row's `topic` says its scheme and name; rows under no
    /// scheme of this scanner are skipped). Call before start(): the first sync confirms, changes (live=false) or
    /// removes them. Returns how many were restored.
    std::size_t restore(std::vector<client_status> rows);
    /// The cadences learned by "auto" rows (scanner_options::expect) that heard a live message at or after
    /// `since_unix_ms`, each with its status topic: what a history keeps across restarts.
    [[nodiscard]] std::vector<learned_cadence> cadences(std::int64_t since_unix_ms = 0) const;
    /// Puts back cadences an earlier run learned (after restore(); each `topic` says its scheme and name) into the
    /// "auto" rows that have learned nothing yet. Returns how many were taken.
    std::size_t resume_cadences(const std::vector<learned_cadence>& learned);
    /// Moves at every message the table took and every change of the scanner's own state: what was read at one
    /// version holds until it moves (only ages, such as a heartbeat's, move on meanwhile).
    [[nodiscard]] std::uint64_t version() const;
    /// Changes and status lines queued for the delivery thread and not yet delivered.
    [[nodiscard]] std::size_t pending_deliveries() const;

    /// The rows sorted by name (or in `order`: problems first for a person); with `limit`, only the first ones
    /// (cheap for a screenful of a large table).
    [[nodiscard]] std::vector<client_status> snapshot(std::size_t limit = SIZE_MAX,
                                                      row_order order = row_order::name) const;
    /// Calls `visit` for every row, sorted by name, without copying the table: for writing out a large snapshot
    /// (see snapshot_writer). `visit` runs without the scanner's lock, so a slow writer (a pipe nobody reads) never
    /// holds up intake, and it may call anything. Rows are read a chunk at a time: each is current as of its chunk,
    /// a row removed meanwhile is left out. Returns the counters of the moment the visit began.
    std::pair<table_counts, table_stats> for_each_sorted(const std::function<void(const client_status&)>& visit) const;
    /// One row, without copying the table; `source` picks the topic scheme (index into schemes()).
    [[nodiscard]] std::optional<client_status> find(std::string_view client, std::uint16_t source = 0) const;
    [[nodiscard]] table_counts counts() const;
    [[nodiscard]] table_stats stats() const;
    /// The scanner's own connection and sync state.
    [[nodiscard]] scanner_status status() const;
    [[nodiscard]] const std::vector<topic_scheme>& schemes() const noexcept;
    /// The status topic a row came from.
    [[nodiscard]] std::string topic_of(const client_status& row) const;
    /// The status topic of `client` in scheme `source`; empty for a name no topic can hold.
    [[nodiscard]] std::string topic_of(std::string_view client, std::uint16_t source) const;
    [[nodiscard]] bool connected() const;

    /// What a purge did. A broker may acknowledge a write its ACL discarded, so a status counts as cleared only
    /// when the broker's own "cleared" (the empty retained message) came back to the scanner.
    struct purge_result {
        std::vector<client_status> cleared;  ///< verified cleared (with dry_run: would be cleared)
        std::vector<client_status> refused;  ///< still there after the broker answered (ACL, or republished)
    };
    /// Clears the retained status of every client `select` picks (empty retained payload, QoS 1) unless dry_run,
    /// then verifies: a marker published after the clears comes back after every clear the broker accepted.
    /// Bounded (10 s); throws mqtt_presence::error when the broker does not answer.
    purge_result purge(const std::function<bool(const client_status&)>& select, bool dry_run);

private:
    struct impl;  // the table, the sync, the threads: private, so that they may change without changing the ABI
    std::unique_ptr<impl> impl_;
};

}  // namespace mqtt_presence
