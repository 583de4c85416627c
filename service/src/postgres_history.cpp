// The PostgreSQL backend of the history (libpqxx): the same tables as the SQLite file, in their own schema
// (mqtt_presence), with their own versioned migrations. One writer per database: a session advisory lock held on the
// writer's connection (a lost connection is a lost lock). A batch's events go in one COPY with ids reserved from
// the sequence beforehand (a client's chain needs each id before the next event is written); its clients' rows go
// in another COPY into a temporary table and one upsert from it.
#include "history_database.hpp"

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>

#include <pqxx/pqxx>

#include <mqtt_presence/error.hpp>
#include <mqtt_presence/service/history_store.hpp>

namespace mqtt_presence::detail {
namespace {

constexpr std::int64_t writer_lock = 0x4d515072;  // "MQPr": the advisory lock a history's one writer holds

// migrations[k] brings a database from version k to k + 1. The first one creates what the SQLite file's five steps
// made, so that one number names one meaning in both backends.
const std::vector<std::pair<int, const char*>> migrations = {
    {5, R"sql(
    CREATE TABLE sessions(
        id BIGSERIAL PRIMARY KEY,
        started_ms BIGINT NOT NULL,
        alive_ms BIGINT NOT NULL,
        ended_ms BIGINT,
        broker TEXT NOT NULL,
        topics TEXT NOT NULL,
        observer TEXT NOT NULL);
    CREATE TABLE watch(
        session BIGINT NOT NULL,
        from_ms BIGINT NOT NULL,
        to_ms BIGINT NOT NULL,
        PRIMARY KEY(session, from_ms));
    CREATE TABLE gaps(
        from_ms BIGINT NOT NULL,
        to_ms BIGINT NOT NULL,
        dropped BIGINT NOT NULL);
    CREATE TABLE events(
        id BIGSERIAL PRIMARY KEY,
        observed_ms BIGINT NOT NULL,
        time_ms BIGINT,
        client TEXT NOT NULL,
        topic TEXT NOT NULL,
        previous TEXT,
        state TEXT NOT NULL,
        stale SMALLINT NOT NULL,
        cause TEXT NOT NULL,
        epoch BIGINT,
        ip TEXT,
        retained SMALLINT NOT NULL,
        session BIGINT NOT NULL,
        prev_id BIGINT,
        overdue SMALLINT NOT NULL DEFAULT 0);
    CREATE TABLE clients(
        client TEXT NOT NULL,
        topic TEXT NOT NULL,
        state TEXT NOT NULL,
        stale SMALLINT NOT NULL,
        retained SMALLINT NOT NULL,
        since_ms BIGINT,
        last_seen_ms BIGINT,
        last_down_ms BIGINT,
        epoch BIGINT,
        heartbeat_s BIGINT,
        transitions BIGINT NOT NULL,
        detail TEXT NOT NULL,
        reason TEXT NOT NULL,
        ip TEXT NOT NULL,
        host TEXT NOT NULL,
        meta TEXT NOT NULL,
        raw TEXT NOT NULL,
        overdue SMALLINT NOT NULL DEFAULT 0,
        last_event BIGINT NOT NULL,
        removed SMALLINT NOT NULL,
        PRIMARY KEY(client, topic));
    CREATE TABLE alerts(
        id BIGSERIAL PRIMARY KEY,
        time_ms BIGINT NOT NULL,
        kind TEXT NOT NULL,
        client TEXT,
        topic TEXT,
        json TEXT NOT NULL,
        delivered_ms BIGINT);
    CREATE INDEX alerts_undelivered ON alerts(id) WHERE delivered_ms IS NULL;
    CREATE TABLE silences(
        id TEXT PRIMARY KEY,
        target TEXT NOT NULL,
        reason TEXT NOT NULL,
        "by" TEXT NOT NULL,
        from_ms BIGINT NOT NULL,
        until_ms BIGINT NOT NULL,
        ended_ms BIGINT);
    )sql"},
    {6, R"sql(
    CREATE TABLE cadences(
        topic TEXT NOT NULL,
        client TEXT NOT NULL,
        gaps TEXT NOT NULL,
        PRIMARY KEY(topic, client));
    )sql"},
};
constexpr int known_version = history_store::schema_version;

// The one writer's lock as pg_locks shows it: an advisory lock on one bigint key below 2^32 is classid 0, objid the
// key, objsubid 1, in this database.
const char* const writer_lock_held =
    "l.locktype = 'advisory' AND l.classid = 0 AND l.objid = $1 AND l.objsubid = 1 AND l.granted AND "
    "l.database = (SELECT oid FROM pg_database WHERE datname = current_database())";

const char* const client_columns =
    "topic, client, state, stale, retained, since_ms, last_seen_ms, last_down_ms, epoch, heartbeat_s, transitions, "
    "detail, reason, ip, host, meta, raw, overdue";
const char* const event_columns =
    "id, observed_ms, time_ms, client, topic, previous, state, stale, cause, epoch, ip, retained, overdue";

// Text as PostgreSQL takes it: valid UTF-8 without NUL (a payload may hold anything; PostgreSQL refuses both). Each
// byte that is not part of a valid character becomes U+FFFD.
std::string pg_text(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
        bool ok = n > 0 && i + n <= s.size() && c != 0 && !(n == 2 && c < 0xc2) && !(c > 0xf4);
        for (std::size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
        if (ok && n == 3) {
            const auto c1 = static_cast<unsigned char>(s[i + 1]);
            ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);  // overlong, surrogate
        }
        if (ok && n == 4) {
            const auto c1 = static_cast<unsigned char>(s[i + 1]);
            ok = !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
        }
        if (ok) {
            out.append(s.data() + i, n);
            i += n;
        } else {
            out += "\xef\xbf\xbd";
            ++i;
        }
    }
    return out;
}

std::optional<std::int64_t> ms_of(const std::optional<time_point>& t) {
    return t ? std::optional<std::int64_t>(to_ms(*t)) : std::nullopt;
}
std::optional<std::int64_t> epoch_of(const std::optional<std::uint64_t>& e) {
    return e ? std::optional<std::int64_t>(static_cast<std::int64_t>(*e)) : std::nullopt;
}
std::optional<time_point> time_field(const pqxx::field& f) {
    return f.is_null() ? std::nullopt : std::optional<time_point>(from_ms(f.as<std::int64_t>()));
}

client_status read_client_row(const pqxx::row& q) {
    client_status r;
    r.topic = q[0].c_str();
    r.client = q[1].c_str();
    r.status = parse_state(q[2].c_str()).value_or(state::unknown);
    r.stale = q[3].as<int>() != 0;
    r.retained = q[4].as<int>() != 0;
    r.since = time_field(q[5]);
    r.last_seen = time_field(q[6]);
    r.last_down = time_field(q[7]);
    if (!q[8].is_null()) r.epoch = static_cast<std::uint64_t>(q[8].as<std::int64_t>());
    if (!q[9].is_null()) r.heartbeat = std::chrono::seconds(q[9].as<std::int64_t>());
    r.transitions = static_cast<std::uint32_t>(q[10].as<std::int64_t>());
    r.detail = q[11].c_str();
    r.reason = q[12].c_str();
    r.ip = q[13].c_str();
    r.host = q[14].c_str();
    r.meta = q[15].c_str();
    r.raw = q[16].c_str();
    r.overdue = q[17].as<int>() != 0;
    return r;
}

history_event read_event(const pqxx::row& q) {
    history_event e;
    e.id = q[0].as<std::int64_t>();
    e.observed = from_ms(q[1].as<std::int64_t>());
    e.time = time_field(q[2]);
    e.client = q[3].c_str();
    e.topic = q[4].c_str();
    if (!q[5].is_null()) e.previous = parse_state(q[5].c_str());
    e.status = parse_state(q[6].c_str()).value_or(state::unknown);
    e.stale = q[7].as<int>() != 0;
    e.why = parse_cause(q[8].c_str()).value_or(cause::unknown);
    if (!q[9].is_null()) e.epoch = static_cast<std::uint64_t>(q[9].as<std::int64_t>());
    e.ip = q[10].c_str();
    e.retained = q[11].as<int>() != 0;
    e.overdue = q[12].as<int>() != 0;
    return e;
}

// The database as messages name it: libpq's own reading of the string, without the password.
std::string display_name(const std::string& where) {
    const auto values = conninfo(where);
    const auto value = [&values](const char* key) {
        const auto it = values.find(key);
        return it == values.end() ? std::string() : it->second;
    };
    const auto user = value("user"), port = value("port");
    return "postgresql://" + (user.empty() ? "" : user + "@") + value("host") + (port.empty() ? "" : ":" + port) +
           "/" + value("dbname");
}

// A client's row as the COPY into clients_in takes it.
using client_tuple =
    std::tuple<std::string, std::string, const char*, int, int, std::optional<std::int64_t>,
               std::optional<std::int64_t>, std::optional<std::int64_t>, std::optional<std::int64_t>,
               std::optional<std::int64_t>, std::int64_t, std::string, std::string, std::string, std::string,
               std::string, std::string, int, std::int64_t, int>;

client_tuple client_row(const client_status& r, std::int64_t head) {
    return {pg_text(r.topic), pg_text(r.client), to_string(r.status).data(), r.stale ? 1 : 0, r.retained ? 1 : 0,
            ms_of(r.since), ms_of(r.last_seen), ms_of(r.last_down), epoch_of(r.epoch),
            r.heartbeat ? std::optional<std::int64_t>(r.heartbeat->count()) : std::nullopt,
            static_cast<std::int64_t>(r.transitions), pg_text(r.detail), pg_text(r.reason), pg_text(r.ip),
            pg_text(r.host), pg_text(r.meta), pg_text(r.raw), r.overdue ? 1 : 0, head, 0};
}

// An event as the COPY into events takes it.
using event_tuple = std::tuple<std::int64_t, std::int64_t, std::optional<std::int64_t>, std::string, std::string,
                               const char*, const char*, int, const char*, std::optional<std::int64_t>,
                               std::optional<std::string>, int, std::int64_t, std::optional<std::int64_t>, int>;

class postgres_history final : public history_database {
public:
    postgres_history(const std::string& where, bool writable)
        : where_(where), name_(display_name(where)), writable_(writable) {
        connect();
    }

    ~postgres_history() override {
        if (!writable_ || !conn_ || !conn_->is_open()) return;
        try {  // at once, not when the server notices the connection gone: a restarted writer takes it next
            tx_.reset();
            pqxx::nontransaction(*conn_).exec_params("SELECT pg_advisory_unlock($1)", writer_lock);
        } catch (...) {
        }
    }

    const std::string& name() const noexcept override { return name_; }

    std::int64_t begin_session(std::int64_t now, const std::string& broker, const std::string& topics,
                               const std::string& observer) override {
        pqxx::work tx(live());
        const auto id = tx.exec_params1("INSERT INTO sessions(started_ms, alive_ms, broker, topics, observer) "
                                        "VALUES($1, $1, $2, $3, $4) RETURNING id",
                                        now, pg_text(broker), pg_text(topics), pg_text(observer))[0]
                            .as<std::int64_t>();
        tx.commit();
        return id;
    }

    void begin() override {
        tx_ = std::make_unique<pqxx::work>(live());
        events_.clear();
        clients_.clear();
    }

    void commit() override {
        flush_events();
        flush_clients();
        flush_forgotten();
        tx_->commit();
        tx_.reset();
    }

    void rollback() noexcept override {
        try {
            tx_.reset();  // aborts
        } catch (...) {
        }
        events_.clear();
        clients_.clear();
        forgotten_.clear();
        next_id_ = end_id_ = 0;  // a commit whose answer was lost may have used them: never again
        if (conn_ && !conn_->is_open()) drop();
    }

    std::vector<std::int64_t> chain_heads(const std::vector<client_key>& keys) override {
        std::vector<std::int64_t> heads(keys.size(), 0);
        if (keys.empty()) return heads;
        {
            pqxx::stream_to in(*tx_, "keys_in", std::vector<std::string>{"i", "client", "topic"});
            for (std::size_t i = 0; i < keys.size(); ++i)
                in << std::make_tuple(static_cast<std::int64_t>(i), pg_text(keys[i].client), pg_text(keys[i].topic));
            in.complete();
        }
        const auto found = tx_->exec("SELECT k.i, c.last_event FROM keys_in k JOIN clients c ON "
                                     "c.client = k.client AND c.topic = k.topic");
        for (const auto& row : found) heads[row[0].as<std::size_t>()] = row[1].as<std::int64_t>();
        return heads;
    }

    std::int64_t write_event(const change& c, std::int64_t prev, std::int64_t session) override {
        if (next_id_ == end_id_) reserve_ids();
        const auto id = next_id_++;
        const auto& r = c.current;
        events_.emplace_back(id, to_ms(c.at), ms_of(time_of(c)), pg_text(r.client), pg_text(r.topic),
                             c.previous ? to_string(*c.previous).data() : nullptr, to_string(r.status).data(),
                             r.stale ? 1 : 0, to_string(cause_of(c)).data(), epoch_of(r.epoch),
                             r.ip.empty() ? std::nullopt : std::optional<std::string>(pg_text(r.ip)),
                             c.live ? 0 : 1, session,
                             prev > 0 ? std::optional<std::int64_t>(prev) : std::nullopt, r.overdue ? 1 : 0);
        return id;
    }

    void write_client(const client_status& r, std::optional<std::int64_t> head) override {
        if (head) {
            clients_.push_back(client_row(r, *head));
            return;
        }
        // The rewrite after a gap: the chain stays as it is.
        tx_->exec_prepared0("rewrite_client", pg_text(r.topic), pg_text(r.client), to_string(r.status).data(),
                            r.stale ? 1 : 0, r.retained ? 1 : 0, ms_of(r.since), ms_of(r.last_seen),
                            ms_of(r.last_down), epoch_of(r.epoch),
                            r.heartbeat ? std::optional<std::int64_t>(r.heartbeat->count()) : std::nullopt,
                            static_cast<std::int64_t>(r.transitions), pg_text(r.detail), pg_text(r.reason),
                            pg_text(r.ip), pg_text(r.host), pg_text(r.meta), pg_text(r.raw), r.overdue ? 1 : 0);
    }

    // Kept for one COPY and one UPDATE at commit: a re-sync's removals come by the ten thousand, and a statement each
    // ran at about 5,000 a second.
    void forget_client(std::string_view topic, std::string_view client, std::int64_t head) override {
        forgotten_.emplace_back(pg_text(topic), pg_text(client), head);
    }

    void forget_all_clients() override {
        flush_clients();
        flush_forgotten();  // their chains' heads (last_event) stand; only `removed` is set for every row below
        tx_->exec0("UPDATE clients SET removed=1");
    }

    void open_watch(std::int64_t session, std::int64_t from) override {
        tx_->exec_params0("INSERT INTO watch(session, from_ms, to_ms) VALUES($1, $2, $2) "
                          "ON CONFLICT(session, from_ms) DO UPDATE SET to_ms=excluded.to_ms",
                          session, from);
    }

    void extend_watch(std::int64_t session, std::int64_t from, std::int64_t to) override {
        tx_->exec_params0("UPDATE watch SET to_ms=$1 WHERE session=$2 AND from_ms=$3", to, session, from);
    }

    std::int64_t write_alert(const std::string& kind, const std::string& client, const std::string& topic,
                             const std::string& json, std::int64_t at) override {
        const auto none = [](const std::string& s) {
            return s.empty() ? std::nullopt : std::optional<std::string>(pg_text(s));
        };
        return tx_->exec_params1("INSERT INTO alerts(time_ms, kind, client, topic, json) VALUES($1,$2,$3,$4,$5) "
                                 "RETURNING id",
                                 at, pg_text(kind), none(client), none(topic), pg_text(json))[0]
            .as<std::int64_t>();
    }

    // One COPY and one statement for all of them (a row each would be a round trip each).
    void write_cadences(const std::vector<learned_cadence>& learned) override {
        if (learned.empty()) return;
        {
            pqxx::stream_to in(*tx_, "cadences_in", std::vector<std::string>{"topic", "client", "gaps"});
            for (const auto& c : learned)
                in << std::make_tuple(pg_text(c.topic), pg_text(c.client), c.learned.gaps_text());
            in.complete();
        }
        tx_->exec0("INSERT INTO cadences SELECT * FROM cadences_in ON CONFLICT(topic, client) "
                   "DO UPDATE SET gaps=excluded.gaps");
        tx_->exec0("DELETE FROM cadences_in");
    }

    void write_silence(const silence& s) override {
        tx_->exec_params0("INSERT INTO silences(id, target, reason, \"by\", from_ms, until_ms, ended_ms) "
                          "VALUES($1,$2,$3,$4,$5,$6,$7) ON CONFLICT(id) DO UPDATE SET target=excluded.target, "
                          "reason=excluded.reason, \"by\"=excluded.\"by\", from_ms=excluded.from_ms, "
                          "until_ms=excluded.until_ms, ended_ms=excluded.ended_ms",
                          pg_text(s.id), pg_text(s.target), pg_text(s.reason), pg_text(s.by), to_ms(s.from),
                          to_ms(s.until), ms_of(s.ended));
    }

    void write_delivered(std::int64_t id, std::int64_t at) override {
        tx_->exec_params0("UPDATE alerts SET delivered_ms=$1 WHERE id=$2", at, id);
    }

    void write_gap(std::int64_t from, std::int64_t to, std::uint64_t dropped) override {
        tx_->exec_params0("INSERT INTO gaps(from_ms, to_ms, dropped) VALUES($1,$2,$3)", from, to,
                          static_cast<std::int64_t>(dropped));
    }

    void session_alive(std::int64_t session, std::int64_t now, bool ended) override {
        tx_->exec_params0(ended ? "UPDATE sessions SET alive_ms=$1, ended_ms=$1 WHERE id=$2"
                                : "UPDATE sessions SET alive_ms=$1 WHERE id=$2",
                          now, session);
    }

    std::uint64_t prune(std::int64_t cutoff) override {
        std::uint64_t deleted = 0;
        for (;;) {
            pqxx::work tx(live());
            const auto n = tx.exec_params("DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id "
                                          "LIMIT 10000) AND observed_ms < $1",
                                          cutoff)
                               .affected_rows();
            tx.commit();
            deleted += n;
            if (n < 10000) break;
        }
        pqxx::work tx(live());
        tx.exec_params0("DELETE FROM watch WHERE to_ms < $1", cutoff);
        tx.exec_params0("DELETE FROM gaps WHERE to_ms < $1", cutoff);
        tx.exec0("DELETE FROM cadences WHERE NOT EXISTS (SELECT 1 FROM clients c WHERE c.client=cadences.client "
                 "AND c.topic=cadences.topic AND c.removed=0)");
        tx.commit();
        return deleted;
    }

    void for_each_current_row(const std::function<void(const client_status&)>& visit) override {
        in_chunks(std::string("SELECT ") + client_columns + " FROM clients WHERE removed=0",
                  [&](const pqxx::row& r) { visit(read_client_row(r)); });
    }

    std::vector<history_event> chain_events(const std::string& client, const std::string& topic,
                                            std::int64_t since) override {
        // Down each chain from its head while the events are new enough: the same walk as the SQLite backend's,
        // in one round trip.
        const std::string sql =
            std::string("WITH RECURSIVE chain AS (SELECT e.*, e.prev_id AS next FROM events e WHERE e.id IN "
                        "(SELECT last_event FROM clients WHERE client=$1") +
            (topic.empty() ? "" : " AND topic=$3") +
            ") AND e.observed_ms >= $2 UNION ALL SELECT e.*, e.prev_id FROM events e JOIN chain c ON e.id = c.next AND e.id < c.id "
            "WHERE e.observed_ms >= $2) SELECT " + event_columns + " FROM chain";
        pqxx::nontransaction tx(live());
        const auto rows = topic.empty() ? tx.exec_params(sql, pg_text(client), since)
                                        : tx.exec_params(sql, pg_text(client), since, pg_text(topic));
        std::vector<history_event> out;
        out.reserve(rows.size());
        for (const auto& r : rows) out.push_back(read_event(r));
        return out;
    }

    std::vector<history_event> events_after(std::int64_t id, std::size_t limit) override {
        pqxx::nontransaction tx(live());
        const auto rows = tx.exec_params(std::string("SELECT ") + event_columns +
                                             " FROM events WHERE id > $1 ORDER BY id LIMIT $2",
                                         id, sql_limit(limit));
        std::vector<history_event> out;
        out.reserve(rows.size());
        for (const auto& r : rows) out.push_back(read_event(r));
        return out;
    }

    void for_each_event_in(std::int64_t from, std::int64_t to,
                           const std::function<void(history_event&&)>& visit) override {
        in_chunks(std::string("SELECT ") + event_columns + " FROM events WHERE observed_ms >= " +
                      std::to_string(from) + " AND observed_ms <= " + std::to_string(to) + " ORDER BY id",
                  [&](const pqxx::row& r) { visit(read_event(r)); });
    }

    std::vector<std::string> alerts(std::size_t limit) override {
        pqxx::nontransaction tx(live());
        std::vector<std::string> out;
        for (const auto& r : tx.exec_params("SELECT json FROM alerts ORDER BY id DESC LIMIT $1", sql_limit(limit)))
            out.emplace_back(r[0].c_str());
        return out;
    }

    std::vector<learned_cadence> cadences() override {
        pqxx::nontransaction tx(live());
        std::vector<learned_cadence> out;
        for (const auto& r : tx.exec("SELECT topic, client, gaps FROM cadences"))
            if (const auto gaps = cadence::from_gaps_text(r[2].c_str()))
                out.push_back(learned_cadence{r[0].c_str(), r[1].c_str(), 0, *gaps});
        return out;
    }

    std::vector<silence> silences(std::int64_t now) override {
        pqxx::nontransaction tx(live());
        std::vector<silence> out;
        for (const auto& r : tx.exec_params("SELECT id, target, reason, \"by\", from_ms, until_ms FROM silences "
                                            "WHERE ended_ms IS NULL AND until_ms > $1 ORDER BY until_ms",
                                            now))
            out.push_back(silence{r[0].c_str(), r[1].c_str(), r[2].c_str(), r[3].c_str(),
                                  from_ms(r[4].as<std::int64_t>()), from_ms(r[5].as<std::int64_t>()), std::nullopt});
        return out;
    }

    std::vector<std::pair<std::int64_t, std::string>> undelivered_alerts(std::size_t limit) override {
        pqxx::nontransaction tx(live());
        std::vector<std::pair<std::int64_t, std::string>> out;
        for (const auto& r : tx.exec_params("SELECT id, json FROM alerts WHERE delivered_ms IS NULL ORDER BY id "
                                            "LIMIT $1",
                                            sql_limit(limit)))
            out.emplace_back(r[0].as<std::int64_t>(), r[1].c_str());
        return out;
    }

    std::vector<client_alert> latest_client_alerts() override {
        pqxx::nontransaction tx(live());
        std::vector<client_alert> out;
        for (const auto& r : tx.exec("SELECT client, topic, kind FROM alerts WHERE id IN (SELECT max(id) FROM alerts "
                                     "WHERE kind IN ('down', 'recovered', 'overdue', 'back') AND client IS NOT NULL "
                                     "GROUP BY client, topic)"))
            out.push_back({r[0].c_str(), r[1].is_null() ? "" : r[1].c_str(), r[2].c_str()});
        return out;
    }

    // A healthy writer commits at least once a second, so its connection is never idle for long; one that stopped
    // moving (SIGSTOP, a hung host) leaves it idle, or idle in a transaction. The state of a connection of another
    // role is not visible (pg_read_all_stats): then nothing is said.
    writer_activity writer() override {
        pqxx::nontransaction tx(live());
        const auto r = tx.exec_params(
            // Idle: not in a query, or in one that waits for the client (a COPY whose sender stopped mid-way).
            // (A working writer's wait_event_type is NULL: IS NOT DISTINCT FROM keeps the answer true or false.)
            std::string("SELECT a.state IS NOT NULL AND (a.state <> 'active' OR "
                        "a.wait_event_type IS NOT DISTINCT FROM 'Client'), "
                        "(extract(epoch FROM now() - a.state_change) * 1000)::bigint, a.application_name, "
                        "(SELECT id FROM events ORDER BY id DESC LIMIT 1), "
                        "(SELECT observed_ms FROM events ORDER BY id DESC LIMIT 1) FROM pg_locks l "
                        "LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE ") + writer_lock_held,
            writer_lock);
        writer_activity w;
        if (r.empty()) {
            const auto last = tx.exec("SELECT id, observed_ms FROM events ORDER BY id DESC LIMIT 1");
            if (!last.empty()) {
                w.last_event_id = last[0][0].as<std::int64_t>();
                w.last_observed_ms = last[0][1].as<std::int64_t>();
            }
            return w;
        }
        w.present = true;
        if (!r[0][0].is_null() && r[0][0].as<bool>() && !r[0][1].is_null()) w.idle_ms = r[0][1].as<std::int64_t>();
        if (!r[0][2].is_null()) w.who = r[0][2].as<std::string>();
        if (!r[0][3].is_null()) w.last_event_id = r[0][3].as<std::int64_t>();
        if (!r[0][4].is_null()) w.last_observed_ms = r[0][4].as<std::int64_t>();
        return w;
    }

    bool end_writer() override {
        pqxx::nontransaction tx(live());
        const auto r = tx.exec_params(std::string("SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE ") +
                                          writer_lock_held,
                                      writer_lock);
        return !r.empty() && r[0][0].as<bool>();
    }

    std::vector<std::pair<std::int64_t, std::int64_t>> spans(span_table table, std::int64_t from,
                                                             std::int64_t to) override {
        pqxx::nontransaction tx(live());
        std::vector<std::pair<std::int64_t, std::int64_t>> out;
        const char* sql = table == span_table::watch
                              ? "SELECT from_ms, to_ms FROM watch WHERE to_ms >= $1 AND from_ms <= $2 ORDER BY from_ms"
                              : "SELECT from_ms, to_ms FROM gaps WHERE to_ms >= $1 AND from_ms <= $2 ORDER BY from_ms";
        for (const auto& r : tx.exec_params(sql, from, to))
            out.emplace_back(r[0].as<std::int64_t>(), r[1].as<std::int64_t>());
        return out;
    }

private:
    // Connects, checks the schema, and for the writer: takes the lock, migrates, prepares.
    void connect() {
        try {
            conn_ = std::make_unique<pqxx::connection>(bounded(where_));
            sock_ = conn_->sock();
        } catch (const std::exception& e) {
            drop();
            throw error("cannot connect to the history " + name_ + ": " + first_line(e.what()));
        }
        // A lost connection stays lost (the writer's lock and temporary tables went with it): the next use connects
        // anew, with all of them.
        // (libpqxx 6 marks it deprecated, for its removal in 7, where connections are never reactivated.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        conn_->inhibit_reactivation(true);
#pragma GCC diagnostic pop
        conn_->set_client_encoding("UTF8");
        session_exec("SET client_min_messages TO warning");
        if (writable_ && !take_lock()) {
            drop();
            throw history_locked("the history " + name_ + " is written by another mqtt-presence-scanner serve (one "
                                 "writer per database); stop it, or give this one another --db");
        }
        // Who writes, as a follower's look at pg_stat_activity names the leader.
        if (writable_)
            pqxx::nontransaction(*conn_).exec_params("SELECT set_config('application_name', $1, false)",
                                                     pg_text(writer_name()));
        const int version = schema_version();
        if (version > known_version)
            throw error(name_ + " has history schema version " + std::to_string(version) + ", newer than this " +
                        "mqtt-presence-scanner knows (" + std::to_string(known_version) +
                        "): use the newer binary that wrote it, or another --db");
        if (!writable_ && version < 1) throw error(name_ + " holds no history yet");
        if (writable_ && version < known_version) migrate(version);
        session_exec("SET search_path TO mqtt_presence");
        if (writable_) prepare();
    }

    void session_exec(const std::string& sql) { pqxx::nontransaction(*conn_).exec0(sql); }

    void interrupt() noexcept override {
        // The descriptor, not the connection object, which its own thread may be replacing meanwhile.
        if (const int fd = sock_.load(); fd >= 0) ::shutdown(fd, SHUT_RDWR);
    }

    void drop() noexcept {
        sock_ = -1;
        conn_.reset();
    }

    // A connection attempt that a server which stopped answering cannot hold for ever: libpq's connect_timeout
    // (5 s) unless the string or PGCONNECT_TIMEOUT gives one.
    static std::string bounded(const std::string& where) {
        const char* env = std::getenv("PGCONNECT_TIMEOUT");
        if ((env && *env) || conninfo(where).count("connect_timeout")) return where;
        if (where.rfind("postgresql://", 0) == 0 || where.rfind("postgres://", 0) == 0)
            return where + (where.find('?') == std::string::npos ? "?" : "&") + "connect_timeout=5";
        return where + " connect_timeout=5";
    }

    // The one writer's lock. A writer that just stopped or died may hold it a moment longer (its server process
    // ends after its connection): asked again for up to 2 s before another writer is named.
    bool take_lock() {
        for (int attempt = 0;; ++attempt) {
            if (pqxx::nontransaction(*conn_).exec_params1("SELECT pg_try_advisory_lock($1)", writer_lock)[0].as<bool>())
                return true;
            if (attempt == 20) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    }

    // The connection, connected anew when it was lost.
    pqxx::connection& live() {
        if (!conn_ || !conn_->is_open()) connect();
        return *conn_;
    }

    static std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

    // The schema's version (0: no history here yet).
    int schema_version() {
        pqxx::nontransaction tx(*conn_);
        if (tx.exec1("SELECT to_regclass('mqtt_presence.schema_version') IS NULL")[0].as<bool>()) return 0;
        const auto r = tx.exec("SELECT max(version) FROM mqtt_presence.schema_version");
        return r.empty() || r[0][0].is_null() ? 0 : r[0][0].as<int>();
    }

    void migrate(int from) {
        pqxx::work tx(*conn_);
        tx.exec0("CREATE SCHEMA IF NOT EXISTS mqtt_presence");
        tx.exec0("SET LOCAL search_path TO mqtt_presence");
        tx.exec0("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)");
        for (const auto& [version, sql] : migrations) {
            if (version <= from) continue;
            tx.exec0(sql);
            tx.exec0("DELETE FROM schema_version");
            tx.exec_params0("INSERT INTO schema_version(version) VALUES($1)", version);
        }
        tx.commit();
    }

    // Per connection: the temporary tables the batches' COPYs fill, and the rewrite's statement.
    void prepare() {
        session_exec("CREATE TEMP TABLE keys_in(i BIGINT, client TEXT, topic TEXT) ON COMMIT DELETE ROWS");
        session_exec("CREATE TEMP TABLE clients_in(LIKE mqtt_presence.clients) ON COMMIT DELETE ROWS");
        session_exec("CREATE TEMP TABLE forgotten_in(topic TEXT, client TEXT, last_event BIGINT) ON COMMIT DELETE ROWS");
        session_exec("CREATE TEMP TABLE cadences_in(LIKE mqtt_presence.cadences) ON COMMIT DELETE ROWS");
        const std::string update =
            " ON CONFLICT(client, topic) DO UPDATE SET state=excluded.state, stale=excluded.stale, "
            "retained=excluded.retained, since_ms=excluded.since_ms, last_seen_ms=excluded.last_seen_ms, "
            "last_down_ms=excluded.last_down_ms, epoch=excluded.epoch, heartbeat_s=excluded.heartbeat_s, "
            "transitions=excluded.transitions, detail=excluded.detail, reason=excluded.reason, ip=excluded.ip, "
            "host=excluded.host, meta=excluded.meta, raw=excluded.raw, overdue=excluded.overdue, removed=0";
        upsert_ = std::string("INSERT INTO clients(") + client_columns + ", last_event, removed) SELECT " +
                  client_columns + ", last_event, removed FROM clients_in" + update + ", last_event=excluded.last_event";
        conn_->prepare("rewrite_client", std::string("INSERT INTO clients(") + client_columns +
                                             ", last_event, removed) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,"
                                             "$13,$14,$15,$16,$17,$18,0,0)" + update);
    }

    // Ids for the next events, taken from the sequence in one step (one writer: nobody else takes ids meanwhile).
    void reserve_ids() {
        constexpr std::int64_t block = 4096;
        const auto last = tx_->exec_params1("SELECT setval('events_id_seq', nextval('events_id_seq') + $1)", block - 1)[0]
                              .as<std::int64_t>();
        next_id_ = last - block + 1;
        end_id_ = last + 1;
    }

    void flush_events() {
        if (events_.empty()) return;
        pqxx::stream_to out(*tx_, "events",
                            std::vector<std::string>{"id", "observed_ms", "time_ms", "client", "topic", "previous",
                                                     "state", "stale", "cause", "epoch", "ip", "retained", "session",
                                                     "prev_id", "overdue"});
        for (const auto& e : events_) out << e;
        out.complete();
        events_.clear();
    }

    void flush_clients() {
        if (clients_.empty()) return;
        {
            pqxx::stream_to in(*tx_, "clients_in",
                               std::vector<std::string>{"topic", "client", "state", "stale", "retained", "since_ms",
                                                        "last_seen_ms", "last_down_ms", "epoch", "heartbeat_s",
                                                        "transitions", "detail", "reason", "ip", "host", "meta",
                                                        "raw", "overdue", "last_event", "removed"});
            for (const auto& c : clients_) in << c;
            in.complete();
        }
        tx_->exec0(upsert_);
        tx_->exec0("TRUNCATE clients_in");
        clients_.clear();
    }

    void flush_forgotten() {
        if (forgotten_.empty()) return;
        {
            pqxx::stream_to in(*tx_, "forgotten_in", std::vector<std::string>{"topic", "client", "last_event"});
            for (const auto& f : forgotten_) in << f;
            in.complete();
        }
        tx_->exec0("UPDATE clients c SET removed=1, last_event=f.last_event FROM forgotten_in f "
                   "WHERE c.client=f.client AND c.topic=f.topic");
        tx_->exec0("TRUNCATE forgotten_in");
        forgotten_.clear();
    }

    // A query's rows through a cursor, a chunk at a time (a million current rows are never all held at once).
    void in_chunks(const std::string& sql, const std::function<void(const pqxx::row&)>& visit) {
        pqxx::work tx(live());
        tx.exec0("DECLARE history_rows NO SCROLL CURSOR FOR " + sql);
        for (;;) {
            const auto chunk = tx.exec("FETCH 10000 FROM history_rows");
            for (const auto& r : chunk) visit(r);
            if (chunk.size() < 10000) break;
        }
        tx.commit();
    }

    std::string where_, name_;
    bool writable_;
    std::unique_ptr<pqxx::connection> conn_;
    std::atomic<int> sock_{-1};  // conn_'s socket, for interrupt() from another thread
    std::unique_ptr<pqxx::work> tx_;  // the batch's transaction, between begin() and commit()
    std::vector<event_tuple> events_;    // the batch's events, for one COPY at commit
    std::vector<client_tuple> clients_;  // the batch's clients' rows, likewise
    std::vector<std::tuple<std::string, std::string, std::int64_t>> forgotten_;  // removed clients, likewise
    std::string upsert_;
    std::int64_t next_id_ = 0, end_id_ = 0;  // ids reserved for events not written yet
};

}  // namespace

std::unique_ptr<history_database> open_postgres_history(const std::string& where, bool writable) {
    return std::make_unique<postgres_history>(where, writable);
}

}  // namespace mqtt_presence::detail
