// The SQLite backend of the history: one file, WAL mode, one writer (an flock beside SQLite's own locks).
#include "history_database.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include <mqtt_presence/error.hpp>
#include <mqtt_presence/service/history_store.hpp>

namespace mqtt_presence::detail {
namespace {

constexpr int application_id = 0x4d515072;  // "MQPr": an mqtt-presence history, not some other SQLite file

// One step per schema version: migrations[k] brings a file from version k to k + 1. Version 0 is an empty file.
const char* const migrations[] = {
    R"sql(
    CREATE TABLE sessions(
        id INTEGER PRIMARY KEY,
        started_ms INTEGER NOT NULL,
        alive_ms INTEGER NOT NULL,       -- the last commit: a session killed with -9 ended about then
        ended_ms INTEGER,                -- a clean stop
        broker TEXT NOT NULL,
        topics TEXT NOT NULL,
        observer TEXT NOT NULL);
    CREATE TABLE watch(                  -- connected and synced: the times the service saw every change
        session INTEGER NOT NULL,
        from_ms INTEGER NOT NULL,
        to_ms INTEGER NOT NULL,
        PRIMARY KEY(session, from_ms));
    CREATE TABLE gaps(                   -- changes dropped (the disk could not keep up): not watched after all
        from_ms INTEGER NOT NULL,
        to_ms INTEGER NOT NULL,
        dropped INTEGER NOT NULL);
    CREATE TABLE events(
        id INTEGER PRIMARY KEY,
        observed_ms INTEGER NOT NULL,    -- when the service learned of the change
        time_ms INTEGER,                 -- when it happened; NULL: unknown (it happened while nobody watched)
        client TEXT NOT NULL,
        topic TEXT NOT NULL,
        previous TEXT,                   -- NULL: the client was not in the table
        state TEXT NOT NULL,
        stale INTEGER NOT NULL,
        cause TEXT NOT NULL,
        epoch INTEGER,
        ip TEXT,
        retained INTEGER NOT NULL,
        session INTEGER NOT NULL,
        prev_id INTEGER);                -- the client's event before this one: a client's history is a chain
                                         -- from clients.last_event, so no index slows the writes down
    CREATE TABLE clients(                -- the last row of every client: what a restart restores
        client TEXT NOT NULL,
        topic TEXT NOT NULL,
        state TEXT NOT NULL,
        stale INTEGER NOT NULL,
        retained INTEGER NOT NULL,
        since_ms INTEGER,
        last_seen_ms INTEGER,
        last_down_ms INTEGER,
        epoch INTEGER,
        heartbeat_s INTEGER,
        transitions INTEGER NOT NULL,
        detail TEXT NOT NULL,
        reason TEXT NOT NULL,
        ip TEXT NOT NULL,
        host TEXT NOT NULL,
        meta TEXT NOT NULL,
        raw TEXT NOT NULL,
        last_event INTEGER NOT NULL,     -- the head of its chain of events
        removed INTEGER NOT NULL,        -- cleared: no longer restored, its history still reachable
        PRIMARY KEY(client, topic)) WITHOUT ROWID;
    )sql",
    R"sql(
    CREATE TABLE alerts(                 -- every alert the service sent (or tried to): what a restart must not repeat
        id INTEGER PRIMARY KEY,
        time_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        client TEXT,
        topic TEXT,
        json TEXT NOT NULL);
    )sql",
    R"sql(
    -- The alerts table is an outbox: an alert is delivered once every sink took it (a webhook's 2xx); a restart
    -- delivers what is not. Alerts written by older binaries count as delivered.
    ALTER TABLE alerts ADD COLUMN delivered_ms INTEGER;
    UPDATE alerts SET delivered_ms = time_ms;
    CREATE INDEX alerts_undelivered ON alerts(id) WHERE delivered_ms IS NULL;
    )sql",
    R"sql(
    -- Overdue (--expect): connected, but unheard for longer than expected. Its own flag beside stale.
    ALTER TABLE events ADD COLUMN overdue INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE clients ADD COLUMN overdue INTEGER NOT NULL DEFAULT 0;
    )sql",
    R"sql(
    CREATE TABLE silences(               -- maintenance windows: a client's or a group's alerts held for a while
        id TEXT PRIMARY KEY,
        target TEXT NOT NULL,            -- a name or glob, or group:NAME
        reason TEXT NOT NULL,
        by TEXT NOT NULL,
        from_ms INTEGER NOT NULL,
        until_ms INTEGER NOT NULL,
        ended_ms INTEGER) WITHOUT ROWID; -- ended by hand before until_ms
    )sql",
    R"sql(
    CREATE TABLE cadences(               -- what --expect auto learned: the gaps between a client's messages
        topic TEXT NOT NULL,
        client TEXT NOT NULL,
        gaps TEXT NOT NULL,              -- ms, oldest first, comma-separated
        PRIMARY KEY(topic, client)) WITHOUT ROWID;
    )sql",
};
constexpr int known_version = static_cast<int>(sizeof migrations / sizeof migrations[0]);
static_assert(known_version == history_store::schema_version, "a migration per schema version");

bool is_file(const std::string& path) {
    struct stat st{};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// A file: URI for `path`, with the characters a URI gives meaning to escaped.
std::string file_uri(const std::string& path, const char* query) {
    std::string uri = "file:";
    for (const char c : path) {
        if (c == '%' || c == '?' || c == '#') {
            char hex[4];
            std::snprintf(hex, sizeof hex, "%%%02X", static_cast<unsigned char>(c));
            uri += hex;
        } else {
            uri += c;
        }
    }
    return uri + "?" + query;
}

// How a reader opens the history. A WAL file needs its -shm index, which a reader creates when it is missing (the
// service has stopped and removed it). A reader that may not write into the directory (another user than the
// service's) cannot: when no -wal is there either, every change is in the main file, and it is opened immutable
// (no index, no lock: the read takes milliseconds; a service starting meanwhile writes into a -wal it never sees).
std::string reader_uri(const std::string& path) {
    const auto slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    if (is_file(path + "-shm") || ::access(dir.c_str(), W_OK) == 0) return file_uri(path, "mode=ro");
    if (is_file(path + "-wal"))
        throw error("cannot read the history " + path + " as this user: its -wal file has changes and no -shm index "
                    "is there (run as the service's user, or with sudo)");
    return file_uri(path, "immutable=1");
}

// Opens `path` (creating it when `writable`), checks that it is a history file of a schema this binary knows, and
// (writable) creates or migrates the schema.
std::unique_ptr<SQLite::Database> open_file(const std::string& path, bool writable) {
    if (path.empty()) throw error("no history file given (--db FILE)");
    if (!writable && !is_file(path))
        throw error("no history at " + path + " (a service writes one: mqtt-presence-scanner serve --db " + path + ")");
    std::unique_ptr<SQLite::Database> db;
    try {
        // NOMUTEX: each connection is used by one thread at a time (the writer's, or the reader's behind a lock).
        db = writable ? std::make_unique<SQLite::Database>(
                            path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLITE_OPEN_NOMUTEX, 5000)
                      : std::make_unique<SQLite::Database>(
                            reader_uri(path), SQLite::OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, 5000);
        const int app = db->execAndGet("PRAGMA application_id").getInt();
        const int version = db->execAndGet("PRAGMA user_version").getInt();
        const bool empty = db->execAndGet("SELECT count(*) FROM sqlite_master").getInt() == 0;
        if (app != application_id && !(app == 0 && empty))
            throw error(path + " is an SQLite file, but not an mqtt-presence history; give another --db");
        if (version > known_version)
            throw error(path + " has history schema version " + std::to_string(version) + ", newer than this " +
                        "mqtt-presence-scanner knows (" + std::to_string(known_version) +
                        "): use the newer binary that wrote it, or another --db");
        if (!writable) {
            if (version < 1) throw error(path + " holds no history yet");
            return db;
        }
        // A damaged page found now is a clear refusal, not a write that fails hours later (docs/operations.md has
        // the recovery: sqlite3 FILE .recover).
        if (!empty) {
            const auto check = db->execAndGet("PRAGMA quick_check(1)").getString();
            if (check != "ok")
                throw error(path + " is damaged (SQLite's quick_check: " + check.substr(0, 200) +
                            "); recover it with: sqlite3 " + path + " .recover | sqlite3 " + path +
                            ".recovered, then give --db " + path + ".recovered (see docs/operations.md)");
        }
        db->exec("PRAGMA journal_mode=WAL");
        db->exec("PRAGMA synchronous=NORMAL");  // WAL + NORMAL: consistent after a crash; the last commit may be lost
        db->exec("PRAGMA cache_size=-65536");   // 64 MiB: the client index of a large fleet stays in memory
        for (int v = version; v < known_version; ++v) {
            SQLite::Transaction migrate(*db);
            db->exec(migrations[v]);
            db->exec("PRAGMA application_id=" + std::to_string(application_id));
            db->exec("PRAGMA user_version=" + std::to_string(v + 1));
            migrate.commit();
        }
    } catch (const SQLite::Exception& e) {
        throw error("cannot use the history file " + path + ": " + e.what());
    }
    return db;
}

// The flock that makes one writer per file, taken before SQLite touches the file (a second writer must not even
// migrate it). flock locks are apart from SQLite's POSIX locks, and this descriptor stays open until SQLite's
// connection is closed (closing another descriptor of the file would drop SQLite's POSIX locks).
int lock_file(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) throw error("cannot open the history file " + path + ": " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int e = errno;
        ::close(fd);
        if (e == EWOULDBLOCK)
            throw history_locked("the history " + path + " is in use by another mqtt-presence-scanner serve "
                                 "(one writer per file); stop it, or give this one another --db");
        throw error("cannot lock the history file " + path + ": " + std::strerror(e));
    }
    return fd;
}

const char* const current_rows_sql =
    "SELECT topic, client, state, stale, retained, since_ms, last_seen_ms, last_down_ms, epoch, heartbeat_s, "
    "transitions, detail, reason, ip, host, meta, raw, overdue FROM clients WHERE removed=0";

std::optional<time_point> time_column(const SQLite::Column& c) {
    return c.isNull() ? std::nullopt : std::optional<time_point>(from_ms(c.getInt64()));
}

client_status read_client_row(SQLite::Statement& q) {
    client_status r;
    r.topic = q.getColumn(0).getString();
    r.client = q.getColumn(1).getString();
    r.status = parse_state(q.getColumn(2).getString()).value_or(state::unknown);
    r.stale = q.getColumn(3).getInt() != 0;
    r.retained = q.getColumn(4).getInt() != 0;
    r.since = time_column(q.getColumn(5));
    r.last_seen = time_column(q.getColumn(6));
    r.last_down = time_column(q.getColumn(7));
    if (!q.getColumn(8).isNull()) r.epoch = static_cast<std::uint64_t>(q.getColumn(8).getInt64());
    if (!q.getColumn(9).isNull()) r.heartbeat = std::chrono::seconds(q.getColumn(9).getInt64());
    r.transitions = static_cast<std::uint32_t>(q.getColumn(10).getInt64());
    r.detail = q.getColumn(11).getString();
    r.reason = q.getColumn(12).getString();
    r.ip = q.getColumn(13).getString();
    r.host = q.getColumn(14).getString();
    r.meta = q.getColumn(15).getString();
    r.raw = q.getColumn(16).getString();
    r.overdue = q.getColumn(17).getInt() != 0;
    return r;
}

// The columns read_event() reads (more may follow).
const char* const event_columns =
    "SELECT id, observed_ms, time_ms, client, topic, previous, state, stale, cause, epoch, ip, retained, overdue";

history_event read_event(SQLite::Statement& q) {
    history_event e;
    e.id = q.getColumn(0).getInt64();
    e.observed = from_ms(q.getColumn(1).getInt64());
    if (!q.getColumn(2).isNull()) e.time = from_ms(q.getColumn(2).getInt64());
    e.client = q.getColumn(3).getString();
    e.topic = q.getColumn(4).getString();
    if (!q.getColumn(5).isNull()) e.previous = parse_state(q.getColumn(5).getString());
    e.status = parse_state(q.getColumn(6).getString()).value_or(state::unknown);
    e.stale = q.getColumn(7).getInt() != 0;
    e.why = parse_cause(q.getColumn(8).getString()).value_or(cause::unknown);
    if (!q.getColumn(9).isNull()) e.epoch = static_cast<std::uint64_t>(q.getColumn(9).getInt64());
    e.ip = q.getColumn(10).getString();
    e.retained = q.getColumn(11).getInt() != 0;
    e.overdue = q.getColumn(12).getInt() != 0;
    return e;
}

void bind_time(SQLite::Statement& s, int at, const std::optional<time_point>& t) {
    if (t) s.bind(at, static_cast<std::int64_t>(to_ms(*t)));
    else s.bind(at);
}


class sqlite_history final : public history_database {
public:
    sqlite_history(const std::string& path, bool writable, std::uint64_t max_bytes) : path_(path) {
        if (writable) lock_fd_ = lock_file(path);
        try {
            db_ = open_file(path, writable);
            if (writable) {
                remember_file();
                if (max_bytes > 0) cap_size(max_bytes);
            }
        } catch (...) {
            if (lock_fd_ >= 0) ::close(lock_fd_);
            throw;
        }
    }
    ~sqlite_history() override {
        statements_ = {};
        db_.reset();  // SQLite's connection first: then the flock's descriptor can close
        if (lock_fd_ >= 0) ::close(lock_fd_);
    }

    const std::string& name() const noexcept override { return path_; }

    std::int64_t begin_session(std::int64_t now, const std::string& broker, const std::string& topics,
                               const std::string& observer) override {
        prepare();
        SQLite::Statement s(*db_, "INSERT INTO sessions(started_ms, alive_ms, broker, topics, observer) "
                                  "VALUES(?,?,?,?,?)");
        s.bind(1, now);
        s.bind(2, now);
        s.bind(3, broker);
        s.bind(4, topics);
        s.bind(5, observer);
        s.exec();
        return db_->getLastInsertRowid();
    }

    void begin() override { db_->exec("BEGIN"); }
    void commit() override { db_->exec("COMMIT"); }
    void rollback() noexcept override {
        // Statements left mid-way by a failed batch (reset() would throw the error again).
        for (auto* st : {statements_.insert_event.get(), statements_.upsert_client.get(),
                         statements_.rewrite_client.get(), statements_.remove_client.get(),
                         statements_.last_event.get(), statements_.alive.get(), statements_.watch_extend.get(),
                         statements_.upsert_cadence.get()})
            if (st) st->tryReset();
        sqlite3_exec(db_->getHandle(), "ROLLBACK", nullptr, nullptr, nullptr);  // none left open is fine
    }

    std::vector<std::int64_t> chain_heads(const std::vector<client_key>& keys) override {
        std::vector<std::int64_t> heads;
        heads.reserve(keys.size());
        auto& q = *statements_.last_event;
        for (const auto& k : keys) {
            q.bind(1, std::string(k.client));  // (bindNoCopy with a size binds a BLOB, which never equals TEXT)
            q.bind(2, std::string(k.topic));
            heads.push_back(q.executeStep() ? q.getColumn(0).getInt64() : 0);
            q.reset();
        }
        return heads;
    }

    // event_of(c)'s fields, bound straight from the change without copying its strings.
    std::int64_t write_event(const change& c, std::int64_t prev, std::int64_t session) override {
        auto& s = *statements_.insert_event;
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
        s.bind(12, session);
        if (prev > 0) s.bind(13, prev);
        else s.bind(13);
        s.bind(14, r.overdue ? 1 : 0);
        s.exec();
        s.reset();
        return db_->getLastInsertRowid();
    }

    void write_client(const client_status& r, std::optional<std::int64_t> head) override {
        auto& s = head ? *statements_.upsert_client : *statements_.rewrite_client;
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

    void forget_client(std::string_view topic, std::string_view client, std::int64_t head) override {
        auto& s = *statements_.remove_client;
        s.bind(1, head);
        s.bind(2, std::string(client));
        s.bind(3, std::string(topic));
        s.exec();
        s.reset();
    }

    void forget_all_clients() override { db_->exec("UPDATE clients SET removed=1"); }

    void open_watch(std::int64_t session, std::int64_t from) override {
        SQLite::Statement open(*db_, "INSERT OR REPLACE INTO watch(session, from_ms, to_ms) VALUES(?,?,?)");
        open.bind(1, session);
        open.bind(2, from);
        open.bind(3, from);
        open.exec();
    }

    void extend_watch(std::int64_t session, std::int64_t from, std::int64_t to) override {
        auto& s = *statements_.watch_extend;
        s.bind(1, to);
        s.bind(2, session);
        s.bind(3, from);
        s.exec();
        s.reset();
    }

    std::int64_t write_alert(const std::string& kind, const std::string& client, const std::string& topic,
                             const std::string& json, std::int64_t at) override {
        SQLite::Statement a(*db_, "INSERT INTO alerts(time_ms, kind, client, topic, json) VALUES(?,?,?,?,?)");
        a.bind(1, at);
        a.bind(2, kind);
        if (client.empty()) a.bind(3);
        else a.bind(3, client);
        if (topic.empty()) a.bind(4);
        else a.bind(4, topic);
        a.bind(5, json);
        a.exec();
        return db_->getLastInsertRowid();
    }

    void write_silence(const silence& s) override {
        SQLite::Statement w(*db_, "INSERT OR REPLACE INTO silences(id, target, reason, by, from_ms, until_ms, "
                                  "ended_ms) VALUES(?,?,?,?,?,?,?)");
        w.bind(1, s.id);
        w.bind(2, s.target);
        w.bind(3, s.reason);
        w.bind(4, s.by);
        w.bind(5, static_cast<std::int64_t>(to_ms(s.from)));
        w.bind(6, static_cast<std::int64_t>(to_ms(s.until)));
        bind_time(w, 7, s.ended);
        w.exec();
    }

    void write_cadences(const std::vector<learned_cadence>& learned) override {
        auto& s = *statements_.upsert_cadence;
        for (const auto& c : learned) {
            s.bind(1, c.topic);
            s.bind(2, c.client);
            s.bind(3, c.learned.gaps_text());
            s.exec();
            s.reset();
        }
    }

    std::vector<learned_cadence> cadences() override {
        std::vector<learned_cadence> out;
        SQLite::Statement q(*db_, "SELECT topic, client, gaps FROM cadences");
        while (q.executeStep())
            if (const auto gaps = cadence::from_gaps_text(q.getColumn(2).getString()))
                out.push_back(learned_cadence{q.getColumn(0).getString(), q.getColumn(1).getString(), 0, *gaps});
        return out;
    }

    void write_delivered(std::int64_t id, std::int64_t at) override {
        SQLite::Statement d(*db_, "UPDATE alerts SET delivered_ms=? WHERE id=?");
        d.bind(1, at);
        d.bind(2, id);
        d.exec();
    }

    void write_gap(std::int64_t from, std::int64_t to, std::uint64_t dropped) override {
        SQLite::Statement gap(*db_, "INSERT INTO gaps(from_ms, to_ms, dropped) VALUES(?,?,?)");
        gap.bind(1, from);
        gap.bind(2, to);
        gap.bind(3, static_cast<std::int64_t>(dropped));
        gap.exec();
    }

    void session_alive(std::int64_t session, std::int64_t now, bool ended) override {
        auto& s = *statements_.alive;
        s.bind(1, now);
        s.bind(2, session);
        s.exec();
        s.reset();
        if (!ended) return;
        SQLite::Statement end(*db_, "UPDATE sessions SET ended_ms=? WHERE id=?");
        end.bind(1, now);
        end.bind(2, session);
        end.exec();
    }

    std::uint64_t prune(std::int64_t cutoff) override {
        std::uint64_t deleted = 0;
        // The newest event always stays: SQLite gives a new row the largest id + 1, so an emptied table would hand
        // out ids again that the clients' chains still point to.
        SQLite::Statement chunk(*db_, "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT 10000) "
                                      "AND observed_ms < ? AND id < (SELECT max(id) FROM events)");
        for (;;) {
            chunk.bind(1, cutoff);
            const int n = chunk.exec();
            chunk.reset();
            deleted += static_cast<std::uint64_t>(n);
            if (n < 10000) break;
        }
        for (const char* sql : {"DELETE FROM watch WHERE to_ms < ?", "DELETE FROM gaps WHERE to_ms < ?"}) {
            SQLite::Statement old(*db_, sql);
            old.bind(1, cutoff);
            old.exec();
        }
        db_->exec("DELETE FROM cadences WHERE NOT EXISTS (SELECT 1 FROM clients c WHERE c.client=cadences.client "
                  "AND c.topic=cadences.topic AND c.removed=0)");
        return deleted;
    }

    void interrupt() noexcept override { sqlite3_interrupt(db_->getHandle()); }

    // The file the service writes is still the one it opened: deleted or replaced, the history goes nowhere a
    // reader finds it (SQLite would go on writing the unlinked inode without an error).
    std::string problem() override {
        struct stat st {};
        if (::stat(path_.c_str(), &st) != 0)
            return "the history file " + path_ + " was deleted under the service; changes go to an unlinked file "
                   "that nobody can read (restart the service to write a new one)";
        if (static_cast<std::uint64_t>(st.st_ino) != inode_ || static_cast<std::uint64_t>(st.st_dev) != device_)
            return "the history file " + path_ + " was replaced under the service; it writes the file it opened, "
                   "which is no longer at that path (restart the service)";
        return {};
    }

    std::uint64_t cache_bytes() const override {
        int current = 0, highwater = 0;
        if (sqlite3_db_status(db_->getHandle(), SQLITE_DBSTATUS_CACHE_USED, &current, &highwater, 0) != SQLITE_OK)
            return 0;
        return static_cast<std::uint64_t>(current);
    }

    void for_each_current_row(const std::function<void(const client_status&)>& visit) override {
        SQLite::Statement q(*db_, current_rows_sql);
        while (q.executeStep()) visit(read_client_row(q));
    }

    std::vector<history_event> chain_events(const std::string& client, const std::string& topic,
                                            std::int64_t since) override {
        std::vector<history_event> events;
        SQLite::Statement heads(*db_, std::string("SELECT last_event FROM clients WHERE client=?") +
                                          (topic.empty() ? "" : " AND topic=?"));
        heads.bind(1, client);
        if (!topic.empty()) heads.bind(2, topic);
        std::vector<std::int64_t> next;
        while (heads.executeStep()) next.push_back(heads.getColumn(0).getInt64());
        SQLite::Statement step(*db_, std::string(event_columns) + ", prev_id FROM events WHERE id=?");
        for (auto id : next) {
            while (id > 0) {
                step.bind(1, id);
                if (!step.executeStep() || step.getColumn(1).getInt64() < since) {  // pruned, or older
                    step.reset();
                    break;
                }
                events.push_back(read_event(step));
                const auto prev = step.getColumn(13).isNull() ? 0 : step.getColumn(13).getInt64();
                id = prev < id ? prev : 0;  // a chain only goes back in time (a damaged one ends here)
                step.reset();
            }
        }
        return events;
    }

    std::vector<history_event> events_after(std::int64_t id, std::size_t limit) override {
        std::vector<history_event> out;
        SQLite::Statement q(*db_, std::string(event_columns) + " FROM events WHERE id > ? ORDER BY id LIMIT ?");
        q.bind(1, id);
        q.bind(2, sql_limit(limit));
        while (q.executeStep()) out.push_back(read_event(q));
        return out;
    }

    void for_each_event_in(std::int64_t from, std::int64_t to,
                           const std::function<void(history_event&&)>& visit) override {
        SQLite::Statement q(*db_, std::string(event_columns) + " FROM events WHERE id >= ? AND observed_ms <= ? "
                                                               "ORDER BY id");
        q.bind(1, first_id_at(from));
        q.bind(2, to);
        while (q.executeStep()) visit(read_event(q));
    }

    std::vector<std::string> alerts(std::size_t limit) override {
        std::vector<std::string> out;
        SQLite::Statement q(*db_, "SELECT json FROM alerts ORDER BY id DESC LIMIT ?");
        q.bind(1, sql_limit(limit));
        while (q.executeStep()) out.push_back(q.getColumn(0).getString());
        return out;
    }

    std::vector<silence> silences(std::int64_t now) override {
        std::vector<silence> out;
        SQLite::Statement q(*db_, "SELECT id, target, reason, by, from_ms, until_ms FROM silences WHERE ended_ms IS "
                                  "NULL AND until_ms > ? ORDER BY until_ms");
        q.bind(1, now);
        while (q.executeStep())
            out.push_back(silence{q.getColumn(0).getString(), q.getColumn(1).getString(), q.getColumn(2).getString(),
                                  q.getColumn(3).getString(), from_ms(q.getColumn(4).getInt64()),
                                  from_ms(q.getColumn(5).getInt64()), std::nullopt});
        return out;
    }

    std::vector<std::pair<std::int64_t, std::string>> undelivered_alerts(std::size_t limit) override {
        std::vector<std::pair<std::int64_t, std::string>> out;
        SQLite::Statement q(*db_, "SELECT id, json FROM alerts WHERE delivered_ms IS NULL ORDER BY id LIMIT ?");
        q.bind(1, sql_limit(limit));
        while (q.executeStep()) out.emplace_back(q.getColumn(0).getInt64(), q.getColumn(1).getString());
        return out;
    }

    std::vector<client_alert> latest_client_alerts() override {
        std::vector<client_alert> out;
        SQLite::Statement q(*db_, "SELECT client, topic, kind FROM alerts WHERE id IN (SELECT max(id) FROM alerts "
                                  "WHERE kind IN ('down', 'recovered', 'overdue', 'back') AND client IS NOT NULL "
                                  "GROUP BY client, topic)");
        while (q.executeStep())
            out.push_back({q.getColumn(0).getString(), q.getColumn(1).getString(), q.getColumn(2).getString()});
        return out;
    }

    std::vector<std::pair<std::int64_t, std::int64_t>> spans(span_table table, std::int64_t from,
                                                             std::int64_t to) override {
        std::vector<std::pair<std::int64_t, std::int64_t>> out;
        SQLite::Statement q(*db_, table == span_table::watch
                                      ? "SELECT from_ms, to_ms FROM watch WHERE to_ms >= ? AND from_ms <= ? "
                                        "ORDER BY from_ms"
                                      : "SELECT from_ms, to_ms FROM gaps WHERE to_ms >= ? AND from_ms <= ? "
                                        "ORDER BY from_ms");
        q.bind(1, from);
        q.bind(2, to);
        while (q.executeStep()) out.emplace_back(q.getColumn(0).getInt64(), q.getColumn(1).getInt64());
        return out;
    }

private:
    struct statements {
        std::unique_ptr<SQLite::Statement> insert_event, upsert_client, rewrite_client, remove_client, last_event,
            alive, watch_extend, upsert_cadence;
    };

    // The writer's statements, prepared once per session.
    void prepare() {
        auto& s = statements_;
        s.insert_event = std::make_unique<SQLite::Statement>(
            *db_, "INSERT INTO events(observed_ms, time_ms, client, topic, previous, state, stale, cause, epoch, ip, "
                  "retained, session, prev_id, overdue) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
        const std::string columns = "topic, client, state, stale, retained, since_ms, last_seen_ms, last_down_ms, "
                                    "epoch, heartbeat_s, transitions, detail, reason, ip, host, meta, raw, overdue";
        const std::string update = " ON CONFLICT(client, topic) DO UPDATE SET state=excluded.state, "
            "stale=excluded.stale, retained=excluded.retained, since_ms=excluded.since_ms, "
            "last_seen_ms=excluded.last_seen_ms, last_down_ms=excluded.last_down_ms, epoch=excluded.epoch, "
            "heartbeat_s=excluded.heartbeat_s, transitions=excluded.transitions, detail=excluded.detail, "
            "reason=excluded.reason, ip=excluded.ip, host=excluded.host, meta=excluded.meta, raw=excluded.raw, "
            "overdue=excluded.overdue, removed=0";
        s.upsert_client = std::make_unique<SQLite::Statement>(
            *db_, "INSERT INTO clients(" + columns + ", last_event, removed) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0)" +
                      update + ", last_event=excluded.last_event");
        // The rewrite after a gap: rows from the live table, their chains left as they are.
        s.rewrite_client = std::make_unique<SQLite::Statement>(
            *db_, "INSERT INTO clients(" + columns + ", last_event, removed) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,0)" +
                      update);
        s.remove_client = std::make_unique<SQLite::Statement>(
            *db_, "UPDATE clients SET removed=1, last_event=? WHERE client=? AND topic=?");
        s.last_event = std::make_unique<SQLite::Statement>(
            *db_, "SELECT last_event FROM clients WHERE client=? AND topic=?");
        s.upsert_cadence = std::make_unique<SQLite::Statement>(
            *db_, "INSERT OR REPLACE INTO cadences(topic, client, gaps) VALUES(?,?,?)");
        s.alive = std::make_unique<SQLite::Statement>(*db_, "UPDATE sessions SET alive_ms=? WHERE id=?");
        s.watch_extend = std::make_unique<SQLite::Statement>(*db_,
                                                             "UPDATE watch SET to_ms=? WHERE session=? AND from_ms=?");
    }

    void remember_file() {
        struct stat st {};
        if (::fstat(lock_fd_, &st) != 0) return;
        inode_ = static_cast<std::uint64_t>(st.st_ino);
        device_ = static_cast<std::uint64_t>(st.st_dev);
    }

    // Beyond the cap, writes fail as on a full disk.
    void cap_size(std::uint64_t max_bytes) {
        const auto page = static_cast<std::uint64_t>(db_->execAndGet("PRAGMA page_size").getInt64());
        db_->execAndGet("PRAGMA max_page_count=" + std::to_string(std::max<std::uint64_t>(1, max_bytes / page)));
    }

    // The first event id observed at or after `ms`: ids grow with time, so a binary search over ids finds it
    // without an index on the time.
    std::int64_t first_id_at(std::int64_t ms) {
        std::int64_t lo = db_->execAndGet("SELECT coalesce(min(id), 1) FROM events").getInt64();
        std::int64_t hi = db_->execAndGet("SELECT coalesce(max(id), 0) FROM events").getInt64() + 1;
        SQLite::Statement at(*db_, "SELECT observed_ms FROM events WHERE id >= ? ORDER BY id LIMIT 1");
        while (lo < hi) {
            const std::int64_t mid = lo + (hi - lo) / 2;
            at.bind(1, mid);
            const bool found = at.executeStep();
            const bool before = found && at.getColumn(0).getInt64() < ms;
            at.reset();
            if (before) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }

    std::string path_;
    int lock_fd_ = -1;  // the flock on the file: one writer per history
    std::uint64_t inode_ = 0, device_ = 0;  // the file opened, to notice it deleted or replaced
    std::unique_ptr<SQLite::Database> db_;
    statements statements_;
};

}  // namespace

std::unique_ptr<history_database> open_sqlite_history(const std::string& path, bool writable,
                                                      std::uint64_t max_bytes) {
    return std::make_unique<sqlite_history>(path, writable, max_bytes);
}

}  // namespace mqtt_presence::detail
