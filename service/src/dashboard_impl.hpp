#pragma once
// The dashboard's private state and the helpers its parts share: routes and lifetime (dashboard.cpp), the client
// list and a client's page (dashboard_queries.cpp), the live feed (dashboard_events.cpp), /metrics and /healthz
// (dashboard_metrics.cpp).

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <mqtt_presence/service/dashboard.hpp>
#include <mqtt_presence/service/history_reader.hpp>
#include <mqtt_presence/service/presence_service.hpp>

#include "change_feed.hpp"
#include "connection_guard.hpp"

namespace mqtt_presence {

using json = nlohmann::json;

namespace dashboard_util {

/// JSON text; invalid UTF-8 from the network is replaced, never thrown on.
std::string dump(const json& j);
json time_or_null(const std::optional<time_point>& t);
std::int64_t ms_of(time_point t);
bool all_digits(std::string_view text);
bool icontains(const std::string& hay, const std::string& needle);
std::string state_of(const client_status& c);
/// A query parameter that must be a whole number within bounds; throws error naming it.
std::size_t number_param(const httplib::Request& req, const char* name, std::size_t fallback, std::size_t max);
void bad_request(httplib::Response& res, const std::string& why);
/// A live change as the feed sends it: the `events` JSON with the file's id and the cause in front.
std::string change_json(std::int64_t id, const change& c);
/// A change read back from the file, in the same shape.
std::string change_json(const history_event& e);

}  // namespace dashboard_util

struct dashboard::impl {
    impl(presence_service& s, http_options o) : svc(s), options(std::move(o)), reader(s.options().history.path, std::chrono::seconds(10)) {}

    presence_service& svc;
    http_options options;
    history_reader reader;
    detail::change_feed feed;
    std::unique_ptr<detail::connection_guard> guard;
    std::unique_ptr<httplib::Server> server;
    std::thread listener;
    int port = 0;
    subscription commits;     // the history's commits (the live feed, the kept figures)
    subscription self_state;  // the scanner's own state (the live feed)

    // Every client's 24-hour figures, for sorting the fleet by uptime or flaps: computed when asked, reused for
    // 10 s (a large fleet's history takes a while to read; nobody pays for it who does not sort by it).
    std::mutex uptime_mutex;
    std::map<std::pair<std::string, std::string>, uptime_figures> uptime;  // (client, topic)
    std::chrono::steady_clock::time_point uptime_at{};
    std::atomic<bool> stopped{false};

    std::map<std::pair<std::string, std::string>, uptime_figures> fleet_uptime() {
        std::lock_guard<std::mutex> lock(uptime_mutex);
        if (uptime_at == std::chrono::steady_clock::time_point{} ||
            std::chrono::steady_clock::now() - uptime_at > std::chrono::seconds(10)) {
            const auto now = clock::now();
            uptime.clear();
            for (auto& f : reader.uptime(now - std::chrono::hours(24), now, std::chrono::minutes(1)))
                uptime.emplace(std::make_pair(f.client, f.topic), std::move(f));
            uptime_at = std::chrono::steady_clock::now();
        }
        return uptime;
    }

    // Pages of GET /api/clients, shared by every viewer: one is built at a time, so HTTP work never takes both cores
    // from the intake, and a page built for the same query less than a second ago is served as it was built while
    // it holds everything viewers were told: the table has not changed since (same version), or the live feed has
    // said nothing since (same head; the table takes a change before the feed tells it). In a storm the table
    // changes thousands of times a second, the feed about ten.
    struct moment {
        std::uint64_t table_version = 0;
        std::uint64_t feed_head = 0;
    };
    struct built_page {
        moment as_of;
        std::chrono::steady_clock::time_point at{};
        std::string body;
    };
    static constexpr std::size_t max_built_pages = 64;
    std::timed_mutex page_build_mutex;  // bounded: a request waits 10 s at most, then gets 503
    std::mutex pages_mutex;
    std::map<std::string, built_page> pages;  // by the query's canonical text
    std::atomic<std::uint64_t> pages_built{0}, pages_shared{0};

    moment now_moment() { return {svc.table().version(), feed.head()}; }
    std::optional<std::string> built(const std::string& key, const moment& m) {
        std::lock_guard<std::mutex> lock(pages_mutex);
        const auto it = pages.find(key);
        if (it == pages.end() || std::chrono::steady_clock::now() - it->second.at >= std::chrono::seconds(1) ||
            (it->second.as_of.table_version != m.table_version && it->second.as_of.feed_head != m.feed_head))
            return std::nullopt;
        ++pages_shared;
        return it->second.body;
    }
    void keep(const std::string& key, const moment& m, const std::string& body) {
        std::lock_guard<std::mutex> lock(pages_mutex);
        if (pages.size() >= max_built_pages && pages.find(key) == pages.end()) {
            const auto oldest = std::min_element(pages.begin(), pages.end(), [](const auto& a, const auto& b) {
                return a.second.at < b.second.at;
            });
            pages.erase(oldest);
        }
        pages[key] = built_page{m, std::chrono::steady_clock::now(), body};
    }

    // A row's 24-hour figures (read from the history file), reused for 2 s while nothing of that row was committed
    // since: in a storm every build of a page would read the file again for each of its rows. Ages of 2 s on a
    // 24-hour strip do not show; a commit of the row reads it again (the history writer says which rows it
    // committed; a row's figures read between its change and the commit are not reused).
    struct kept_figures {
        std::int64_t commit = 0;  // the row's last commit when they were read
        std::uint64_t generation = 0;
        std::chrono::steady_clock::time_point at{};
        json figures;
    };
    static constexpr std::size_t max_kept_figures = 8192;
    static constexpr std::size_t max_commits_kept = 65536;
    static constexpr std::chrono::seconds figures_reuse{2};
    std::mutex figures_mutex;
    std::map<std::pair<std::string, std::string>, kept_figures> figures;  // by (client, topic)
    std::map<std::pair<std::string, std::string>, std::int64_t> last_commit;  // of each row committed lately
    std::uint64_t commits_generation = 0;  // moves when last_commit is cleared (bounded): every kept figure is stale

    // The history writer's thread, after each commit.
    void committed(const std::vector<history_store::committed>& batch) {
        std::lock_guard<std::mutex> lock(figures_mutex);
        if (last_commit.size() + batch.size() > max_commits_kept) {
            last_commit.clear();
            ++commits_generation;
        }
        for (const auto& c : batch) last_commit[{c.what->current.client, c.what->current.topic}] = c.id;
    }

    void routes();
    void limit_and_guard();  // threads, timeouts, body cap, the login; before routes()
    void bind();             // the port (throws address_in_use or error) and its backlog
    bool over_address_cap(const httplib::Request& req, httplib::Response& res) const;
    void clients(const httplib::Request& req, httplib::Response& res);
    // GET, POST /api/silences and DELETE /api/silences/{id} (dashboard_silences.cpp).
    void list_silences(httplib::Response& res);
    void add_silence(const httplib::Request& req, httplib::Response& res);
    void end_silence(const httplib::Request& req, httplib::Response& res);
    [[nodiscard]] bool may_change_silences(const httplib::Request& req, httplib::Response& res) const;
    std::string page_history(const std::vector<client_status>& rows);
    std::string history_members(const std::vector<client_status>& rows, bool& complete);
    void one_client(const httplib::Request& req, httplib::Response& res);
    // GET /api/clients/{name}/timeline?window=24h&topic=: its segments and figures over the window.
    void client_timeline(const httplib::Request& req, httplib::Response& res);
    [[nodiscard]] std::vector<interval> watched_until(time_point from, time_point now);
    void events(const httplib::Request& req, httplib::Response& res);
    void metrics(httplib::Response& res);
    void healthz(httplib::Response& res);
};

}  // namespace mqtt_presence
