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

#include <mqtt_presence/client_groups.hpp>
#include <mqtt_presence/duration.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/render.hpp>
#include <mqtt_presence/service/history_json.hpp>
#include <mqtt_presence/service/history_reader.hpp>
#include <mqtt_presence/version.hpp>

#include "dashboard_impl.hpp"
#include "http_pool.hpp"
#include "service_health.hpp"
#include "web_assets.hpp"


namespace mqtt_presence {

using namespace dashboard_util;

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

// --- shared pieces ---------------------------------------------------------------------------------------------

namespace dashboard_util {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json time_or_null(const std::optional<time_point>& t) { return t ? json(format_iso8601(*t)) : json(nullptr); }

std::int64_t ms_of(time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

bool all_digits(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool icontains(const std::string& hay, const std::string& needle) {
    return std::search(hay.begin(), hay.end(), needle.begin(), needle.end(), [](char a, char b) {
               return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
           }) != hay.end();
}

std::string state_of(const client_status& c) {
    return c.overdue ? "overdue" : c.stale ? "stale" : std::string(to_string(c.status));
}

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

}  // namespace dashboard_util

namespace {

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

}  // namespace

// --- the routes ------------------------------------------------------------------------------------------------

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
        json groups = json::array();
        const client_groups defined(svc.options().scan.groups);
        for (const auto& name : defined.names()) groups.push_back(name);
        const auto role = detail::role_json(svc);
        res.set_content(dump({{"version", mqtt_presence::version},
                              {"role", role["role"]},
                              {"leader", role["leader"]},
                              {"broker", svc.options().scan.broker.server_uri},
                              {"topics", filters},
                              {"groups", groups},
                              {"observer", svc.options().observer},
                              {"scanner", json::parse(render_scanner_json(svc.table().status()))}}) + "\n",
                        "application/json");
    });
    s.Get("/api/silences", [this](const httplib::Request&, httplib::Response& res) { list_silences(res); });
    s.Post("/api/silences", [this](const httplib::Request& req, httplib::Response& res) { add_silence(req, res); });
    s.Delete(R"(/api/silences/([0-9a-f]{1,32}))",
             [this](const httplib::Request& req, httplib::Response& res) { end_silence(req, res); });
    s.Get("/api/clients", [this](const httplib::Request& req, httplib::Response& res) { clients(req, res); });
    s.Get(R"(/api/clients/([^/]+))",
          [this](const httplib::Request& req, httplib::Response& res) { one_client(req, res); });
    s.Get(R"(/api/clients/([^/]+)/timeline)",
          [this](const httplib::Request& req, httplib::Response& res) { client_timeline(req, res); });
    // A client's page: the dashboard with its panel open (the view lives in the URL's fragment).
    s.Get(R"(/clients/([^/]+))", [](const httplib::Request& req, httplib::Response& res) {
        res.set_redirect("../#client=" + httplib::detail::encode_query_param(std::string(req.matches[1])));
    });
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
    d.commits = service.on_commit([&d](const std::vector<history_store::committed>& batch) {
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
    d.self_state = service.on_self([&d](const scanner_status& st) { d.feed.publish_state(render_scanner_json(st)); });
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
    d.commits.reset();  // the history and the service outlive the dashboard: they stop calling it
    d.self_state.reset();
    d.feed.close();
    d.server->stop();
    if (d.listener.joinable()) d.listener.join();
    d.guard.reset();
}

}  // namespace mqtt_presence

