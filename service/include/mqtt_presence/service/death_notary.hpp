#pragma once
// death_notary: the service's testimony on the broker. On every transition it publishes a retained JSON record for
// the client (by default under mqtt-presence/clients/{client}), so that any MQTT client that starts later, even
// mosquitto_sub, can read when a client died and why:
//
//   {"state":"disconnected","stale":false,"since":"2026-11-30T02:10:00.123Z","last_seen":"…","cause":"lost",
//    "epoch":1764468000000,"topic":"sensors/connected/kitchen","ip":"10.0.0.7",
//    "observer":"gw-host:/var/lib/mqtt-presence/history.db","observed_since":"2026-11-29T08:00:00.000Z"}
//
// `since` is null when the time is not known; `observed_since` says since when the observer has watched (times
// before it are not its testimony).
//
// One notary per template: the notary holds a retained lock record on the template's parent topic (the template
// without its {client} level, e.g. mqtt-presence/clients) with a Last Will that releases it. A notary that finds
// the lock held by another observer refuses to start. Records are published from the notary's own thread,
// coalesced per client (a burst of changes publishes each client's last record once).
//
// Threads: record() and stats() from any thread, never blocking. The notary's own thread publishes, with no lock
// held across a Paho call, and waits at most 100 ms at a time; while the broker is gone it waits for the connection
// (records coalesce meanwhile) instead of retrying. Paho's callbacks only set flags; the lines for on_line() are
// said on the notary's thread.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <mqtt/async_client.h>

#include <mqtt_presence/broker_options.hpp>
#include <mqtt_presence/connection_table.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/service/history_event.hpp>
#include <mqtt_presence/topic_scheme.hpp>

namespace mqtt_presence {
class reconnect_driver;

struct notary_options {
    static constexpr const char* default_template = "mqtt-presence/clients/{client}";
    std::string topic_template = default_template;
    std::string observer;  ///< who testifies; the same observer may take its own lock over after a restart
    int qos = 1;
};

/// Another observer's notary holds the template: two would overwrite each other's records.
class notary_conflict : public error {
public:
    using error::error;
};

struct notary_stats {
    std::uint64_t published = 0;  ///< records the broker acknowledged or accepted for delivery
    std::uint64_t failed = 0;     ///< publishes that failed (retried while connected)
    std::size_t pending = 0;      ///< clients whose latest record is not yet published
    bool connected = false;       ///< the notary's own connection is up
    std::uint64_t unpublished_at_stop = 0;  ///< records still pending when stop() gave up (said on on_line)
};

class death_notary {
public:
    /// Validates the template (throws mqtt_presence::error); does not connect yet.
    death_notary(broker_options broker, notary_options options);
    ~death_notary() noexcept;
    death_notary(const death_notary&) = delete;
    death_notary& operator=(const death_notary&) = delete;

    /// Connects, checks the lock (throws mqtt_presence::error when another observer holds it, or the broker cannot
    /// be reached) and takes it. `observed_since`: when the observer began watching, for every record.
    void start(time_point observed_since);
    /// One line per change of the notary's own connection and for what a stop could not publish; on the notary's
    /// thread (or stop()'s caller), never on Paho's. Set before start().
    void on_line(std::function<void(const std::string&)> callback) { on_line_ = std::move(callback); }
    /// Queues the client's record after a change. Never blocks.
    void record(const change& c) noexcept;
    /// Publishes what is queued, releases the lock and disconnects, within about 1.5 s even with the broker frozen;
    /// says how many records it could not publish. Idempotent.
    void stop() noexcept;
    /// A round trip on the notary's connection (an UNSUBSCRIBE of a filter nobody holds), so that Paho's receive
    /// thread ends its poll and sees a connection this process added meanwhile (the scanner's). Non-blocking.
    void wake_paho() noexcept;

    /// The lock's topic: the template's parent, never a client's record topic.
    [[nodiscard]] const std::string& lock_topic() const noexcept { return lock_topic_; }
    /// The filter of every record (the template with {client} as +).
    [[nodiscard]] const std::string& filter() const noexcept { return scheme_.filter(); }
    [[nodiscard]] notary_stats stats() const;

    /// The record a client's row and the cause of its latest change make.
    [[nodiscard]] static std::string record_json(const client_status& row, cause why, const std::string& observer,
                                                 time_point observed_since);

private:
    void take_lock_and_publish();
    void publish_loop();
    void publish_batch(std::unique_lock<std::mutex>& lock, std::chrono::milliseconds ack_wait);
    void say_connection_change(std::unique_lock<std::mutex>& lock);
    void say(const std::string& line) noexcept;
    [[nodiscard]] std::string lock_json(bool held) const;

    broker_options broker_;
    notary_options options_;
    topic_scheme scheme_;
    std::string lock_topic_;
    std::unique_ptr<mqtt::async_client> client_;
    std::unique_ptr<reconnect_driver> reconnect_;  // tries after a loss, from the publishing thread
    time_point observed_since_{};

    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::map<std::string, std::string> pending_;  // record topic -> its latest record
    notary_stats stats_;
    bool stopping_ = false;
    bool connected_ = false;      // set by Paho's callbacks (under mutex_), said by the notary's thread
    bool said_connected_ = true;  // what the last line said
    std::string lost_cause_;
    std::function<void(const std::string&)> on_line_;
    std::thread thread_;
};

/// True when some topic matches both filters (+ and # as in MQTT): a filter that would read the other's messages.
[[nodiscard]] bool filters_overlap(const std::string& a, const std::string& b);

}  // namespace mqtt_presence
