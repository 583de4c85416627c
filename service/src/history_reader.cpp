#include <mqtt_presence/service/history_reader.hpp>

#include <algorithm>
#include <map>

#include <mqtt_presence/error.hpp>

#include "call_deadline.hpp"
#include "history_database.hpp"

namespace mqtt_presence {

using detail::from_ms;
using detail::to_ms;

struct history_reader::connection {
    std::unique_ptr<detail::history_database> db;
    std::chrono::milliseconds bound{0};
    std::unique_ptr<detail::call_deadline> deadline;  // with a bound: ends a query that outlives it
};

template <class Query>
auto history_reader::locked(Query&& query) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& c = *db_;
    const auto late_before = c.deadline ? c.deadline->late() : 0;
    try {
        if (!c.deadline) return query(*c.db);
        detail::history_database* db = c.db.get();
        const auto guard = c.deadline->arm(c.bound, [db] { db->interrupt(); });
        return query(*db);
    } catch (const std::exception& e) {
        if (c.deadline && c.deadline->late() != late_before)
            throw error("the history " + c.db->name() + " did not answer within " +
                        std::to_string(c.bound.count()) + " ms");
        if (dynamic_cast<const error*>(&e)) throw;
        throw error("cannot read the history " + c.db->name() + ": " + e.what());
    }
}

history_reader::history_reader(const std::string& path, std::chrono::milliseconds bound)
    : db_(std::make_unique<connection>()) {
    db_->db = detail::open_history_database(path, false);
    db_->bound = bound;
    if (bound.count() > 0) db_->deadline = std::make_unique<detail::call_deadline>();
}

history_reader::~history_reader() noexcept = default;

const std::string& history_reader::name() const noexcept { return db_->db->name(); }

std::vector<history_event> history_reader::events_of(const std::string& client, time_point since,
                                                     const std::string& topic, std::size_t limit) const {
    auto out = locked([&](detail::history_database& db) { return db.chain_events(client, topic, to_ms(since)); });
    std::sort(out.begin(), out.end(), [](const history_event& a, const history_event& b) { return a.id > b.id; });
    if (out.size() > limit) out.resize(limit);
    return out;
}

std::vector<history_event> history_reader::events_after(std::int64_t id, std::size_t limit) const {
    return locked([&](detail::history_database& db) { return db.events_after(id, limit); });
}

std::vector<std::string> history_reader::alerts(std::size_t limit) const {
    return locked([&](detail::history_database& db) { return db.alerts(limit); });
}

std::vector<silence> history_reader::silences(time_point now) const {
    return locked([&](detail::history_database& db) { return db.silences(to_ms(now)); });
}

std::vector<std::pair<std::int64_t, std::string>> history_reader::undelivered_alerts(std::size_t limit) const {
    return locked([&](detail::history_database& db) { return db.undelivered_alerts(limit); });
}

std::vector<std::pair<std::string, std::string>> history_reader::down_alerted() const {
    std::vector<std::pair<std::string, std::string>> out;
    for (auto& a : locked([](detail::history_database& db) { return db.latest_client_alerts(); }))
        if (a.kind == "down" || a.kind == "overdue") out.emplace_back(std::move(a.client), std::move(a.topic));
    return out;
}

std::vector<learned_cadence> history_reader::cadences() const {
    return locked([](detail::history_database& db) { return db.cadences(); });
}

std::vector<client_status> history_reader::current_rows() const {
    return locked([](detail::history_database& db) {
        std::vector<client_status> rows;
        db.for_each_current_row([&rows](const client_status& r) { rows.push_back(r); });
        return rows;
    });
}

history_reader::writer_activity history_reader::writer() const {
    const auto w = locked([](detail::history_database& db) { return db.writer(); });
    writer_activity out;
    out.present = w.present;
    out.who = w.who;
    out.last_event_id = w.last_event_id;
    if (w.last_observed_ms) out.last_observed = from_ms(*w.last_observed_ms);
    if (w.idle_ms) out.idle = std::chrono::milliseconds(*w.idle_ms);
    return out;
}

bool history_reader::end_writer() const {
    return locked([](detail::history_database& db) { return db.end_writer(); });
}

std::vector<interval> history_reader::watched(time_point from, time_point to) const {
    const auto read = [&](detail::history_database::span_table table) {
        return locked([&](detail::history_database& db) {
            std::vector<interval> out;
            for (const auto& [f, t] : db.spans(table, to_ms(from), to_ms(to))) {
                const auto a = std::max(from, from_ms(f));
                const auto b = std::min(to, from_ms(t));
                if (b > a) out.push_back({a, b});
            }
            return out;
        });
    };
    const auto spans = read(detail::history_database::span_table::watch);
    const auto gaps = read(detail::history_database::span_table::gaps);
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
    locked([&](detail::history_database& db) {
        db.for_each_event_in(to_ms(from), to_ms(to), [&](history_event&& e) {
            if (e.observed < from) return;  // a clock step put it out of order
            auto key = std::make_pair(e.client, e.topic);
            clients[key].second.push_back(std::move(e));
        });
    });
    std::vector<uptime_figures> out;
    out.reserve(clients.size());
    for (const auto& [key, data] : clients)
        out.push_back(compute_uptime(key.first, key.second, data.first, data.second, spans, from, to, flap_interval));
    return out;
}

}  // namespace mqtt_presence
