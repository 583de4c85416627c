#pragma once
// history_database: where the history lives, behind one interface with two backends: an SQLite file (the embedded
// default, no set-up) and a PostgreSQL database (libpqxx). Both keep the same tables with the same meaning
// (sessions, watch, gaps, events chained per client, clients, alerts, silences), each with its own versioned
// migrations. The store's writer thread uses one writable connection; each reader opens its own. One connection is
// used by one thread at a time. Private to the service library.

#include <cstdint>
#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <mqtt_presence/connection_table.hpp>
#include <mqtt_presence/expectation.hpp>
#include <mqtt_presence/service/history_event.hpp>
#include <mqtt_presence/service/silences.hpp>

namespace mqtt_presence::detail {

std::int64_t to_ms(time_point t) noexcept;
time_point from_ms(std::int64_t ms) noexcept;
/// A row limit as SQL takes it (SIZE_MAX: no limit).
inline std::int64_t sql_limit(std::size_t limit) noexcept {
    return static_cast<std::int64_t>(std::min<std::size_t>(limit, INT64_MAX));
}
/// libpq's own reading of a PostgreSQL connection string (URI or key=value): the keywords that have a value.
/// Throws mqtt_presence::error when libpq cannot read it.
std::map<std::string, std::string> conninfo(const std::string& where);

/// How a writer names itself to the database (PostgreSQL's application_name), which a follower shows as its leader:
/// "mqtt-presence serve on HOST, pid N".
std::string writer_name();

/// A client's key in the clients table.
struct client_key {
    std::string_view topic, client;
    bool operator==(const client_key& o) const noexcept { return topic == o.topic && client == o.client; }
};

class history_database {
public:
    virtual ~history_database() = default;
    /// How messages name it: the file, or the database (never its password).
    [[nodiscard]] virtual const std::string& name() const noexcept = 0;

    // The writer's side. A batch is one transaction: begin(), the writes, commit() (or rollback() after a failure).
    virtual std::int64_t begin_session(std::int64_t now, const std::string& broker, const std::string& topics,
                                       const std::string& observer) = 0;
    virtual void begin() = 0;
    virtual void commit() = 0;
    virtual void rollback() noexcept = 0;
    /// The head of each client's chain of events (0: none), in the order of `keys`.
    virtual std::vector<std::int64_t> chain_heads(const std::vector<client_key>& keys) = 0;
    /// One events row for a change, after the client's event `prev` (0: none); returns its id (ids grow with time).
    virtual std::int64_t write_event(const change& c, std::int64_t prev, std::int64_t session) = 0;
    /// The client's current row; with `head` the head of its chain too (a change), else the chain stays (a rewrite).
    virtual void write_client(const client_status& r, std::optional<std::int64_t> head) = 0;
    virtual void forget_client(std::string_view topic, std::string_view client, std::int64_t head) = 0;
    /// Every current row marked removed (before the live table rewrites them).
    virtual void forget_all_clients() = 0;
    virtual void open_watch(std::int64_t session, std::int64_t from) = 0;
    virtual void extend_watch(std::int64_t session, std::int64_t from, std::int64_t to) = 0;
    /// An alert into the outbox; returns its id.
    virtual std::int64_t write_alert(const std::string& kind, const std::string& client, const std::string& topic,
                                     const std::string& json, std::int64_t at) = 0;
    virtual void write_silence(const silence& s) = 0;
    virtual void write_delivered(std::int64_t id, std::int64_t at) = 0;
    /// Clients' learned cadences (--expect auto, one per client), replacing those kept before.
    virtual void write_cadences(const std::vector<learned_cadence>& learned) = 0;
    virtual void write_gap(std::int64_t from, std::int64_t to, std::uint64_t dropped) = 0;
    /// The session was alive at `now` (every commit); `ended`: it ends cleanly.
    virtual void session_alive(std::int64_t session, std::int64_t now, bool ended) = 0;
    /// Deletes events observed before `cutoff` (oldest first, in chunks), watch and gap rows that ended before it,
    /// and the cadences of clients no longer current.
    virtual std::uint64_t prune(std::int64_t cutoff) = 0;
    /// Makes a call in progress on another thread fail soon (a database that stopped answering would hold it for
    /// ever): SQLite's sqlite3_interrupt; PostgreSQL's socket shut down (the next use connects anew). Safe from any
    /// thread, without the connection's user's lock.
    virtual void interrupt() noexcept = 0;
    /// What is wrong that no write reports ("" if nothing): a file deleted or replaced under the service.
    [[nodiscard]] virtual std::string problem() { return {}; }
    /// The memory the connection caches pages in (SQLite's count; 0 where the server holds it).
    [[nodiscard]] virtual std::uint64_t cache_bytes() const { return 0; }

    // The readers' side.
    /// The last row of every client not removed (topic filled), one at a time.
    virtual void for_each_current_row(const std::function<void(const client_status&)>& visit) = 0;
    /// A client's events (one topic, or all of its topics with an empty one) observed at or after `since`, walked
    /// down each chain from its head; any order.
    virtual std::vector<history_event> chain_events(const std::string& client, const std::string& topic,
                                                    std::int64_t since) = 0;
    /// Events with an id above `id`, oldest first, at most `limit`.
    virtual std::vector<history_event> events_after(std::int64_t id, std::size_t limit) = 0;
    /// Every event observed in [from, to], by id.
    virtual void for_each_event_in(std::int64_t from, std::int64_t to,
                                   const std::function<void(history_event&&)>& visit) = 0;
    /// The learned cadences kept (topic, client and gaps; rows whose gaps cannot be read are left out).
    virtual std::vector<learned_cadence> cadences() = 0;
    /// The latest alerts' JSON, newest first.
    virtual std::vector<std::string> alerts(std::size_t limit) = 0;
    /// Silences not ended whose end is after `now`, soonest end first.
    virtual std::vector<silence> silences(std::int64_t now) = 0;
    /// The outbox, oldest first: (id, JSON).
    virtual std::vector<std::pair<std::int64_t, std::string>> undelivered_alerts(std::size_t limit) = 0;
    struct client_alert {
        std::string client, topic, kind;
    };
    /// Each (client, topic)'s latest alert of the kinds down, recovered, overdue and back.
    virtual std::vector<client_alert> latest_client_alerts() = 0;
    /// Whether a writer holds the one-writer lock, who, and for how long (ms, by the server's clock) its connection
    /// has been idle: nullopt while it works, or where that cannot be seen. A file's writer is not seen (false).
    struct writer_activity {
        bool present = false;
        std::optional<std::int64_t> idle_ms;
        std::string who;                ///< the writer's own name for itself ("" where not seen)
        std::int64_t last_event_id = 0;  ///< the newest event committed (a follower's mark for its takeover)
        std::optional<std::int64_t> last_observed_ms;  ///< and when it was observed (nullopt: no event yet)
    };
    virtual writer_activity writer() { return {}; }
    /// Ends the server connection of whoever holds the one-writer lock (PostgreSQL: the lock goes with it); false
    /// where nobody holds it, or a file's lock cannot be taken from its holder.
    virtual bool end_writer() { return false; }
    enum class span_table { watch, gaps };
    /// (from, to) of the watch or gap rows that overlap [from, to], by start.
    virtual std::vector<std::pair<std::int64_t, std::int64_t>> spans(span_table table, std::int64_t from,
                                                                     std::int64_t to) = 0;
};

/// Whether `where` names a PostgreSQL database (a postgresql:// or postgres:// URI, or libpq's key=value string)
/// rather than an SQLite file.
[[nodiscard]] bool is_postgresql(std::string_view where) noexcept;

/// Opens the history at `where`: a file (created when `writable`) or a PostgreSQL database. Checks that it holds a
/// history of a schema this binary knows and (writable) creates or migrates it, and takes the one-writer lock
/// (history_locked when another writer holds it). Throws mqtt_presence::error naming the history and the problem.
/// `max_bytes` (SQLite only, 0: none) caps the file's size.
std::unique_ptr<history_database> open_history_database(const std::string& where, bool writable,
                                                        std::uint64_t max_bytes = 0);
std::unique_ptr<history_database> open_sqlite_history(const std::string& path, bool writable,
                                                      std::uint64_t max_bytes);
std::unique_ptr<history_database> open_postgres_history(const std::string& where, bool writable);

}  // namespace mqtt_presence::detail
