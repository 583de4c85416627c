#include <mqtt_presence/service/history_store.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_map>

#include <mqtt_presence/error.hpp>

#include "history_schema.hpp"

#include <sqlite3.h>

namespace mqtt_presence {

using detail::from_ms;
using detail::to_ms;

struct history_store::alert_record {
    std::string kind, client, topic, json;
    std::function<void(std::int64_t)> on_disk;  // sends it: once it is in the outbox, so a restart finds it
    std::int64_t id = 0;                        // its row; set when written
};

struct history_store::item {
    enum class kind : std::uint8_t { change, watch_on, watch_off, alert, delivered, silenced } what = kind::change;
    time_point at;
    change changed;                        // kind::change
    std::unique_ptr<alert_record> alerted;  // kind::alert (a pointer: the queue's items stay small)
    std::int64_t delivered_id = 0;          // kind::delivered
    std::unique_ptr<silence> silenced;      // kind::silenced
};

namespace {
// A client's key in the clients table, viewing strings of a batch that outlives the map.
struct row_key {
    std::string_view topic, client;
    bool operator==(const row_key& o) const noexcept { return topic == o.topic && client == o.client; }
};
struct row_key_hash {
    std::size_t operator()(const row_key& k) const noexcept {
        return std::hash<std::string_view>{}(k.topic) * 31 + std::hash<std::string_view>{}(k.client);
    }
};
}  // namespace

// The writer thread's connection and statements, prepared once.
struct history_store::writer {
    explicit writer(const std::string& path) : db(detail::open_history(path, true)) {}

    void prepare() {
        insert_event = std::make_unique<SQLite::Statement>(
            *db, "INSERT INTO events(observed_ms, time_ms, client, topic, previous, state, stale, cause, epoch, ip, "
                 "retained, session, prev_id, overdue) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
        const std::string columns = "topic, client, state, stale, retained, since_ms, last_seen_ms, last_down_ms, "
                                    "epoch, heartbeat_s, transitions, detail, reason, ip, host, meta, raw, overdue";
        const std::string update = " ON CONFLICT(client, topic) DO UPDATE SET state=excluded.state, "
            "stale=excluded.stale, retained=excluded.retained, since_ms=excluded.since_ms, "
            "last_seen_ms=excluded.last_seen_ms, last_down_ms=excluded.last_down_ms, epoch=excluded.epoch, "
            "heartbeat_s=excluded.heartbeat_s, transitions=excluded.transitions, detail=excluded.detail, "
            "reason=excluded.reason, ip=excluded.ip, host=excluded.host, meta=excluded.meta, raw=excluded.raw, "
            "overdue=excluded.overdue, removed=0";
        upsert_client = std::make_unique<SQLite::Statement>(
            *db, "INSERT INTO clients(" + columns + ", last_event, removed) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0)" +
                     update + ", last_event=excluded.last_event");
        // The rewrite after a gap: rows from the live table, their chains left as they are.
        rewrite_client = std::make_unique<SQLite::Statement>(
            *db, "INSERT INTO clients(" + columns + ", last_event, removed) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,0)" +
                     update);
        remove_client = std::make_unique<SQLite::Statement>(
            *db, "UPDATE clients SET removed=1, last_event=? WHERE client=? AND topic=?");
        last_event = std::make_unique<SQLite::Statement>(
            *db, "SELECT last_event FROM clients WHERE client=? AND topic=?");
        alive = std::make_unique<SQLite::Statement>(*db, "UPDATE sessions SET alive_ms=? WHERE id=?");
        watch_extend = std::make_unique<SQLite::Statement>(*db,
                                                           "UPDATE watch SET to_ms=? WHERE session=? AND from_ms=?");
    }

    void bind_time(SQLite::Statement& s, int at, const std::optional<time_point>& t) {
        if (t) s.bind(at, static_cast<std::int64_t>(to_ms(*t)));
        else s.bind(at);
    }

    // The id of the client's latest event in the file (0: none).
    std::int64_t chain_head(const std::string& topic, const std::string& client) {
        last_event->bindNoCopy(1, client);
        last_event->bindNoCopy(2, topic);
        const std::int64_t id = last_event->executeStep() ? last_event->getColumn(0).getInt64() : 0;
        last_event->reset();
        return id;
    }

    // One events row: event_of(c)'s fields, bound straight from the change without copying its strings, after the
    // client's event `prev` (0: none). Returns its id.
    std::int64_t write_event(const change& c, std::int64_t prev) {
        auto& s = *insert_event;
        const auto& r = c.current;
        s.bind(1, static_cast<std::int64_t>(to_ms(c.at)));
        bind_time(s, 2, time_of(c));
        s.bindNoCopy(3, r.client);
        s.bindNoCopy(4, r.topic);
        if (c.previous) s.bindNoCopy(5, to_string(*c.previous).data());  // static, NUL-terminated names
        else s.bind(5);
        s.bindNoCopy(6, to_string(r.status).data());
        s.bind(7, r.stale ? 1 : 0);
        s.bindNoCopy(8, to_string(cause_of(c)).data());
        if (r.epoch) s.bind(9, static_cast<std::int64_t>(*r.epoch));
        else s.bind(9);
        if (r.ip.empty()) s.bind(10);
        else s.bindNoCopy(10, r.ip);
        s.bind(11, c.live ? 0 : 1);
        s.bind(12, static_cast<std::int64_t>(session));
        if (prev > 0) s.bind(13, prev);
        else s.bind(13);
        s.bind(14, r.overdue ? 1 : 0);
        s.exec();
        s.reset();
        return db->getLastInsertRowid();
    }

    // The client's row; with `head`, also the head of its chain (a change), else the chain stays (a rewrite).
    void write_client(const client_status& r, std::optional<std::int64_t> head) {
        auto& s = head ? *upsert_client : *rewrite_client;
        s.bindNoCopy(1, r.topic);
        s.bindNoCopy(2, r.client);
        s.bindNoCopy(3, to_string(r.status).data());
        s.bind(4, r.stale ? 1 : 0);
        s.bind(5, r.retained ? 1 : 0);
        bind_time(s, 6, r.since);
        bind_time(s, 7, r.last_seen);
        bind_time(s, 8, r.last_down);
        if (r.epoch) s.bind(9, static_cast<std::int64_t>(*r.epoch));
        else s.bind(9);
        if (r.heartbeat) s.bind(10, static_cast<std::int64_t>(r.heartbeat->count()));
        else s.bind(10);
        s.bind(11, static_cast<std::int64_t>(r.transitions));
        s.bindNoCopy(12, r.detail);
        s.bindNoCopy(13, r.reason);
        s.bindNoCopy(14, r.ip);
        s.bindNoCopy(15, r.host);
        s.bindNoCopy(16, r.meta);
        s.bindNoCopy(17, r.raw);
        s.bind(18, r.overdue ? 1 : 0);
        if (head) s.bind(19, *head);
        s.exec();
        s.reset();
    }

    void forget_client(const std::string& topic, const std::string& client, std::int64_t head) {
        remove_client->bind(1, head);
        remove_client->bindNoCopy(2, client);
        remove_client->bindNoCopy(3, topic);
        remove_client->exec();
        remove_client->reset();
    }

    // The open watch interval, if any, now reaches `to`.
    void extend_watch(std::int64_t to) {
        if (!watch_from) return;
        watch_extend->bind(1, static_cast<std::int64_t>(to));
        watch_extend->bind(2, static_cast<std::int64_t>(session));
        watch_extend->bind(3, static_cast<std::int64_t>(*watch_from));
        watch_extend->exec();
        watch_extend->reset();
    }

    // A watch interval opens at `at` (the scanner's sync ended).
    void watch_on(std::int64_t at) {
        extend_watch(at);
        watch_from = at;
        SQLite::Statement open(*db, "INSERT OR REPLACE INTO watch(session, from_ms, to_ms) VALUES(?,?,?)");
        open.bind(1, session);
        open.bind(2, *watch_from);
        open.bind(3, *watch_from);
        open.exec();
    }

    // The open watch interval ends at `at` (the scanner lost its connection).
    void watch_off(std::int64_t at) {
        extend_watch(at);
        watch_from.reset();
    }

    // An alert into the outbox; its row id is set.
    void write_alert(alert_record& r, std::int64_t at) {
        SQLite::Statement a(*db, "INSERT INTO alerts(time_ms, kind, client, topic, json) VALUES(?,?,?,?,?)");
        a.bind(1, at);
        a.bind(2, r.kind);
        if (r.client.empty()) a.bind(3);
        else a.bind(3, r.client);
        if (r.topic.empty()) a.bind(4);
        else a.bind(4, r.topic);
        a.bind(5, r.json);
        a.exec();
        r.id = db->getLastInsertRowid();
    }

    void write_silence(const silence& s) {
        SQLite::Statement w(*db, "INSERT OR REPLACE INTO silences(id, target, reason, by, from_ms, until_ms, ended_ms) "
                                 "VALUES(?,?,?,?,?,?,?)");
        w.bind(1, s.id);
        w.bind(2, s.target);
        w.bind(3, s.reason);
        w.bind(4, s.by);
        w.bind(5, static_cast<std::int64_t>(to_ms(s.from)));
        w.bind(6, static_cast<std::int64_t>(to_ms(s.until)));
        if (s.ended) w.bind(7, static_cast<std::int64_t>(to_ms(*s.ended)));
        else w.bind(7);
        w.exec();
    }

    void write_delivered(std::int64_t id, std::int64_t at) {
        SQLite::Statement d(*db, "UPDATE alerts SET delivered_ms=? WHERE id=?");
        d.bind(1, at);
        d.bind(2, id);
        d.exec();
    }

    // Changes were dropped: the time since the first of them was not watched after all.
    void write_gap(std::int64_t from, std::int64_t to, std::uint64_t dropped) {
        SQLite::Statement gap(*db, "INSERT INTO gaps(from_ms, to_ms, dropped) VALUES(?,?,?)");
        gap.bind(1, from);
        gap.bind(2, to);
        gap.bind(3, static_cast<std::int64_t>(dropped));
        gap.exec();
    }

    // Every commit: watched up to now, the session alive; the last one ends the session.
    void close_batch(std::int64_t now, bool last) {
        extend_watch(now);
        alive->bind(1, now);
        alive->bind(2, session);
        alive->exec();
        alive->reset();
        if (!last) return;
        SQLite::Statement end(*db, "UPDATE sessions SET ended_ms=? WHERE id=?");
        end.bind(1, now);
        end.bind(2, session);
        end.exec();
    }

    // Statements left mid-way by a failed batch (reset() would throw the error again).
    void reset_statements() noexcept {
        for (auto* st : {insert_event.get(), upsert_client.get(), rewrite_client.get(), remove_client.get(),
                         last_event.get(), alive.get(), watch_extend.get()})
            st->tryReset();
    }

    // SQLite's count of the page cache's memory for this connection.
    [[nodiscard]] std::uint64_t cache_bytes() const {
        int current = 0, highwater = 0;
        if (sqlite3_db_status(db->getHandle(), SQLITE_DBSTATUS_CACHE_USED, &current, &highwater, 0) != SQLITE_OK)
            return 0;
        return static_cast<std::uint64_t>(current);
    }

    std::unique_ptr<SQLite::Database> db;
    std::unique_ptr<SQLite::Statement> insert_event, upsert_client, rewrite_client, remove_client, last_event, alive,
        watch_extend;
    std::int64_t session = 0;
    std::optional<std::int64_t> watch_from;  // the open watch interval's start (ms)
};

history_store::history_store(history_options options) : options_(std::move(options)) {
    if (options_.queue_limit == 0) throw error("the history queue needs room for at least one change");
    // The lock before SQLite touches the file: a second writer must not even migrate it. flock locks are apart from
    // SQLite's POSIX locks, and this descriptor stays open until SQLite's connection is closed (closing another
    // descriptor of the file would drop SQLite's POSIX locks).
    lock_fd_ = ::open(options_.path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd_ < 0)
        throw error("cannot open the history file " + options_.path + ": " + std::strerror(errno));
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
        const int e = errno;
        ::close(lock_fd_);
        lock_fd_ = -1;
        if (e == EWOULDBLOCK)
            throw history_locked("the history " + options_.path + " is in use by another mqtt-presence-scanner serve "
                                 "(one writer per file); stop it, or give this one another --db");
        throw error("cannot lock the history file " + options_.path + ": " + std::strerror(e));
    }
    struct stat st {};
    if (::fstat(lock_fd_, &st) == 0) {
        inode_ = static_cast<std::uint64_t>(st.st_ino);
        device_ = static_cast<std::uint64_t>(st.st_dev);
    }
    try {
        writer_ = std::make_unique<writer>(options_.path);
    } catch (...) {
        ::close(lock_fd_);
        lock_fd_ = -1;
        throw;
    }
    if (options_.max_bytes > 0) {
        const auto page = writer_->db->execAndGet("PRAGMA page_size").getInt64();
        writer_->db->execAndGet("PRAGMA max_page_count=" +
                                std::to_string(std::max<std::uint64_t>(1, options_.max_bytes / static_cast<std::uint64_t>(page))));
    }
}

history_store::~history_store() noexcept {
    end_session();
    writer_.reset();  // SQLite's connection first: then the flock's descriptor can close
    if (lock_fd_ >= 0) ::close(lock_fd_);
}

// The file the service writes is still the one it opened: deleted or replaced, the history goes nowhere a reader
// finds it (SQLite would go on writing the unlinked inode without an error).
void history_store::check_file() {
    struct stat st {};
    std::string problem;
    if (::stat(options_.path.c_str(), &st) != 0)
        problem = "the history file " + options_.path + " was deleted under the service; changes go to an unlinked "
                  "file that nobody can read (restart the service to write a new one)";
    else if (static_cast<std::uint64_t>(st.st_ino) != inode_ || static_cast<std::uint64_t>(st.st_dev) != device_)
        problem = "the history file " + options_.path + " was replaced under the service; it writes the file it "
                  "opened, which is no longer at that path (restart the service)";
    if (problem.empty()) return;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (file_gone_) return;  // said once; it stays failing until a restart
        file_gone_ = true;
    }
    failed(problem);
}

void history_store::failed(const std::string& why) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stats_.failing = true;
        stats_.last_error = why;
        stats_.last_error_at = clock::now();
    }
    warn("history store: " + why);
}

void history_store::for_each_current_row(const std::function<void(const client_status&)>& visit) const {
    try {
        SQLite::Statement q(*writer_->db, detail::current_rows_sql);
        while (q.executeStep()) visit(detail::read_client_row(q));
    } catch (const SQLite::Exception& e) {
        throw error("cannot read the history file " + options_.path + ": " + e.what());
    }
}

void history_store::begin_session(const std::string& broker, const std::string& topics, const std::string& observer,
                                  table_source table, warning_sink warn) {
    if (thread_.joinable()) throw error("a history session is already running");
    table_ = std::move(table);
    warn_ = std::move(warn);
    try {
        writer_->prepare();
        const auto now = to_ms(clock::now());
        SQLite::Statement s(*writer_->db, "INSERT INTO sessions(started_ms, alive_ms, broker, topics, observer) "
                                          "VALUES(?,?,?,?,?)");
        s.bind(1, static_cast<std::int64_t>(now));
        s.bind(2, static_cast<std::int64_t>(now));
        s.bind(3, broker);
        s.bind(4, topics);
        s.bind(5, observer);
        s.exec();
        writer_->session = writer_->db->getLastInsertRowid();
    } catch (const SQLite::Exception& e) {
        throw error("cannot write the history file " + options_.path + ": " + e.what());
    }
    prune(clock::now());
    stopping_ = false;
    stats_.writer_alive = std::chrono::steady_clock::now();
    thread_ = std::thread([this] { writer_loop(); });
}

bool history_store::record(const change& c) noexcept {
    const auto observed = c.at;
    try {
        bool dropped = false;
        bool wake = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            ++stats_.recorded;
            if (queued_changes_ + retrying_ >= options_.queue_limit) {
                ++stats_.dropped;
                if (!first_drop_) first_drop_ = observed;
                dropped = true;
            } else {
                queue_.push_back(item{item::kind::change, observed, c, nullptr, 0, nullptr});
                ++queued_changes_;
                wake = queue_.size() == 1;
            }
        }
        if (wake) cv_.notify_one();
        return !dropped;
    } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        ++stats_.dropped;
        if (!first_drop_) first_drop_ = observed;
        return false;
    }
}

void history_store::alert_delivered(std::int64_t id, time_point at) noexcept {
    try {
        item it{item::kind::delivered, at, {}, nullptr, id, nullptr};
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(std::move(it));
    } catch (...) {
        // out of memory: a restart delivers it again
    }
    cv_.notify_one();
}

void history_store::record_silence(const silence& s) noexcept {
    try {
        item it{item::kind::silenced, s.from, {}, nullptr, 0, std::make_unique<silence>(s)};
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(std::move(it));
    } catch (...) {
        // out of memory: the silence holds until a restart
    }
    cv_.notify_one();
}

void history_store::record_alert(std::string kind, std::string client, std::string topic, std::string json,
                                 time_point at, std::function<void(std::int64_t)> on_disk) noexcept {
    try {
        item it{item::kind::alert, at, {},
                std::make_unique<alert_record>(alert_record{std::move(kind), std::move(client), std::move(topic),
                                                            std::move(json), std::move(on_disk), 0}),
                0, nullptr};
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(std::move(it));
    } catch (...) {
        // out of memory: the alert was still sent; a restart may send a "down" again
    }
    cv_.notify_one();
}

void history_store::watching(bool on, time_point at) noexcept {
    try {
        std::lock_guard<std::mutex> lock(mutex_);
        queue_.push_back(item{on ? item::kind::watch_on : item::kind::watch_off, at, {}, nullptr, 0, nullptr});
    } catch (...) {
        // out of memory: the interval stays open until the next one, a few ms more of "watched"
    }
    cv_.notify_one();
}

history_stats history_store::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto s = stats_;
    s.queued = retrying_ + queued_changes_;
    return s;
}

void history_store::warn(const std::string& text) {
    const auto now = std::chrono::steady_clock::now();
    if (!warn_ || now - last_warning_ < std::chrono::seconds(1)) return;
    last_warning_ = now;
    try {
        warn_(text);
    } catch (...) {
        // a warning that cannot be shown
    }
}

std::uint64_t history_store::prune(time_point now) {
    // Event ids grow with time: delete from the oldest in chunks, so a large prune never holds the writer long.
    std::uint64_t deleted = 0;
    try {
        const auto cutoff = static_cast<std::int64_t>(to_ms(now - options_.keep));
        SQLite::Statement chunk(*writer_->db,
                                "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT 10000) "
                                "AND observed_ms < ?");
        for (;;) {
            chunk.bind(1, cutoff);
            const int n = chunk.exec();
            chunk.reset();
            deleted += static_cast<std::uint64_t>(n);
            if (n < 10000) break;
        }
        SQLite::Statement old(*writer_->db, "DELETE FROM watch WHERE to_ms < ?");
        old.bind(1, cutoff);
        old.exec();
        SQLite::Statement gaps(*writer_->db, "DELETE FROM gaps WHERE to_ms < ?");
        gaps.bind(1, cutoff);
        gaps.exec();
    } catch (const SQLite::Exception& e) {
        warn("history store: pruning failed: " + std::string(e.what()));
    }
    return deleted;
}

// What the writer took from the queue besides the items: the gap dropped changes left, and whether it is the last.
struct history_store::batch_info {
    std::optional<time_point> gap_from;
    std::uint64_t gap_dropped = 0;
    bool last = false;
};

void history_store::writer_loop() {
    auto last_prune = std::chrono::steady_clock::now();
    std::vector<item> batch;
    for (;;) {
        const auto info = gather_batch(batch);
        const auto now = to_ms(clock::now());
        try {
            std::vector<committed> done;
            const auto changes = write_batch(batch, info, now, done);
            after_commit(batch, info, changes, done);
            batch.clear();
        } catch (const std::exception& e) {
            if (!batch_failed(batch, info, e.what())) return;
            continue;
        }
        if (info.last) return;
        check_file();
        if (std::chrono::steady_clock::now() - last_prune > std::chrono::minutes(10)) {
            prune(clock::now());
            last_prune = std::chrono::steady_clock::now();
        }
    }
}

// Sleeps until there is something to write, then gathers for up to one batch interval. A batch that failed goes
// first, and what joins it is held for the retry too.
history_store::batch_info history_store::gather_batch(std::vector<item>& batch) {
    std::unique_lock<std::mutex> lock(mutex_);
    stats_.writer_alive = std::chrono::steady_clock::now();
    cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_ || !queue_.empty(); });
    if (!stopping_ && !queue_.empty()) cv_.wait_for(lock, options_.batch_interval, [this] { return stopping_; });
    if (batch.empty()) {
        batch.swap(queue_);
    } else {
        batch.insert(batch.end(), std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
        queue_.clear();
        retrying_ += queued_changes_;
    }
    queued_changes_ = 0;
    return batch_info{first_drop_, stats_.dropped - dropped_in_gaps_, stopping_};
}

// One transaction: every item, each client's last row, the gap if changes were dropped. Returns the changes written;
// `done` gets what the commit sink is told.
std::size_t history_store::write_batch(std::vector<item>& batch, const batch_info& info, std::int64_t now,
                                       std::vector<committed>& done) {
    auto& w = *writer_;
    SQLite::Transaction tx(*w.db);
    // Each client's last row of the batch (null: removed) and the head of its chain of events.
    struct latest {
        const client_status* row;
        std::int64_t head;
    };
    std::unordered_map<row_key, latest, row_key_hash> last_rows;
    last_rows.reserve(batch.size());
    const bool wanted = !commit_subscribers_.empty();  // who waits for the commit
    if (wanted) done.reserve(batch.size());
    std::size_t changes = 0;
    for (auto& it : batch) {
        const auto at = to_ms(it.at);
        switch (it.what) {
            case item::kind::change: {
                const auto& row = it.changed.current;
                auto [entry, first] = last_rows.try_emplace(row_key{row.topic, row.client}, latest{nullptr, 0});
                if (first) entry->second.head = w.chain_head(row.topic, row.client);
                entry->second.head = w.write_event(it.changed, entry->second.head);
                if (wanted) done.push_back(committed{entry->second.head, &it.changed});
                ++changes;
                entry->second.row = it.changed.kind == change_kind::removed ? nullptr : &row;
                break;
            }
            case item::kind::watch_on: w.watch_on(at); break;
            case item::kind::watch_off: w.watch_off(at); break;
            case item::kind::alert: w.write_alert(*it.alerted, at); break;
            case item::kind::delivered: w.write_delivered(it.delivered_id, at); break;
            case item::kind::silenced: w.write_silence(*it.silenced); break;
        }
    }
    for (const auto& [key, client] : last_rows) {
        if (client.row) w.write_client(*client.row, client.head);
        else w.forget_client(std::string(key.topic), std::string(key.client), client.head);
    }
    if (info.gap_from) {
        // The clients table is rewritten from the live table.
        w.write_gap(to_ms(*info.gap_from), now, info.gap_dropped);
        if (table_) {
            w.db->exec("UPDATE clients SET removed=1");
            table_([&w](const client_status& row) { w.write_client(row, std::nullopt); });
        }
    }
    w.close_batch(now, info.last);
    tx.commit();
    return changes;
}

// After a commit: the counters, then who waits for what is on disk (alerts to send, the live feed).
void history_store::after_commit(std::vector<item>& batch, const batch_info& info, std::size_t changes,
                                 const std::vector<committed>& done) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stats_.written += changes;
        ++stats_.batches;
        stats_.failing = file_gone_;
        stats_.last_commit_at = clock::now();
        stats_.cache_bytes = writer_->cache_bytes();
        retrying_ = 0;
        if (info.gap_from) {
            first_drop_.reset();
            dropped_in_gaps_ += info.gap_dropped;
        }
    }
    for (auto& it : batch) {
        if (!it.alerted || !it.alerted->on_disk) continue;
        try {
            it.alerted->on_disk(it.alerted->id);
        } catch (...) {
            // the callback's own failure: the record is on disk all the same
        }
    }
    if (!done.empty()) commit_subscribers_.notify(done);  // a listener that fails does not stop the history
    if (info.gap_from)
        warn("history store: " + std::to_string(info.gap_dropped) + " changes dropped (the disk could not keep "
             "up); the history has a gap, recorded as not watched; the current rows were rewritten");
}

// The batch is held for the next try, a second later; the queue stays bounded while the disk refuses (the oldest
// retries stay, what does not fit is dropped). False when stopping: nothing more can be done.
bool history_store::batch_failed(std::vector<item>& batch, const batch_info& info, const std::string& why) {
    writer_->reset_statements();
    std::size_t held = 0;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        ++stats_.write_errors;
        retrying_ = 0;
        for (const auto& it : batch) retrying_ += it.what == item::kind::change ? 1 : 0;
        held = retrying_;
    }
    failed("cannot write " + options_.path + " (" + why + "); " + std::to_string(held) +
           " changes kept in memory and retried; the live table goes on");
    if (info.last) return false;
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; });
    if (batch.size() > options_.queue_limit) {
        stats_.dropped += batch.size() - options_.queue_limit;
        if (!first_drop_) first_drop_ = batch[options_.queue_limit].at;
        batch.resize(options_.queue_limit);
    }
    return true;
}

void history_store::end_session() noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!thread_.joinable()) return;
        stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

}  // namespace mqtt_presence
