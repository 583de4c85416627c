#include "history_schema.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

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

}  // namespace

std::int64_t to_ms(time_point t) noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
time_point from_ms(std::int64_t ms) noexcept { return time_point(std::chrono::milliseconds(ms)); }

std::unique_ptr<SQLite::Database> open_history(const std::string& path, bool writable) {
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

const char* const current_rows_sql =
    "SELECT topic, client, state, stale, retained, since_ms, last_seen_ms, last_down_ms, epoch, heartbeat_s, "
    "transitions, detail, reason, ip, host, meta, raw, overdue FROM clients WHERE removed=0";

namespace {
std::optional<time_point> time_column(const SQLite::Column& c) {
    return c.isNull() ? std::nullopt : std::optional<time_point>(from_ms(c.getInt64()));
}
}  // namespace

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

}  // namespace mqtt_presence::detail
