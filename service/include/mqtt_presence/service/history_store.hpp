#pragma once
// history_store: the service's memory, an SQLite file or a PostgreSQL database (history_options::path says which).
// Every change of the table is one row of `events`; the last
// row of every client is kept in `clients`, so a restart restores the table (with its real times of death) before
// the first sync; `watch` holds the intervals the service was connected and synced, so that time nobody watched is
// reported as unknown, never as up or down.
//
// Writes go through a bounded queue to one writer thread that commits a batch per transaction at most
// `batch_interval` apart (SQLite: WAL mode, synchronous=NORMAL: a kill -9 loses at most the batch being written, the
// file stays consistent; PostgreSQL: a batch's events in one COPY). record() never waits on the disk. When the queue is full, changes are dropped, counted, and
// the time they cover recorded as a gap; the `clients` table is then rewritten from the live table.
// A write that fails (a full disk, a database that went away) is retried, with a warning; the live table goes on
// meanwhile, and the changes wait in the queue up to its bound.
//
// The history carries a schema version (SQLite: an application id and PRAGMA user_version; PostgreSQL: the
// mqtt_presence schema's version table): an older one is migrated, a newer one is refused with a clear error.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <mqtt_presence/connection_table.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/expectation.hpp>
#include <mqtt_presence/service/history_event.hpp>
#include <mqtt_presence/service/silences.hpp>
#include <mqtt_presence/service/subscribers.hpp>

namespace mqtt_presence {

struct history_options {
    /// The SQLite file (created if missing), or a PostgreSQL database: a postgresql:// URI or libpq's key=value
    /// string (its password from PGPASSWORD, PGPASSFILE or ~/.pgpass, never in the string).
    std::string path;
    std::chrono::milliseconds keep = std::chrono::hours(24 * 30);  ///< events older than this are pruned
    std::size_t queue_limit = 1u << 20;                         ///< changes waiting for the disk, at most
    std::chrono::milliseconds batch_interval{100};              ///< a commit at least this often while busy
    std::uint64_t max_bytes = 0;  ///< a cap on the file's size (0: none); beyond it writes fail as on a full disk
    /// How long end_session() waits for the last batch before it interrupts the database call that holds it (a
    /// server that stopped answering would hold it for ever; systemd's stop allows 15 s).
    std::chrono::milliseconds stop_wait = std::chrono::seconds(10);
};

struct history_stats {
    std::uint64_t recorded = 0;      ///< changes handed to record()
    std::uint64_t written = 0;       ///< changes committed to the file
    std::uint64_t dropped = 0;       ///< changes lost because the queue was full (each counted, the gap recorded)
    std::uint64_t batches = 0;       ///< transactions committed
    std::uint64_t write_errors = 0;  ///< failed commits (retried)
    std::size_t queued = 0;          ///< changes waiting now (queued, or held for a retry)
    bool failing = false;            ///< the last commit failed (the file cannot be written now)
    std::string last_error;          ///< why the last failed commit failed, or what is wrong with the file; "" if none
    std::optional<time_point> last_error_at;
    std::optional<time_point> last_commit_at;
    /// Memory of the writer's page cache (SQLite's own count, after the last commit): grows with the file up to
    /// 64 MiB (PRAGMA cache_size), so the service's RSS does too.
    std::uint64_t cache_bytes = 0;
    /// Another writer took the history while this one could not write (PostgreSQL: its lock went with a lost
    /// connection, and a follower took it): this store writes no more, and its service must stop.
    bool superseded = false;
    /// The writer thread last went round its loop (at least once a second while it lives and is not stuck).
    std::chrono::steady_clock::time_point writer_alive{};
    /// How long the writer has been inside one round (a database call that does not come back: a server that
    /// stopped answering) while changes wait; 0 when it is not. From `stuck_after` on it is `failing`, and says so.
    std::chrono::milliseconds unanswered{0};
    static constexpr std::chrono::seconds stuck_after{5};
};

/// Another process (or another store in this one) writes this history: two writers would interleave sessions and
/// release each other's state. Any path to the same file is the same file; on PostgreSQL, a session advisory lock
/// on the writer's connection is the writer's.
class history_locked : public error {
public:
    using error::error;
};

/// Whether a history location (history_options::path) is a PostgreSQL database rather than an SQLite file.
[[nodiscard]] bool history_is_postgresql(const std::string& where) noexcept;
/// Whether a PostgreSQL location carries a password (user:password@ in a URI, password= in key=value form): never
/// take one from the command line, where every user of the machine can read it.
[[nodiscard]] bool history_location_has_password(const std::string& where);

class history_store {
public:
    /// The schema this binary writes.
    static constexpr int schema_version = 6;

    /// Calls `visit` with every row of the live table (scanner::for_each_sorted): how the store rewrites its
    /// `clients` table after it had to drop changes.
    using table_source = std::function<void(const std::function<void(const client_status&)>& visit)>;
    /// The cadences learned (--expect auto) since a time (Unix ms; 0: all): scanner::cadences. The writer asks every
    /// `cadence_interval` and at the end of the session, and keeps them for the next start.
    using cadence_source = std::function<std::vector<learned_cadence>(std::int64_t since_unix_ms)>;
    /// How often the writer asks its cadence_source for what was learned since it last asked.
    static constexpr std::chrono::seconds cadence_interval{60};
    /// A change as committed: its event id in the file (ids grow with time) and the change itself.
    struct committed {
        std::int64_t id;
        const change* what;
    };
    /// Called on the writer thread after every commit with the changes it wrote, in order (a live feed with ids a
    /// reader of the file can resume from). The changes live only during the call.
    using commit_sink = std::function<void(const std::vector<committed>&)>;
    /// Receives the store's warnings (a full queue, a failed write), at most one a second, on the writer thread.
    using warning_sink = std::function<void(const std::string&)>;

    /// Opens (creating or migrating) the history, checks a file's pages (PRAGMA quick_check) and takes the one-writer
    /// lock (a file's flock, a database's advisory lock; held until destruction; readers are not affected). Throws
    /// history_locked when another writer holds it, mqtt_presence::error saying what is wrong otherwise.
    explicit history_store(history_options options);
    ~history_store() noexcept;
    history_store(const history_store&) = delete;
    history_store& operator=(const history_store&) = delete;

    /// The last row of every client the file knows (topic filled), one at a time, for scanner::restore() (a million
    /// rows restore in chunks, never all held at once).
    void for_each_current_row(const std::function<void(const client_status&)>& visit) const;
    /// The cadences kept by an earlier session, for scanner::resume_cadences().
    [[nodiscard]] std::vector<learned_cadence> cadences() const;

    /// Starts a session (what the service watches and who it is, for the record) and the writer thread.
    void begin_session(const std::string& broker, const std::string& topics, const std::string& observer,
                       table_source table = {}, warning_sink warn = {}, cadence_source cadences = {});
    /// Calls `sink` on the writer's thread after each commit, with the changes committed, until the handle is
    /// destroyed. Any number of listeners.
    [[nodiscard]] subscription on_commit(commit_sink sink) { return commit_subscribers_.add(std::move(sink)); }
    /// Queues a change (observed at c.at, the table's time for it). Never blocks on the disk; false when the queue is
    /// full (the change is counted as dropped).
    bool record(const change& c) noexcept;
    /// Waits until fewer than `below` changes are queued, at most `most`, and not at all while the writer cannot take
    /// them (not running, failing, or stuck in one round for history_stats::stuck_after: a database that does not
    /// answer). For changes that can wait for the disk because their sender holds them more compactly than the queue
    /// (the removals of a re-sync, which the scanner keeps as rows): a bound on the memory they take here.
    void wait_for_room(std::size_t below, std::chrono::milliseconds most);
    /// Queues an alert (kind, client, topic, its JSON) for the alerts table, the outbox; `on_disk` runs on the writer
    /// thread once it is on disk, with its id there. Never blocks.
    void record_alert(std::string kind, std::string client, std::string topic, std::string json, time_point at,
                      std::function<void(std::int64_t id)> on_disk = {}) noexcept;
    /// A silence set or ended (written whole, by its id): a restart keeps it. Never blocks.
    void record_silence(const silence& s) noexcept;
    /// The alert with this id reached every sink: it leaves the outbox. Never blocks.
    void alert_delivered(std::int64_t id, time_point at) noexcept;
    /// The service became connected and synced (true), or lost the broker (false), at `at`: the intervals it watched.
    void watching(bool on, time_point at) noexcept;
    /// Writes what is queued, closes the session and stops the writer thread. Idempotent. Bounded: a database that
    /// does not answer within options.stop_wait is interrupted; what was not written is counted and said.
    void end_session() noexcept;

    [[nodiscard]] history_stats stats() const;
    /// The history as messages name it: the file, or the database without its password.
    [[nodiscard]] const std::string& path() const noexcept;
    /// Deletes events older than `keep` (the writer does this every few minutes); returns how many.
    std::uint64_t prune(time_point now);

private:
    struct item;
    struct alert_record;
    struct writer;

    struct batch_info;
    static constexpr std::size_t full_batch = 4096;  // changes worth a transaction without waiting for more

    // The writer thread: gathers a batch, writes it in one transaction, tells who waits, or holds it for a retry.
    void writer_loop();
    batch_info gather_batch(std::vector<item>& batch);
    std::size_t write_batch(std::vector<item>& batch, const batch_info& info, std::int64_t now,
                            std::vector<committed>& done);
    void after_commit(std::vector<item>& batch, const batch_info& info, std::size_t changes,
                      const std::vector<committed>& done);
    bool batch_failed(std::vector<item>& batch, const batch_info& info, const std::string& why);
    void warn(const std::string& text);
    void failed(const std::string& why);
    void check_database();
    void ask_cadences(std::vector<item>& batch, bool last);

    bool database_gone_ = false;  // the file deleted or replaced: failing for good (under mutex_)
    history_options options_;
    std::unique_ptr<writer> writer_;  // the writer thread's connection and prepared statements
    table_source table_;
    warning_sink warn_;
    cadence_source cadences_;
    std::int64_t cadences_asked_ms_ = 0;  // when the writer last asked cadences_ (Unix ms; the writer's thread)
    std::chrono::steady_clock::time_point cadences_asked_at_{};
    subscribers<const std::vector<committed>&> commit_subscribers_;

    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::condition_variable room_cv_;  // the writer took the queue (wait_for_room)
    std::chrono::steady_clock::time_point last_take_{};  // when the writer last took the queue
    std::vector<item> queue_;
    history_stats stats_;
    std::size_t queued_changes_ = 0;        // changes in queue_ (it also holds watch marks)
    std::size_t retrying_ = 0;              // changes of a batch that failed, held by the writer for the next try
    std::size_t writing_ = 0;               // changes of the batch being written
    std::uint64_t dropped_in_gaps_ = 0;     // drops already written down as gaps
    std::optional<time_point> first_drop_;  // the gap the dropped changes leave, from here to the next commit
    bool stopping_ = false;
    bool writer_running_ = false;  // a session's writer is in its loop (under mutex_; cv_ tells when it leaves)
    bool interrupted_ = false;  // end_session() cut the writer's call: no more tries
    std::thread thread_;
    std::chrono::steady_clock::time_point last_warning_{};
};

}  // namespace mqtt_presence
