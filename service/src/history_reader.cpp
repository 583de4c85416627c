#include <mqtt_presence/service/history_reader.hpp>

#include <algorithm>
#include <map>

#include <mqtt_presence/error.hpp>

#include "history_schema.hpp"

namespace mqtt_presence {

using detail::from_ms;
using detail::to_ms;

struct history_reader::connection {
    std::unique_ptr<SQLite::Database> db;
    std::string path;
};

namespace {

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

// The first event id observed at or after `ms`: ids grow with time, so a binary search over ids finds it without an
// index on the time.
std::int64_t first_id_at(SQLite::Database& db, std::int64_t ms) {
    std::int64_t lo = db.execAndGet("SELECT coalesce(min(id), 1) FROM events").getInt64();
    std::int64_t hi = db.execAndGet("SELECT coalesce(max(id), 0) FROM events").getInt64() + 1;
    SQLite::Statement at(db, "SELECT observed_ms FROM events WHERE id >= ? ORDER BY id LIMIT 1");
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

}  // namespace

template <class Query>
auto history_reader::locked(Query&& query) const {
    std::lock_guard<std::mutex> lock(mutex_);
    try {
        return query(*db_->db);
    } catch (const SQLite::Exception& e) {
        throw error("cannot read the history file " + db_->path + ": " + e.what());
    }
}

history_reader::history_reader(const std::string& path) : db_(std::make_unique<connection>()) {
    db_->db = detail::open_history(path, false);
    db_->path = path;
}

history_reader::~history_reader() noexcept = default;

std::vector<history_event> history_reader::events_of(const std::string& client, time_point since,
                                                     const std::string& topic, std::size_t limit) const {
    auto out = locked([&](SQLite::Database& db) {
        std::vector<history_event> events;
        // Each of the client's topics heads a chain of its events, newest first (events.prev_id).
        SQLite::Statement heads(db, std::string("SELECT last_event FROM clients WHERE client=?") +
                                        (topic.empty() ? "" : " AND topic=?"));
        heads.bind(1, client);
        if (!topic.empty()) heads.bind(2, topic);
        std::vector<std::int64_t> next;
        while (heads.executeStep()) next.push_back(heads.getColumn(0).getInt64());
        SQLite::Statement step(db, std::string(event_columns) + ", prev_id FROM events WHERE id=?");
        const auto since_ms = to_ms(since);
        for (auto id : next) {
            while (id > 0) {
                step.bind(1, id);
                if (!step.executeStep() || step.getColumn(1).getInt64() < since_ms) {  // pruned, or older
                    step.reset();
                    break;
                }
                events.push_back(read_event(step));
                id = step.getColumn(13).isNull() ? 0 : step.getColumn(13).getInt64();
                step.reset();
            }
        }
        return events;
    });
    std::sort(out.begin(), out.end(), [](const history_event& a, const history_event& b) { return a.id > b.id; });
    if (out.size() > limit) out.resize(limit);
    return out;
}

std::vector<history_event> history_reader::events_after(std::int64_t id, std::size_t limit) const {
    return locked([&](SQLite::Database& db) {
        std::vector<history_event> out;
        SQLite::Statement q(db, std::string(event_columns) + " FROM events WHERE id > ? ORDER BY id LIMIT ?");
        q.bind(1, id);
        q.bind(2, static_cast<std::int64_t>(std::min<std::size_t>(limit, INT64_MAX)));
        while (q.executeStep()) out.push_back(read_event(q));
        return out;
    });
}

std::vector<std::string> history_reader::alerts(std::size_t limit) const {
    return locked([&](SQLite::Database& db) {
        std::vector<std::string> out;
        SQLite::Statement q(db, "SELECT json FROM alerts ORDER BY id DESC LIMIT ?");
        q.bind(1, static_cast<std::int64_t>(std::min<std::size_t>(limit, INT64_MAX)));
        while (q.executeStep()) out.push_back(q.getColumn(0).getString());
        return out;
    });
}

std::vector<silence> history_reader::silences(time_point now) const {
    return locked([&](SQLite::Database& db) {
        std::vector<silence> out;
        SQLite::Statement q(db, "SELECT id, target, reason, by, from_ms, until_ms FROM silences WHERE ended_ms IS NULL "
                                "AND until_ms > ? ORDER BY until_ms");
        q.bind(1, static_cast<std::int64_t>(to_ms(now)));
        while (q.executeStep())
            out.push_back(silence{q.getColumn(0).getString(), q.getColumn(1).getString(), q.getColumn(2).getString(),
                                  q.getColumn(3).getString(), from_ms(q.getColumn(4).getInt64()),
                                  from_ms(q.getColumn(5).getInt64()), std::nullopt});
        return out;
    });
}

std::vector<std::pair<std::int64_t, std::string>> history_reader::undelivered_alerts(std::size_t limit) const {
    return locked([&](SQLite::Database& db) {
        std::vector<std::pair<std::int64_t, std::string>> out;
        SQLite::Statement q(db, "SELECT id, json FROM alerts WHERE delivered_ms IS NULL ORDER BY id LIMIT ?");
        q.bind(1, static_cast<std::int64_t>(std::min<std::size_t>(limit, INT64_MAX)));
        while (q.executeStep()) out.emplace_back(q.getColumn(0).getInt64(), q.getColumn(1).getString());
        return out;
    });
}

std::vector<std::pair<std::string, std::string>> history_reader::down_alerted() const {
    return locked([](SQLite::Database& db) {
        std::vector<std::pair<std::string, std::string>> out;
        SQLite::Statement q(db, "SELECT client, topic, kind FROM alerts WHERE id IN (SELECT max(id) FROM alerts WHERE "
                                "kind IN ('down', 'recovered', 'overdue', 'back') AND client IS NOT NULL GROUP BY client, topic)");
        while (q.executeStep())
            if (q.getColumn(2).getString() == "down" || q.getColumn(2).getString() == "overdue")
                out.emplace_back(q.getColumn(0).getString(), q.getColumn(1).getString());
        return out;
    });
}

std::vector<client_status> history_reader::current_rows() const {
    return locked([](SQLite::Database& db) {
        std::vector<client_status> rows;
        SQLite::Statement q(db, detail::current_rows_sql);
        while (q.executeStep()) rows.push_back(detail::read_client_row(q));
        return rows;
    });
}

std::vector<interval> history_reader::watched(time_point from, time_point to) const {
    const auto read = [&](const char* sql) {
        return locked([&](SQLite::Database& db) {
            std::vector<interval> out;
            SQLite::Statement q(db, sql);
            q.bind(1, static_cast<std::int64_t>(to_ms(from)));
            q.bind(2, static_cast<std::int64_t>(to_ms(to)));
            while (q.executeStep()) {
                const auto a = std::max(from, from_ms(q.getColumn(0).getInt64()));
                const auto b = std::min(to, from_ms(q.getColumn(1).getInt64()));
                if (b > a) out.push_back({a, b});
            }
            return out;
        });
    };
    const auto spans = read("SELECT from_ms, to_ms FROM watch WHERE to_ms >= ? AND from_ms <= ? ORDER BY from_ms");
    const auto gaps = read("SELECT from_ms, to_ms FROM gaps WHERE to_ms >= ? AND from_ms <= ? ORDER BY from_ms");
    // Merge overlapping spans (two services on one file, or a clock step), then cut the gaps out.
    std::vector<interval> merged;
    for (const auto& s : spans) {
        if (!merged.empty() && s.from <= merged.back().to) merged.back().to = std::max(merged.back().to, s.to);
        else merged.push_back(s);
    }
    for (const auto& g : gaps) {
        std::vector<interval> cut;
        for (const auto& s : merged) {
            if (g.to <= s.from || g.from >= s.to) {
                cut.push_back(s);
                continue;
            }
            if (s.from < g.from) cut.push_back({s.from, g.from});
            if (g.to < s.to) cut.push_back({g.to, s.to});
        }
        merged.swap(cut);
    }
    return merged;
}

std::vector<uptime_figures> history_reader::uptime(time_point from, time_point to,
                                                   std::chrono::milliseconds flap_interval) const {
    const auto spans = watched(from, to);
    std::map<std::pair<std::string, std::string>, std::pair<std::optional<client_status>, std::vector<history_event>>>
        clients;  // (client, topic) -> (row now, events in the window)
    for (auto& row : current_rows()) {
        auto key = std::make_pair(row.client, row.topic);
        clients[key].first = std::move(row);
    }
    locked([&](SQLite::Database& db) {
        SQLite::Statement q(db, std::string(event_columns) + " FROM events WHERE id >= ? AND observed_ms <= ? ORDER BY id");
        q.bind(1, first_id_at(db, to_ms(from)));
        q.bind(2, static_cast<std::int64_t>(to_ms(to)));
        while (q.executeStep()) {
            auto e = read_event(q);
            if (e.observed < from) continue;  // a clock step put it out of order
            auto key = std::make_pair(e.client, e.topic);
            clients[key].second.push_back(std::move(e));
        }
    });
    std::vector<uptime_figures> out;
    out.reserve(clients.size());
    for (const auto& [key, data] : clients)
        out.push_back(compute_uptime(key.first, key.second, data.first, data.second, spans, from, to, flap_interval));
    return out;
}

}  // namespace mqtt_presence
