#include <mqtt_presence/service/dashboard.hpp>

#include <httplib.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <thread>
#include <tuple>

#include <nlohmann/json.hpp>

#include <mqtt_presence/duration.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/render.hpp>
#include <mqtt_presence/service/history_json.hpp>
#include <mqtt_presence/service/history_reader.hpp>
#include <mqtt_presence/version.hpp>

#include "change_feed.hpp"
#include "connection_guard.hpp"
#include "http_pool.hpp"
#include "service_health.hpp"
#include "sink_stream.hpp"
#include "web_assets.hpp"

namespace mqtt_presence {

using json = nlohmann::json;

namespace {
bool all_digits(std::string_view text);
}  // namespace

// --- options ---------------------------------------------------------------------------------------------------

void http_options::parse_listen(const std::string& text) {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) throw error("--listen " + text + ": give HOST:PORT, e.g. 127.0.0.1:8080");
    std::string h = text.substr(0, colon);
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    const std::string p = text.substr(colon + 1);
    if (p.size() > 5 || !all_digits(p))
        throw error("--listen " + text + ": the port must be a number from 0 to 65535");
    host = h.empty() ? "0.0.0.0" : h;
    port = std::stoi(p);
}

void http_options::validate() const {
    if (port < 0 || port > 65535) throw error("the HTTP port must be 0 to 65535, not " + std::to_string(port));
    if (user.empty() != password.empty())
        throw error("Basic auth needs both a user (--http-user) and a password (--http-pw-env)");
    if (cert_file.empty() != key_file.empty()) throw error("HTTPS needs both --http-cert and --http-key");
    if (threads < 2) throw error("the HTTP server needs at least 2 threads");
    if (max_viewers < 1 || max_viewers >= threads) throw error("live viewers must be at least 1 and fewer than threads");
    if (max_per_address < 0) throw error("--http-max-per-address must be 0 (no cap) or more");
}

bool http_options::loopback() const { return host == "127.0.0.1" || host == "::1" || host == "localhost"; }

// --- JSON pieces -----------------------------------------------------------------------------------------------

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// "Basic <token>" with the scheme in any case (RFC 7617, RFC 9110: schemes are case-insensitive) and the token
// compared in constant time.
bool authorized(const std::string& header, const std::string& expected) {
    std::size_t at = 0;
    while (at < header.size() && header[at] == ' ') ++at;
    constexpr std::string_view scheme = "basic";
    if (header.size() < at + scheme.size() + 1) return false;
    for (std::size_t i = 0; i < scheme.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(header[at + i])) != scheme[i]) return false;
    at += scheme.size();
    if (header[at] != ' ') return false;
    while (at < header.size() && header[at] == ' ') ++at;
    auto end = header.size();
    while (end > at && header[end - 1] == ' ') --end;
    const auto given = std::string_view(header).substr(at, end - at);
    return given.size() == expected.size() && CRYPTO_memcmp(given.data(), expected.data(), given.size()) == 0;
}

// Whether binding host:port fails because something listens there (httplib's bind does not keep errno).
bool port_taken(const std::string& host, int port) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    addrinfo* found = nullptr;
    if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || !found) return false;
    const int fd = ::socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, found->ai_protocol);
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    const bool taken = fd >= 0 && ::bind(fd, found->ai_addr, found->ai_addrlen) != 0 && errno == EADDRINUSE;
    if (fd >= 0) ::close(fd);
    ::freeaddrinfo(found);
    return taken;
}

json time_or_null(const std::optional<time_point>& t) { return t ? json(format_iso8601(*t)) : json(nullptr); }

std::int64_t ms_of(time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// A live change as the feed sends it: the `events` JSON with the file's id and the cause in front.
std::string change_json(std::int64_t id, const change& c) {
    std::string body = render_change_json(c);
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
    return "{\"id\":" + std::to_string(id) + ",\"cause\":\"" + std::string(to_string(cause_of(c))) + "\"," +
           body.substr(1);
}

// A change read back from the file, in the same shape (the row holds what the file keeps).
std::string change_json(const history_event& e) {
    const char* kind = !e.previous ? "added"
                       : e.why == cause::removed ? "removed"
                       : e.why == cause::stale   ? "stale"
                       : e.why == cause::fresh   ? "fresh"
                                                 : "changed";
    json client{{"client", e.client},
                {"state", to_string(e.status)},
                {"stale", e.stale},
                {"topic", e.topic},
                {"ip", e.ip.empty() ? json(nullptr) : json(e.ip)},
                {"epoch", e.epoch ? json(*e.epoch) : json(nullptr)},
                {"since", time_or_null(e.time)}};
    return dump({{"id", e.id},
                 {"cause", to_string(e.why)},
                 {"event", kind},
                 {"previous", e.previous ? json(to_string(*e.previous)) : json(nullptr)},
                 {"client", client}});
}

bool all_digits(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool icontains(const std::string& hay, const std::string& needle) {
    return std::search(hay.begin(), hay.end(), needle.begin(), needle.end(), [](char a, char b) {
               return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
           }) != hay.end();
}

std::string state_of(const client_status& c) { return c.stale ? "stale" : std::string(to_string(c.status)); }

// A query parameter that must be a whole number within bounds; throws error naming it.
std::size_t number_param(const httplib::Request& req, const char* name, std::size_t fallback, std::size_t max) {
    if (!req.has_param(name)) return fallback;
    const auto text = req.get_param_value(name);
    if (text.size() > 12 || !all_digits(text))
        throw error(std::string(name) + " must be a whole number");
    return std::min<std::size_t>(std::stoull(text), max);
}

void bad_request(httplib::Response& res, const std::string& why) {
    res.status = 400;
    res.set_content(dump({{"error", why}}) + "\n", "application/json");
}

}  // namespace

// --- the server ------------------------------------------------------------------------------------------------

struct dashboard::impl {
    impl(presence_service& s, http_options o) : svc(s), options(std::move(o)), reader(s.options().history.path) {}

    presence_service& svc;
    http_options options;
    history_reader reader;
    detail::change_feed feed;
    std::unique_ptr<detail::connection_guard> guard;
    std::unique_ptr<httplib::Server> server;
    std::thread listener;
    int port = 0;

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
    std::string page_history(const std::vector<client_status>& rows);
    void one_client(const httplib::Request& req, httplib::Response& res);
    void events(const httplib::Request& req, httplib::Response& res);
    void metrics(httplib::Response& res);
    void healthz(httplib::Response& res);
};

void dashboard::impl::routes() {
    auto& s = *server;
    for (std::size_t i = 0; i < detail::web_asset_count; ++i) {
        const auto& asset = detail::web_assets[i];
        s.Get(std::string(asset.path), [&asset](const httplib::Request&, httplib::Response& res) {
            res.set_header("Content-Security-Policy",
                           "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'");
            res.set_header("X-Content-Type-Options", "nosniff");
            res.set_content(std::string(asset.body), std::string(asset.content_type));
        });
    }
    s.Get("/api/info", [this](const httplib::Request&, httplib::Response& res) {
        json filters = json::array();
        for (const auto& scheme : svc.table().schemes()) filters.push_back(scheme.filter());
        res.set_content(dump({{"version", mqtt_presence::version},
                              {"broker", svc.options().scan.broker.server_uri},
                              {"topics", filters},
                              {"observer", svc.options().observer},
                              {"scanner", json::parse(render_scanner_json(svc.table().status()))}}) + "\n",
                        "application/json");
    });
    s.Get("/api/clients", [this](const httplib::Request& req, httplib::Response& res) { clients(req, res); });
    s.Get(R"(/api/clients/([^/]+))",
          [this](const httplib::Request& req, httplib::Response& res) { one_client(req, res); });
    s.Get(R"(/api/clients/([^/]+)/history)", [this](const httplib::Request& req, httplib::Response& res) {
        try {
            const auto since = parse_duration(req.has_param("since") ? req.get_param_value("since") : "24h");
            const auto name = std::string(req.matches[1]);
            res.set_content(
                history_json(name, reader.events_of(name, clock::now() - since, req.get_param_value("topic"), 10000)) +
                    "\n",
                "application/json");
        } catch (const error& e) {
            bad_request(res, e.what());
        }
    });
    s.Get("/api/uptime", [this](const httplib::Request& req, httplib::Response& res) {
        try {
            const auto text = req.has_param("window") ? req.get_param_value("window") : "24h";
            const auto window = parse_duration(text);
            const auto to = clock::now();
            res.set_content(
                uptime_json(text, to - window, to, reader.uptime(to - window, to, std::chrono::minutes(1))) + "\n",
                "application/json");
        } catch (const error& e) {
            bad_request(res, e.what());
        }
    });
    s.Get("/api/alerts", [this](const httplib::Request& req, httplib::Response& res) {
        try {
            const auto limit = number_param(req, "limit", 100, 10000);
            std::string body = "{\"alerts\":[";
            bool first = true;
            for (const auto& a : reader.alerts(limit)) {
                body += (first ? "" : ",") + a;
                first = false;
            }
            res.set_content(body + "]}\n", "application/json");
        } catch (const error& e) {
            bad_request(res, e.what());
        }
    });
    s.Get("/api/events", [this](const httplib::Request& req, httplib::Response& res) { events(req, res); });
    s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) { metrics(res); });
    s.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) { healthz(res); });
}

namespace {

enum class sort_key : std::uint8_t { client, state, since, last_seen, ip, topic, uptime, flaps };

// What GET /api/clients asks for, checked.
struct clients_query {
    std::size_t limit = SIZE_MAX;
    std::size_t offset = 0;
    std::vector<std::string> states;
    std::string q, topic;
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
            if (st != "connected" && st != "disconnected" && st != "unknown" && st != "stale")
                throw error("state must be connected, disconnected, unknown or stale (comma-separated), not " + st);
            c.states.push_back(st);
        }
        c.q = req.get_param_value("q");
        c.topic = req.get_param_value("topic");
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
    [[nodiscard]] bool unfiltered() const { return states.empty() && q.empty() && topic.empty(); }

    // The query as one text, equal for equal queries (the shared pages' key).
    [[nodiscard]] std::string key() const {
        std::string k = std::to_string(limit) + '\0' + std::to_string(offset) + '\0' + q + '\0' + topic + '\0' +
                        std::to_string(static_cast<int>(sort)) + (descending ? "-" : "+") + (with_history ? "h" : "");
        for (const auto& st : states) k += '\0' + st;
        return k;
    }

    [[nodiscard]] bool passes(const client_status& c) const {
        if (!states.empty() && std::find(states.begin(), states.end(), state_of(c)) == states.end()) return false;
        if (!q.empty() && !icontains(c.client, q)) return false;
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
        if (query.with_history) extra_members += ",\"history\":" + page_history(rows);
        std::ostringstream out;
        {
            snapshot_writer writer(out, snapshot_format::json);
            for (const auto& r : rows) writer.row(r);
            const auto st = table.status();
            writer.finish(counts, stats, &st, extra_members);
        }
        ++pages_built;
        keep(key, read_at, out.str());
        res.set_content(out.str(), "application/json");
    } catch (const error& e) {
        bad_request(res, e.what());
    }
}

// A page's rows' 24-hour figures and strips, each from its own events.
std::string dashboard::impl::page_history(const std::vector<client_status>& rows) {
    const auto now = clock::now();
    const auto day = now - std::chrono::hours(24);
    std::optional<std::vector<interval>> watched;  // read once, and only if a row's figures are not at hand
    const auto watched_now = [&]() -> const std::vector<interval>& {
        if (watched) return *watched;
        // The file's watched intervals end at its last commit (at most a second ago): while the service watches,
        // the strip reaches now.
        watched = reader.watched(day, now);
        const auto live = svc.table().status();
        if (live.connected && live.sync != sync_state::syncing && !watched->empty() &&
            now - watched->back().to < std::chrono::seconds(5))
            watched->back().to = now;
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

void dashboard::impl::events(const httplib::Request& req, httplib::Response& res) {
    std::optional<std::int64_t> resume;
    const auto last = req.has_header("Last-Event-ID") ? req.get_header_value("Last-Event-ID") : req.get_param_value("last_id");
    if (last.size() < 19 && all_digits(last))
        resume = std::stoll(last);
    struct viewer {
        std::uint64_t cursor = 0;
        std::int64_t sent = -1;  // the last event id sent
        bool started = false;
    };
    if (feed.viewers() >= static_cast<std::size_t>(options.max_viewers)) {
        res.status = 503;
        res.set_header("Retry-After", "10");
        res.set_content("too many live viewers (" + std::to_string(options.max_viewers) + "); try again later\n",
                        "text/plain; charset=utf-8");
        return;
    }
    auto v = std::make_shared<viewer>();
    guard->streaming(req.remote_addr, req.remote_port, true);
    feed.viewer(+1);          // first: from here on the feed renders what the history commits
    v->cursor = feed.head();  // then: what it publishes from now on is followed; what came before is read
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, v, resume](std::size_t, httplib::DataSink& sink) {
            std::string out;
            if (!v->started) {
                v->started = true;
                out += "retry: 2000\n\n";
                out += "event: scanner\ndata: " + render_scanner_json(svc.table().status()) + "\n\n";
                if (resume) {
                    // What the viewer missed, from the file; a great many: it reloads instead.
                    v->sent = *resume;
                    constexpr std::size_t most = 5000;
                    const auto missed = reader.events_after(*resume, most + 1);
                    if (missed.size() > most) {
                        out += "event: reset\ndata: {\"missed\":" + std::to_string(missed.size()) + "}\n\n";
                    } else if (!missed.empty()) {
                        std::string list;
                        for (const auto& e : missed) list += (list.empty() ? "" : ",") + change_json(e);
                        v->sent = missed.back().id;
                        out += "id: " + std::to_string(v->sent) + "\nevent: changes\ndata: {\"changes\":[" + list +
                               "]}\n\n";
                    }
                }
                return sink.write(out.data(), out.size());
            }
            const auto messages = feed.after(v->cursor, std::chrono::seconds(15));
            if (feed.closed()) {
                sink.done();
                return false;
            }
            if (messages.empty()) out = ": keepalive\n\n";
            for (const auto& m : messages) {
                v->cursor = m.seq;
                if (!m.state.empty()) {
                    out += "event: scanner\ndata: " + m.state + "\n\n";
                    continue;
                }
                std::string list;
                for (const auto& [id, text] : m.changes)
                    if (id > v->sent) list += (list.empty() ? "" : ",") + text;
                if (!m.changes.empty()) v->sent = std::max(v->sent, m.changes.back().first);
                if (m.truncated > 0)
                    out += "id: " + std::to_string(v->sent) + "\nevent: reset\ndata: {\"truncated\":" +
                           std::to_string(m.truncated) + "}\n\n";
                else if (!list.empty())
                    out += "id: " + std::to_string(v->sent) + "\nevent: changes\ndata: {\"changes\":[" + list + "]}\n\n";
            }
            if (out.empty()) return true;
            return sink.write(out.data(), out.size());
        },
        [this, addr = req.remote_addr, port = req.remote_port](bool) {
            feed.viewer(-1);
            guard->streaming(addr, port, false);
        });
}

void dashboard::impl::metrics(httplib::Response& res) {
    std::string up, seen, since, transitions;
    auto& table = svc.table();
    const auto [counts, stats] = table.for_each_sorted([&](const client_status& c) {
        const auto labels = "{client=\"" + prometheus_label(c.client) + "\",topic=\"" + prometheus_label(c.topic) + "\"}";
        up += prometheus_up_sample(c);
        if (c.last_seen)
            seen += "mqtt_presence_last_seen_timestamp_seconds" + labels + " " + prometheus_seconds(*c.last_seen) +
                    "\n";
        if (c.since)
            since += "mqtt_presence_state_since_timestamp_seconds" + labels + " " + prometheus_seconds(*c.since) + "\n";
        transitions += "mqtt_presence_transitions_total" + labels + " " + std::to_string(c.transitions) + "\n";
    });
    const auto health = detail::assess(svc);  // every part read once, for the figures below too
    const auto& st = health.broker;
    const auto& h = health.history;
    const auto& alerts = health.alerts;
    std::string out;
    const auto family = [&out](const char* name, const char* type, const char* help, const std::string& samples) {
        out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + samples;
    };
    family("mqtt_presence_build_info", "gauge", "Always 1; the version of the service in a label.",
           std::string("mqtt_presence_build_info{version=\"") + mqtt_presence::version + "\"} 1\n");
    family("mqtt_presence_up", "gauge", "1 if the client is connected and not stale, else 0.", up);
    family("mqtt_presence_last_seen_timestamp_seconds", "gauge", "When the client's last message arrived.", seen);
    family("mqtt_presence_state_since_timestamp_seconds", "gauge", "When the client's current state began.", since);
    family("mqtt_presence_transitions_total", "counter", "State changes of the client since the history began.",
           transitions);
    out += render_prometheus_summary(counts, stats, &st);  // the same families as once --format prometheus
    struct scalar {
        const char* name;
        const char* type;
        const char* help;
        std::uint64_t value;
    };
    for (const auto& m : {
             scalar{"mqtt_presence_history_backlog", "gauge", "Changes waiting for the history's disk.", h.queued},
             scalar{"mqtt_presence_history_write_errors_total", "counter", "Commits to the history that failed.",
                    h.write_errors},
             scalar{"mqtt_presence_history_failing", "gauge", "1 while the history cannot be written.",
                    h.failing ? 1u : 0u},
             scalar{"mqtt_presence_history_cache_bytes", "gauge",
                    "The history writer's page cache (grows with the file, 64 MiB at most).", h.cache_bytes},
             scalar{"mqtt_presence_alerts_pending", "gauge", "Alerts waiting for their receiver.", alerts.count},
             scalar{"mqtt_presence_alerts_given_up_total", "counter", "Alerts never delivered.", alerts.given_up},
             scalar{"mqtt_presence_healthy", "gauge", "1 when /healthz says ok.", health.ok() ? 1u : 0u},
             scalar{"mqtt_presence_history_written_total", "counter", "Changes committed to the history.", h.written},
             scalar{"mqtt_presence_history_dropped_total", "counter", "Changes the history could not keep (a gap).",
                    h.dropped},
             scalar{"mqtt_presence_http_viewers", "gauge", "Live dashboard viewers connected.", feed.viewers()},
             scalar{"mqtt_presence_http_pages_built_total", "counter", "Pages of /api/clients built from the table.",
                    pages_built.load()},
             scalar{"mqtt_presence_http_pages_shared_total", "counter",
                    "Pages of /api/clients served as built for an earlier request (same query, same table version).",
                    pages_shared.load()},
         })
        family(m.name, m.type, m.help, std::string(m.name) + " " + std::to_string(m.value) + "\n");
    if (health.notary) {  // absent without a notary
        family("mqtt_presence_notary_connected", "gauge", "1 while the notary is connected.",
               "mqtt_presence_notary_connected " + std::string(health.notary->connected ? "1" : "0") + "\n");
        family("mqtt_presence_notary_pending", "gauge", "Notary records waiting for the broker.",
               "mqtt_presence_notary_pending " + std::to_string(health.notary->pending) + "\n");
    }
    if (alerts.oldest)
        family("mqtt_presence_alerts_oldest_pending_seconds", "gauge", "Age of the oldest alert not yet delivered.",
               "mqtt_presence_alerts_oldest_pending_seconds " +
                   std::to_string(std::chrono::duration_cast<std::chrono::seconds>(clock::now() - *alerts.oldest).count()) +
                   "\n");
    res.set_content(out, "text/plain; version=0.0.4; charset=utf-8");
}

void dashboard::impl::healthz(httplib::Response& res) {
    const auto h = detail::assess(svc);
    res.status = h.ok() ? 200 : 503;
    res.set_header("Cache-Control", "no-store");
    res.set_content(h.json_text() + "\n", "application/json");
}

// --- lifetime --------------------------------------------------------------------------------------------------

// What no client can exhaust, and the login (see the header). The guard reads the requests' start and end.
void dashboard::impl::limit_and_guard() {
    const auto threads = static_cast<std::size_t>(options.threads);
    server->new_task_queue = [threads] { return new detail::http_pool(threads); };
    server->set_payload_max_length(options.max_body);
    server->set_read_timeout(5, 0);
    server->set_write_timeout(5, 0);
    server->set_keep_alive_timeout(5);
    // One request per connection, answered with "Connection: close": httplib reads a pipelined second request
    // into the first one's buffer and then waits for the socket, so it would never be answered; closed at once,
    // a pipelining client retries it on a new connection (RFC 9112, 9.3.2).
    server->set_keep_alive_max_count(1);
    std::string expected;  // the credentials, base64, when a login is asked for
    if (!options.user.empty()) {
        const std::string credentials = options.user + ":" + options.password;
        std::string encoded(4 * ((credentials.size() + 2) / 3) + 1, '\0');
        const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()),
                                      reinterpret_cast<const unsigned char*>(credentials.data()),
                                      static_cast<int>(credentials.size()));
        encoded.resize(static_cast<std::size_t>(n));
        expected = encoded;
    }
    // Before the routes and before any byte of a body is read: the guard learns a request began, the login is
    // checked.
    server->set_pre_routing_handler([this, expected](const httplib::Request& req, httplib::Response& res) {
        if (guard) guard->request_began(req.remote_addr, req.remote_port);
        if (over_address_cap(req, res)) return httplib::Server::HandlerResponse::Handled;
        if (expected.empty() || authorized(req.get_header_value("Authorization"), expected))
            return httplib::Server::HandlerResponse::Unhandled;
        // A body larger than the cap is left to httplib, which answers 413 without reading it and closes. (After a
        // 401 it would read an unread body as the next request line, into a buffer without a bound.)
        const auto length = req.get_header_value("Content-Length");
        if (!length.empty() && (length.size() > 18 || !all_digits(length) || std::stoull(length) > options.max_body))
            return httplib::Server::HandlerResponse::Unhandled;
        res.status = 401;
        res.set_header("Connection", "close");
        res.set_header("WWW-Authenticate", "Basic realm=\"mqtt-presence\", charset=\"UTF-8\"");
        res.set_content("authentication required\n", "text/plain");
        return httplib::Server::HandlerResponse::Handled;
    });
    server->set_post_routing_handler([this](const httplib::Request& req, httplib::Response&) {
        if (guard) guard->request_ended(req.remote_addr, req.remote_port);
    });
}

// One address holding more connections than the cap: 503 for all but the probes, which must always answer.
bool dashboard::impl::over_address_cap(const httplib::Request& req, httplib::Response& res) const {
    if (!guard || options.max_per_address == 0 || req.path == "/healthz" || req.path == "/metrics") return false;
    const auto open = guard->open_from(req.remote_addr);
    if (open <= static_cast<std::size_t>(options.max_per_address)) return false;
    res.status = 503;
    res.set_header("Retry-After", "1");
    res.set_header("Connection", "close");
    res.set_content("too many connections from " + req.remote_addr + " (" + std::to_string(open) + ", at most " +
                        std::to_string(options.max_per_address) + ")\n",
                    "text/plain");
    return true;
}

// Binds the port. httplib's socket options are replaced (see below); a taken port is address_in_use.
void dashboard::impl::bind() {
    // httplib's default also sets SO_REUSEPORT, which lets a second service bind the same port and share its
    // requests: SO_REUSEADDR only (a restart may bind while old connections linger in TIME_WAIT).
    int listening = -1;
    server->set_socket_options([&listening](int sock) {
        int yes = 1;
        ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
        listening = sock;
    });
    if (options.port == 0) {
        port = server->bind_to_any_port(options.host);
        if (port <= 0) throw error("cannot listen on " + options.host + " (any port)");
    } else {
        if (!server->bind_to_port(options.host, options.port)) {
            const auto where = options.host + ":" + std::to_string(options.port);
            if (port_taken(options.host, options.port))
                throw address_in_use("cannot listen on " + where + ": the port is in use (another serve, or "
                                     "another program); stop it, or give another --listen");
            throw error("cannot listen on " + where + " (not an address of this machine?)");
        }
        port = options.port;
    }
    // httplib listens with a backlog of 5: a burst of connections (viewers reconnecting after a restart, a flood)
    // would overflow it. Linux takes a second listen() on the bound socket as the new backlog.
    if (listening >= 0) ::listen(listening, 1024);
}

dashboard::dashboard(presence_service& service, http_options options)
    : impl_(std::make_unique<impl>(service, std::move(options))) {
    auto& d = *impl_;
    d.options.validate();
    if (!d.options.cert_file.empty()) {
        d.server = std::make_unique<httplib::SSLServer>(d.options.cert_file.c_str(), d.options.key_file.c_str());
        if (!d.server->is_valid())
            throw error("cannot use the HTTPS certificate " + d.options.cert_file + " and key " + d.options.key_file);
    } else {
        d.server = std::make_unique<httplib::Server>();
    }
    d.limit_and_guard();
    d.routes();
    service.history().on_commit([&d](const std::vector<history_store::committed>& batch) {
        d.committed(batch);
        // With nobody watching, nothing to render (a viewer follows from when it connects, or reads the file).
        if (d.feed.viewers() == 0) return;
        constexpr std::size_t most = 1000;  // a storm: the viewers reload instead of drowning
        std::vector<std::pair<std::int64_t, std::string>> changes;
        const std::size_t skip = batch.size() > most ? batch.size() - most : 0;
        if (skip > 0) changes.emplace_back(batch.back().id, std::string());
        else
            for (const auto& c : batch) changes.emplace_back(c.id, change_json(c.id, *c.what));
        d.feed.publish_changes(std::move(changes), skip > 0 ? batch.size() : 0);
    });
    service.on_self([&d](const scanner_status& st) { d.feed.publish_state(render_scanner_json(st)); });
    d.bind();
    d.guard = std::make_unique<detail::connection_guard>(
        d.port, detail::connection_guard::limits{std::chrono::seconds(5), std::chrono::milliseconds(500),
                                                 static_cast<std::size_t>(d.options.threads) * 3 / 4,
                                                 64 * 1024, static_cast<std::size_t>(d.options.max_per_address)});
    d.listener = std::thread([&d] { d.server->listen_after_bind(); });
}

dashboard::~dashboard() noexcept { stop(); }

int dashboard::port() const noexcept { return impl_->port; }

std::string dashboard::url() const {
    const auto& o = impl_->options;
    const bool v6 = o.host.find(':') != std::string::npos;
    return std::string(o.cert_file.empty() ? "http" : "https") + "://" + (v6 ? "[" + o.host + "]" : o.host) + ":" +
           std::to_string(impl_->port) + "/";
}

void dashboard::stop() noexcept {
    auto& d = *impl_;
    if (d.stopped.exchange(true)) return;
    d.feed.close();
    d.server->stop();
    if (d.listener.joinable()) d.listener.join();
    d.guard.reset();
}

}  // namespace mqtt_presence
