#pragma once
// history_reader: questions asked of a history (a client's transitions, uptime over a window) without a broker,
// while a service may be writing to it (SQLite's WAL, or PostgreSQL, lets readers and the writer go on together).
// Safe from any thread (one connection, one lock).

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <mqtt_presence/expectation.hpp>
#include <mqtt_presence/service/history_event.hpp>
#include <mqtt_presence/service/silences.hpp>
#include <mqtt_presence/service/uptime.hpp>

namespace mqtt_presence {

class history_reader {
public:
    /// Opens an existing history (a file, or a postgresql:// database) to read; throws mqtt_presence::error when it
    /// is missing, not a history, or newer than this binary. With a `bound`, a query the database has not answered
    /// within it is cut (a watchdog thread interrupts the connection; the next query connects anew) and throws
    /// mqtt_presence::error saying so: a server that stopped answering holds no caller for ever. A connection
    /// attempt is bounded by libpq's connect_timeout.
    explicit history_reader(const std::string& path, std::chrono::milliseconds bound = std::chrono::milliseconds(0));
    ~history_reader() noexcept;
    history_reader(const history_reader&) = delete;
    history_reader& operator=(const history_reader&) = delete;
    /// The history as messages name it: the file, or the database without its password.
    [[nodiscard]] const std::string& name() const noexcept;

    /// A client's events observed at or after `since`, newest first; `topic` (if not empty) picks one status topic.
    [[nodiscard]] std::vector<history_event> events_of(const std::string& client, time_point since,
                                                       const std::string& topic = {},
                                                       std::size_t limit = SIZE_MAX) const;
    /// Events with an id above `id`, oldest first, at most `limit` (a live feed's resume).
    [[nodiscard]] std::vector<history_event> events_after(std::int64_t id, std::size_t limit) const;
    /// The latest alerts, newest first, as the JSON each was sent with.
    [[nodiscard]] std::vector<std::string> alerts(std::size_t limit) const;
    /// The silences running at `now` (set before a restart), soonest end first.
    [[nodiscard]] std::vector<silence> silences(time_point now) const;
    /// The outbox: alerts not yet delivered to every sink, oldest first, as (id, JSON), at most `limit`.
    [[nodiscard]] std::vector<std::pair<std::int64_t, std::string>> undelivered_alerts(std::size_t limit) const;
    /// (client, topic) of every client whose latest per-client alert was "down" or "overdue": sent, and not yet
    /// recovered (or back).
    [[nodiscard]] std::vector<std::pair<std::string, std::string>> down_alerted() const;
    /// The last row of every client (topic filled).
    [[nodiscard]] std::vector<client_status> current_rows() const;
    /// The cadences learned (--expect auto) and kept by the service that writes it (scanner::resume_cadences).
    [[nodiscard]] std::vector<learned_cadence> cadences() const;
    /// The intervals a service watched (connected and synced) that overlap [from, to], minus the gaps left by
    /// dropped changes; sorted, disjoint, clipped. `now` closes an interval still open in a running service.
    [[nodiscard]] std::vector<interval> watched(time_point from, time_point to) const;
    /// Uptime figures of every client seen in the window or in the table now, sorted by client then topic.
    [[nodiscard]] std::vector<uptime_figures> uptime(time_point from, time_point to,
                                                     std::chrono::milliseconds flap_interval) const;

    /// For a follower (PostgreSQL): whether a writer holds the history's lock, who, and how long its database connection
    /// has been idle by the server's clock (nullopt while it works, or when that cannot be seen: another role
    /// without pg_read_all_stats). A running writer commits at least once a second. A file's writer is not seen.
    struct writer_activity {
        bool present = false;
        std::optional<std::chrono::milliseconds> idle;
        std::string who;                 ///< how the writer names itself ("mqtt-presence serve on HOST, pid N")
        std::int64_t last_event_id = 0;          ///< the newest event committed
        std::optional<time_point> last_observed;  ///< when it was observed (nullopt: no event yet)
    };
    [[nodiscard]] writer_activity writer() const;
    /// Ends the server connection of the writer that holds the history's lock, e.g. one that stopped moving
    /// (SIGSTOP, a hung host) without letting its connection go; the lock goes with it. False when nobody holds
    /// it, or for a file.
    bool end_writer() const;

private:
    struct connection;
    /// Runs `query` on the connection under the lock; an SQLite error becomes mqtt_presence::error naming the file.
    template <class Query>
    auto locked(Query&& query) const;
    std::unique_ptr<connection> db_;
    mutable std::mutex mutex_;
};

}  // namespace mqtt_presence
