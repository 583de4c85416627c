#pragma once
// dashboard: the service's HTTP side, from the same process and the same table as `serve`:
//   GET /                        the live page (assets built into the binary: no CDN, works air-gapped)
//   GET /api/clients             the snapshot in the `once --format json` shape; state=, q=, topic=, sort=, limit=,
//                                offset= (the answer says the total); history=1 adds 24-hour figures per row
//   GET /api/clients/{name}      one row (?topic= picks among schemes); 404 if absent
//   GET /api/clients/{name}/history?since=DUR   its transitions from the history
//   GET /api/uptime?window=DUR   the `uptime` command's figures
//   GET /api/events              Server-Sent Events: the changes as the history commits them (ids from the file, so
//                                a reconnect with Last-Event-ID misses nothing), batched per commit (~100 ms)
//   GET /metrics                 Prometheus text format
//   GET /healthz                 200 when every part is well (connected and synced, the history written, the notary
//                                connected, alerts delivered), else 503; a JSON body names each part and problem
// Read-only. Loopback by default; Basic auth and TLS optional. HTTP threads read copies of rows (the scanner's
// short-locked chunked reads), never the table under its lock while writing to a socket.
// Not exhaustible by idle, slow or greedy clients: bodies are capped (checked after the login, before a byte of the
// body is read), a connection outside a request is closed after 5 s of quiet (0.5 s when connections outnumber the
// threads), waiting connections are served newest first, live viewers are capped; /healthz and /metrics answer.

#include <cstdint>
#include <memory>
#include <string>

#include <mqtt_presence/service/presence_service.hpp>

namespace mqtt_presence {

struct http_options {
    std::string host = "127.0.0.1";  ///< loopback unless told otherwise
    int port = 8080;                 ///< 0: any free port (see dashboard::port())
    std::string user;                ///< with password: Basic auth on every route
    std::string password;
    std::string cert_file;           ///< with key_file: HTTPS
    std::string key_file;
    int threads = 256;               ///< at most; made as connections need them (each live viewer holds one)
    int max_viewers = 64;            ///< live viewers (/api/events) at once; more get 503
    std::size_t max_body = 16 * 1024;  ///< request bodies (the API is GET-only); larger: 413, never read
    /// Open connections from one client address; beyond it every request but /healthz and /metrics gets 503 and
    /// its quiet connections are closed sooner. 0: no cap (behind a reverse proxy, every client is one address).
    int max_per_address = 64;

    /// Parses "HOST:PORT" (or ":PORT", "[::1]:PORT"); throws mqtt_presence::error.
    void parse_listen(const std::string& text);
    /// Throws mqtt_presence::error naming the bad field.
    void validate() const;
    [[nodiscard]] bool loopback() const;
};

/// The HTTP port is taken (by another service or another program).
class address_in_use : public error {
public:
    using error::error;
};

class dashboard {
public:
    /// Binds the port (throws mqtt_presence::error when it cannot) and serves from its own threads. The service must
    /// outlive the dashboard; create it before the service starts, so that the live feed sees every commit.
    dashboard(presence_service& service, http_options options);
    ~dashboard() noexcept;
    dashboard(const dashboard&) = delete;
    dashboard& operator=(const dashboard&) = delete;

    /// The bound port (the chosen one when the options said 0).
    [[nodiscard]] int port() const noexcept;
    /// http(s)://host:port/
    [[nodiscard]] std::string url() const;
    /// Stops serving (live viewers are told to leave). Idempotent.
    void stop() noexcept;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace mqtt_presence
