// GET /api/clients (one page of the client list, shared by viewers) and GET /api/clients/{name}.
#include <algorithm>
#include <map>
#include <optional>
#include <sstream>
#include <tuple>

#include <mqtt_presence/duration.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/render.hpp>
#include <mqtt_presence/service/history_json.hpp>

#include "dashboard_impl.hpp"
#include "sink_stream.hpp"

namespace mqtt_presence {

using namespace dashboard_util;

namespace {

enum class sort_key : std::uint8_t { client, state, since, last_seen, ip, topic, uptime, flaps };

// What GET /api/clients asks for, checked.
struct clients_query {
    std::size_t limit = SIZE_MAX;
    std::size_t offset = 0;
    std::vector<std::string> states;
    std::string q, topic, group;
    sort_key sort = sort_key::client;
    bool descending = false;
    bool with_history = false;

    static clients_query parse(const httplib::Request& req) {
        clients_query c;
        c.limit = number_param(req, "limit", SIZE_MAX, SIZE_MAX);
        c.offset = number_param(req, "offset", 0, SIZE_MAX);
        std::stringstream in(req.get_param_value("state"));
        for (std::string st; std::getline(in, st, ',');) {
            if (st.empty()) continue;
            if (st != "connected" && st != "disconnected" && st != "unknown" && st != "stale" && st != "overdue")
                throw error("state must be connected, disconnected, unknown, stale or overdue (comma-separated), not " +
                            st);
            c.states.push_back(st);
        }
        c.q = req.get_param_value("q");
        c.topic = req.get_param_value("topic");
        c.group = req.get_param_value("group");
        std::string sort = req.has_param("sort") ? req.get_param_value("sort") : "client";
        c.descending = !sort.empty() && sort.front() == '-';
        if (c.descending) sort.erase(0, 1);
        static const std::pair<const char*, sort_key> sorts[] = {
            {"client", sort_key::client}, {"state", sort_key::state}, {"since", sort_key::since},
            {"last_seen", sort_key::last_seen}, {"ip", sort_key::ip}, {"topic", sort_key::topic},
            {"uptime", sort_key::uptime}, {"flaps", sort_key::flaps}};
        const auto it = std::find_if(std::begin(sorts), std::end(sorts), [&](const auto& p) { return sort == p.first; });
        if (it == std::end(sorts))
            throw error("sort must be one of client, state, since, last_seen, ip, topic, uptime, flaps (- for descending)");
        c.sort = it->second;
        c.with_history = req.get_param_value("history") == "1";
        return c;
    }

    [[nodiscard]] bool by_name() const { return sort == sort_key::client && !descending; }
    [[nodiscard]] bool unfiltered() const { return states.empty() && q.empty() && topic.empty() && group.empty(); }

    // The query as one text, equal for equal queries (the shared pages' key).
    [[nodiscard]] std::string key() const {
        std::string k = std::to_string(limit) + '\0' + std::to_string(offset) + '\0' + q + '\0' + topic + '\0' +
                        group + '\0' +
                        std::to_string(static_cast<int>(sort)) + (descending ? "-" : "+") + (with_history ? "h" : "");
        for (const auto& st : states) k += '\0' + st;
        return k;
    }

    [[nodiscard]] bool passes(const client_status& c) const {
        if (!states.empty() && std::find(states.begin(), states.end(), state_of(c)) == states.end()) return false;
        if (!q.empty() && !icontains(c.client, q)) return false;
        if (!group.empty() && std::find(c.groups.begin(), c.groups.end(), group) == c.groups.end()) return false;
        return topic.empty() || c.topic.find(topic) != std::string::npos;
    }

    // The members that join the snapshot's object: the match's total and the page asked for.
    [[nodiscard]] std::string paging(std::size_t total) const {
        return ",\"total\":" + std::to_string(total) + ",\"offset\":" + std::to_string(std::min(offset, total)) +
               ",\"limit\":" + (limit == SIZE_MAX ? std::string("null") : std::to_string(limit));
    }
};

using uptime_map = std::map<std::pair<std::string, std::string>, uptime_figures>;  // by (client, topic)

// The rows of one page of GET /api/clients, with the counts of the whole table and the total that match. By name,
// only the page's rows are copied; any other order needs every matching row first.
std::vector<client_status> page_rows(scanner& table, const clients_query& query,
                                     const std::function<uptime_map()>& fleet_uptime, std::size_t& total,
                                     table_counts& counts, table_stats& stats) {
    if (query.by_name() && query.unfiltered() && query.limit != SIZE_MAX) {
        // The page everyone opens: the first rows by name, found by a partial sort under the scanner's lock instead
        // of a copy of every row (a storm's intake waits on that lock).
        const std::size_t want = query.offset > SIZE_MAX - query.limit ? SIZE_MAX : query.offset + query.limit;
        auto rows = table.snapshot(want);
        counts = table.counts();
        stats = table.stats();
        total = counts.total();
        rows.erase(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(std::min(query.offset, rows.size())));
        return rows;
    }
    std::vector<client_status> rows;
    std::tie(counts, stats) = table.for_each_sorted([&](const client_status& c) {
        if (!query.passes(c)) return;
        const std::size_t at = total++;
        if (!query.by_name() || (at >= query.offset && at - query.offset < query.limit)) rows.push_back(c);
    });
    if (!query.by_name()) {
        uptime_map figures;
        if (query.sort == sort_key::uptime || query.sort == sort_key::flaps) figures = fleet_uptime();
        const auto figure = [&figures](const client_status& c) -> const uptime_figures* {
            const auto it = figures.find({c.client, c.topic});
            return it == figures.end() ? nullptr : &it->second;
        };
        const auto less = [&](const client_status& a, const client_status& b) -> bool {
            switch (query.sort) {
                case sort_key::client: return false;  // already by name: descending reverses below
                case sort_key::state: return state_of(a) < state_of(b);
                case sort_key::since: return a.since.value_or(time_point::min()) < b.since.value_or(time_point::min());
                case sort_key::last_seen:
                    return a.last_seen.value_or(time_point::min()) < b.last_seen.value_or(time_point::min());
                case sort_key::ip: return a.ip < b.ip;
                case sort_key::topic: return a.topic < b.topic;
                case sort_key::flaps: {
                    const auto *fa = figure(a), *fb = figure(b);
                    return (fa ? fa->flaps : 0) < (fb ? fb->flaps : 0);
                }
                case sort_key::uptime: break;
            }
            const auto *fa = figure(a), *fb = figure(b);
            return (fa ? fa->uptime_percent().value_or(-1) : -1) < (fb ? fb->uptime_percent().value_or(-1) : -1);
        };
        // Sort indices, not rows (a row is a dozen strings), then move out the page.
        std::vector<std::uint32_t> order(rows.size());
        for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
        if (query.sort == sort_key::client) std::reverse(order.begin(), order.end());
        else
            std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
                return query.descending ? less(rows[b], rows[a]) : less(rows[a], rows[b]);
            });
        const std::size_t first = std::min(query.offset, order.size());
        const std::size_t last = query.limit == SIZE_MAX ? order.size() : std::min(order.size(), first + query.limit);
        std::vector<client_status> page;
        page.reserve(last - first);
        for (std::size_t i = first; i < last; ++i) page.push_back(std::move(rows[order[i]]));
        rows.swap(page);
    }
    return rows;
}

}  // namespace

void dashboard::impl::clients(const httplib::Request& req, httplib::Response& res) {
    try {
        const auto query = clients_query::parse(req);
        auto& table = svc.table();
        if (query.by_name() && query.limit == SIZE_MAX && !query.with_history) {
            // The whole fleet, by name: streamed from the table as it is read, never held as rows or as one text.
            res.set_chunked_content_provider(
                "application/json", [this, query](std::size_t, httplib::DataSink& sink) {
                    detail::sink_stream out(sink);
                    snapshot_writer writer(out, snapshot_format::json);
                    std::size_t total = 0;
                    auto& t = svc.table();
                    const auto [counts, stats] = t.for_each_sorted([&](const client_status& c) {
                        if (query.passes(c) && total++ >= query.offset) writer.row(c);
                    });
                    const auto st = t.status();
                    writer.finish(counts, stats, &st, query.paging(total));
                    sink.done();
                    return true;
                });
            return;
        }

        // One page built at a time, shared by every viewer that asks for the same one meanwhile.
        const auto key = query.key();
        auto shared = built(key, now_moment());
        if (shared) {
            res.set_content(std::move(*shared), "application/json");
            return;
        }
        std::unique_lock<std::timed_mutex> one_at_a_time(page_build_mutex, std::defer_lock);
        if (!one_at_a_time.try_lock_for(std::chrono::seconds(10))) {
            res.status = 503;
            res.set_header("Retry-After", "1");
            res.set_content(R"({"error":"the service is busy building pages; retry"})", "application/json");
            return;
        }
        const auto read_at = now_moment();  // before the read: a change during it makes the next ask rebuild
        shared = built(key, read_at);
        if (shared) {
            res.set_content(std::move(*shared), "application/json");
            return;
        }
        std::size_t total = 0;
        table_counts counts;
        table_stats stats;
        auto rows = page_rows(table, query, [this] { return fleet_uptime(); }, total, counts, stats);
        std::string extra_members = query.paging(total);
        bool complete = true;  // a page without the figures it asked for is not shared
        if (query.with_history) extra_members += history_members(rows, complete);
        std::ostringstream out;
        {
            snapshot_writer writer(out, snapshot_format::json);
            writer.group_totals(false);  // a page's rows are not the group
            for (const auto& r : rows) writer.row(r);
            const auto st = table.status();
            writer.finish(counts, stats, &st, extra_members);
        }
        ++pages_built;
        if (complete) keep(key, read_at, out.str());
        res.set_content(out.str(), "application/json");
    } catch (const error& e) {
        bad_request(res, e.what());
    }
}

// A page's 24-hour figures as members of its JSON, or null with the reason when the history cannot be read now (a
// database away; `complete` turns false): the live rows are served all the same.
std::string dashboard::impl::history_members(const std::vector<client_status>& rows, bool& complete) {
    try {
        return ",\"history\":" + page_history(rows);
    } catch (const error& e) {
        complete = false;
        return ",\"history\":null,\"history_error\":" +
               json(e.what()).dump(-1, ' ', false, json::error_handler_t::replace);
    }
}

// The intervals the history watched in [from, now]. The file's end at its last commit (at most a second ago): while
// the service watches, the last one reaches now.
std::vector<interval> dashboard::impl::watched_until(time_point from, time_point now) {
    auto watched = reader.watched(from, now);
    const auto live = svc.table().status();
    if (live.connected && live.sync != sync_state::syncing && !watched.empty() &&
        now - watched.back().to < std::chrono::seconds(5))
        watched.back().to = now;
    return watched;
}

// A page's rows' 24-hour figures and strips, each from its own events.
std::string dashboard::impl::page_history(const std::vector<client_status>& rows) {
    const auto now = clock::now();
    const auto day = now - std::chrono::hours(24);
    std::optional<std::vector<interval>> watched;  // read once, and only if a row's figures are not at hand
    const auto watched_now = [&]() -> const std::vector<interval>& {
        if (!watched) watched = watched_until(day, now);
        return *watched;
    };
    json extra = json::array();
    for (const auto& row : rows) {
        // The lock only around the lookups: the history writer takes it after every commit.
        const auto key = std::make_pair(row.client, row.topic);
        kept_figures fresh;
        {
            std::lock_guard<std::mutex> lock(figures_mutex);
            const auto commit = last_commit.find(key);
            fresh.commit = commit == last_commit.end() ? 0 : commit->second;
            fresh.generation = commits_generation;
            const auto kept = figures.find(key);
            if (kept != figures.end() && kept->second.commit == fresh.commit &&
                kept->second.generation == fresh.generation &&
                std::chrono::steady_clock::now() - kept->second.at < figures_reuse) {
                extra.push_back(kept->second.figures);
                continue;
            }
        }
        auto events = reader.events_of(row.client, day, row.topic);
        std::reverse(events.begin(), events.end());  // oldest first
        const auto f = compute_uptime(row.client, row.topic, row, events, watched_now(), day, now,
                                      std::chrono::minutes(1));
        json strip = json::array();
        for (const auto& seg : compute_timeline(row, events, watched_now(), day, now))
            strip.push_back(json::array({ms_of(seg.from), ms_of(seg.to), to_string(seg.health)}));
        const auto p = f.uptime_percent();
        fresh.at = std::chrono::steady_clock::now();
        fresh.figures = {{"uptime_percent", p ? json(std::round(*p * 10) / 10) : json(nullptr)},
                         {"flaps", f.flaps},
                         {"disconnects", f.disconnects},
                         {"last_down", time_or_null(row.last_down)},
                         {"transitions", row.transitions},
                         {"timeline", strip}};
        extra.push_back(fresh.figures);
        std::lock_guard<std::mutex> lock(figures_mutex);
        if (figures.size() >= max_kept_figures) figures.clear();
        figures[key] = std::move(fresh);
    }
    return dump(extra);
}

void dashboard::impl::client_timeline(const httplib::Request& req, httplib::Response& res) {
    try {
        const auto text = req.has_param("window") ? req.get_param_value("window") : "24h";
        const auto window = parse_duration(text);
        if (window < std::chrono::minutes(1) || window > std::chrono::hours(24 * 400))
            throw error("window must be from 1m to 400d");
        const auto name = std::string(req.matches[1]);
        auto topic = req.get_param_value("topic");
        std::optional<client_status> row;
        auto& table = svc.table();
        for (std::size_t i = 0; i < table.schemes().size() && !row; ++i) {
            auto found = table.find(name, static_cast<std::uint16_t>(i));
            if (found && (topic.empty() || found->topic == topic)) row = std::move(found);
        }
        if (row) topic = row->topic;
        const auto now = clock::now();
        const auto from = now - window;
        auto events = reader.events_of(name, from, topic);
        if (!row && events.empty()) {
            res.status = 404;
            res.set_content(dump({{"error", "no such client"}, {"client", name}}) + "\n", "application/json");
            return;
        }
        std::reverse(events.begin(), events.end());  // oldest first
        const auto watched = watched_until(from, now);
        const auto f = compute_uptime(name, topic, row, events, watched, from, now, std::chrono::minutes(1));
        json segments = json::array();
        for (const auto& seg : compute_timeline(row, events, watched, from, now))
            segments.push_back(json::array({ms_of(seg.from), ms_of(seg.to), to_string(seg.shade)}));
        const auto p = f.uptime_percent();
        const auto seconds = [](std::chrono::milliseconds d) { return static_cast<double>(d.count()) / 1000.0; };
        res.set_content(dump({{"client", name},
                              {"topic", topic},
                              {"window", text},
                              {"from", ms_of(from)},
                              {"to", ms_of(now)},
                              {"uptime_percent", p ? json(*p) : json(nullptr)},
                              {"up_s", seconds(f.up)},
                              {"down_s", seconds(f.down)},
                              {"unknown_s", seconds(f.unknown)},
                              {"disconnects", f.disconnects},
                              {"flaps", f.flaps},
                              {"longest_outage_s", seconds(f.longest_outage)},
                              {"segments", segments}}) +
                            "\n",
                        "application/json");
    } catch (const error& e) {
        bad_request(res, e.what());
    }
}

void dashboard::impl::one_client(const httplib::Request& req, httplib::Response& res) {
    const auto name = std::string(req.matches[1]);
    const auto topic = req.get_param_value("topic");
    auto& table = svc.table();
    for (std::size_t i = 0; i < table.schemes().size(); ++i) {
        auto row = table.find(name, static_cast<std::uint16_t>(i));
        if (!row || (!topic.empty() && row->topic != topic)) continue;
        std::ostringstream out;
        {
            snapshot_writer writer(out, snapshot_format::ndjson);
            writer.row(*row);
            writer.finish({}, {});  // NDJSON: one row, no counters
        }
        res.set_content(out.str(), "application/json");
        return;
    }
    res.status = 404;
    res.set_content(dump({{"error", "no such client"}, {"client", name}}) + "\n", "application/json");
}


}  // namespace mqtt_presence
