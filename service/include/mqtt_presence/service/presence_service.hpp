#pragma once
// presence_service: a scanner that keeps its table in a history and, optionally, testifies as a death notary; what
// `mqtt-presence-scanner serve` runs. It restores the table from the history before the first sync, records every
// change and every interval it watched, and says on one callback when its own connection changes.
//
//   mqtt_presence::service_options o;
//   o.scan.topics = {"sensors/connected/{client}"};
//   o.history.path = "/var/lib/mqtt-presence/history.db";
//   mqtt_presence::presence_service svc(o);       // opens the history (throws on a bad file)
//   svc.on_line([](const std::string& l) { std::cerr << l << "\n"; });
//   svc.start();                                  // connects (throws when the broker cannot be reached)
//   ... svc.table().snapshot(), svc.history().stats() ...
//   svc.stop();
//
// Further front ends (HTTP, alerts) attach to table() and history_path(); the service owns the threads.
//
// A follower (service_options::follower, a PostgreSQL history another serve writes) keeps its own live table from
// MQTT and answers (the dashboard, the API, the history read from the database) but writes nothing, runs no notary,
// Home Assistant discovery or alerts; follow() looks at the leader and takes over in place when it is gone, so the
// table and everything attached to it go on through the takeover.

#include <condition_variable>
#include <functional>
#include <mutex>
#include <atomic>
#include <thread>
#include <vector>
#include <memory>
#include <optional>
#include <string>

#include <mqtt_presence/scanner.hpp>
#include <mqtt_presence/service/alert_engine.hpp>
#include <mqtt_presence/service/alert_sinks.hpp>
#include <mqtt_presence/service/death_notary.hpp>
#include <mqtt_presence/service/ha_discovery.hpp>
#include <mqtt_presence/service/history_reader.hpp>
#include <mqtt_presence/service/history_store.hpp>
#include <mqtt_presence/service/silences.hpp>

namespace mqtt_presence {

namespace detail {
class ha_availability;
class recent_changes;
}

struct service_options {
    scanner_options scan;
    history_options history;
    std::optional<notary_options> notary;  ///< set: publish a retained record per client on every transition
    std::string observer;                  ///< who watches, for the history and the notary; empty: host:db-path
    std::optional<std::string> ha_prefix;  ///< set: Home Assistant discovery configs under this prefix
    std::vector<std::string> ha_exclude;   ///< conventions whose clients Home Assistant already knows: no entity
    std::optional<alert_options> alerts;   ///< set: alert rules (and `sinks` says where alerts go)
    alert_sink_options sinks;
    std::vector<recurring_silence> recurring_silences;  ///< weekly maintenance windows (--silence-every)
    /// Another serve writes this (PostgreSQL) history: start as its follower (see follow()).
    bool follower = false;

    /// Throws mqtt_presence::error: also when the notary's topics would be read back as statuses.
    void validate() const;
};

/// Puts the history's rows back into the scanner's table, a few thousand at a time (a million rows are never held
/// twice, as rows and in the table). Before the scanner starts. Returns how many the scanner's schemes took.
std::size_t restore_table(const history_store& store, scanner& scan);

/// What a follower cannot do (set a silence): the leader writes the history.
class not_leading : public error {
public:
    using error::error;
};

class presence_service {
public:
    /// Validates, opens the history (throws mqtt_presence::error naming the file) and restores the table from it.
    explicit presence_service(service_options options);
    ~presence_service() noexcept;
    presence_service(const presence_service&) = delete;
    presence_service& operator=(const presence_service&) = delete;

    /// One line for each change of the service's own state (connected, synced, lost) and each warning; on the
    /// scanner's delivery thread or the history's writer thread, never on Paho's. Set before start().
    void on_line(std::function<void(const std::string&)> callback);
    /// Also called with the service's own state (connected, synced, lost), on the delivery thread. Set before start().
    /// Any number of listeners, each until its handle is destroyed.
    [[nodiscard]] subscription on_self(std::function<void(const scanner_status&)> callback) {
        return self_subscribers_.add(std::move(callback));
    }
    /// Starts the history session, connects the scanner and, if asked, the notary. Throws mqtt_presence::error
    /// when the broker cannot be reached (call again to retry: what succeeded is kept) or notary_conflict when
    /// another notary holds the template.
    void start();
    /// Everything this role runs has started (a follower that took over may wait for the old leader's notary lock:
    /// start() again tries what did not).
    [[nodiscard]] bool complete() const noexcept;
    /// Delivers what is queued, writes it, releases the notary and disconnects. Idempotent.
    void stop() noexcept;

    /// New alert rules and sinks (nullopt rules: alerts off), e.g. at SIGHUP. The engine is seeded with the table as
    /// it is (no alert for what is already so); the old sinks deliver what they hold. Returns a line saying what
    /// changed. Throws mqtt_presence::error for bad settings (the old ones stay).
    std::string reload_alerts(std::optional<alert_options> rules, alert_sink_options sinks);
    /// Alerts waiting for their receiver (none when alerts are off).
    [[nodiscard]] alert_sinks::backlog alerts_pending() const;

    /// A follower's look at the leader, from the owner's thread every 100 ms or so: takes over (in place: the table,
    /// the dashboard and the API go on) when nobody holds the history (the leader stopped, died, or lost its
    /// database connection), after ending the leader's connection when it has been idle for `stuck_after` (it
    /// stopped moving: SIGSTOP, a hung host). At the takeover it writes the changes its own table saw that the
    /// history lacks (the old leader's last batch), starts the notary, Home Assistant discovery and the alerts
    /// (whose engine is seeded from the history's sent "down"s: a death the old leader had not yet paged is paged
    /// once). True when this service leads (then and ever after). Throws mqtt_presence::error when the database
    /// cannot be asked (also said by leader().problem), or did not answer the look within 2 s (the call is cut: a
    /// frozen server must not hold the owner's thread, its stop and its watchdog).
    bool follow(std::chrono::milliseconds stuck_after = std::chrono::seconds(3));
    [[nodiscard]] bool leading() const noexcept { return leading_; }
    /// What a follower last saw of the leader (for /healthz and /api/info).
    struct leader_view {
        std::string who;                    ///< "mqtt-presence serve on HOST, pid N" ("" when none was seen)
        std::optional<time_point> seen;     ///< when it was last seen holding the history
        std::string problem;                ///< the database could not be asked ("" when it could)
    };
    [[nodiscard]] leader_view leader() const;
    /// Calls `sink` after each commit of this service's history writer, on the writer's thread, until the handle is
    /// destroyed; while following, with each change of its own table (id 0: not in the history), on the delivery
    /// thread.
    [[nodiscard]] subscription on_commit(history_store::commit_sink sink) {
        return commit_subscribers_.add(std::move(sink));
    }

    [[nodiscard]] scanner& table() noexcept { return *scanner_; }
    /// The history's writer: only while leading().
    [[nodiscard]] history_store& history() noexcept { return *store_; }
    /// The writer's figures (a follower's are zero: it writes nothing).
    [[nodiscard]] history_stats history_figures() const;
    /// The history as messages name it: the file, or the database without its password.
    [[nodiscard]] const std::string& history_name() const noexcept { return history_name_; }
    /// The silences (maintenance windows): set and ended through the API, kept in the history.
    [[nodiscard]] silence_book& silences() noexcept { return silences_; }
    /// Sets a silence and writes it to the history. Throws mqtt_presence::error for a bad one.
    silence add_silence(const std::string& target, std::chrono::milliseconds duration, const std::string& reason,
                        const std::string& by);
    /// Ends a running silence (written to the history); nullopt when there is none of that id.
    std::optional<silence> end_silence(const std::string& id);
    [[nodiscard]] death_notary* notary() noexcept { return notary_.get(); }
    [[nodiscard]] const service_options& options() const noexcept { return options_; }
    /// A re-sync's removals (a broker that lost its retained store) are handed to the history while fewer changes
    /// than this wait for its writer; the scanner holds the rest as compact rows.
    static constexpr std::size_t paced_backlog = 16384;
    /// Rows restored from the history at construction.
    [[nodiscard]] std::size_t restored() const noexcept { return restored_; }

private:
    void say(const std::string& line) noexcept;
    void emit(std::vector<alert> alerts) noexcept;  // caller holds alert_mutex_
    bool held_by_silence(alert& a);
    void alert_loop();
    void start_scanner_waking_paho();
    void address(alert& a) const;
    void seed_engine(time_point now);  // caller holds alert_mutex_
    [[nodiscard]] std::unique_ptr<alert_engine> make_engine(const alert_options& rules) const;
    std::shared_ptr<alert_sinks> make_sinks(const alert_sink_options& o);
    void deliver_outbox();
    void restore_silences();
    void name_observer();
    void listen_to_scanner();
    void pace_removal();
    void forward_commits();
    void begin_history_session();
    void lead();
    void start_leading_parts();
    void start_notary();
    void start_alerts();

    service_options options_;
    std::unique_ptr<history_store> store_;  // null while following; set once under role_mutex_
    std::string history_name_;
    subscribers<const std::vector<history_store::committed>&> commit_subscribers_;
    subscription commits_;  // the store's commits, forwarded to commit_subscribers_
    // A follower: its look at the leader (owner's thread), the changes it saw lately, what it last saw.
    std::atomic<bool> leading_{false};
    std::atomic<bool> stopping_{false};  // stop() began: nothing waits for the history any more
    std::mutex role_mutex_;  // the delivery thread's use of store_ against the takeover
    std::unique_ptr<history_reader> follower_reader_;
    unsigned looks_ = 0;  // follow() calls
    std::unique_ptr<detail::recent_changes> recent_;
    mutable std::mutex leader_mutex_;
    leader_view leader_;
    // The notary's records: the delivery thread records each change while it runs; a notary that took over gets
    // the last changes before the takeover and those since, once it runs (under role_mutex_).
    std::vector<change> notary_handover_;
    std::atomic<bool> notary_running_{false};  // it holds its lock and records
    std::unique_ptr<scanner> scanner_;
    std::unique_ptr<death_notary> notary_;
    std::unique_ptr<ha_discovery> ha_;
    std::unique_ptr<detail::ha_availability> ha_online_;  // the entities' availability (service/src)
    bool ha_published_ = false;  // the configs of the first sync's rows went out
    std::function<void(const std::string&)> on_line_;
    subscribers<const scanner_status&> self_subscribers_;
    std::size_t restored_ = 0;
    silence_book silences_;
    std::size_t unseen_ = 0;  // changes learned at a sync that happened while nobody watched (delivery thread)
    bool started_ = false;          // the history's session is open
    bool ha_online_started_ = false;  // Home Assistant's availability connection
    bool scanner_started_ = false;  // the scanner's first connection succeeded (Paho reconnects after that)

    // Alerts: the engine is fed on the delivery thread (changes, the service's own state) and by a timer thread.
    std::unique_ptr<alert_engine> engine_;
    std::shared_ptr<alert_sinks> sinks_;  // shared: an alert on its way to the disk keeps its sinks (a reload)
    mutable std::mutex alert_mutex_;
    bool watching_ = false;
    std::condition_variable alert_cv_;
    bool engine_seeded_ = false;  // the first sync's rows are what is, not news
    bool alert_stopping_ = false;
    std::thread alert_thread_;
};

}  // namespace mqtt_presence
