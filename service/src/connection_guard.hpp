#pragma once
// connection_guard: keeps the dashboard's HTTP threads for requests. cpp-httplib 0.11 gives a connection a thread
// from accept() on and has no deadline for a request's headers (its read timeout is per read, so a client that
// sends a byte every few seconds holds a thread forever) and no per-request hook before the headers are complete.
// The guard closes, from a thread of its own, every connection of the server that is not inside a request and has
// been quiet too long: 5 s normally, 0.5 s once more connections are open than threads can serve; and one that has
// sent more than 64 KiB since it was last at rest (a request line or headers without end, which httplib would
// buffer without a bound), checked every 100 ms by the kernel's count of bytes received (TCP_INFO). Requests report
// their start and end (pre- and post-routing handlers), live streams their whole life.
//
// The connections are found as the process's sockets whose local port is the server's. A socket is shut down
// through a duplicate of its descriptor whose local and peer addresses were checked first: the pair is unique per
// connection, and the duplicate keeps that very socket, so a descriptor number that httplib closed and reused
// meanwhile is never touched. Private to the service library.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace mqtt_presence::detail {

class connection_guard {
public:
    struct limits {
        std::chrono::milliseconds quiet{5000};                ///< a connection outside a request, at most
        std::chrono::milliseconds quiet_under_pressure{500};  ///< the same when connections outnumber `pressure_at`
        std::size_t pressure_at = 192;
        /// Bytes a connection may send between requests (a request line and headers) before it is closed.
        std::uint64_t max_head = 64 * 1024;
        /// Open connections from one peer address before its quiet ones are closed after quiet_under_pressure;
        /// 0: no cap.
        std::size_t max_per_address = 0;
    };
    connection_guard(int port, limits l);
    ~connection_guard() noexcept;
    connection_guard(const connection_guard&) = delete;
    connection_guard& operator=(const connection_guard&) = delete;

    /// From the request's thread (peer address and port as httplib reports them).
    void request_began(const std::string& addr, int port);
    void request_ended(const std::string& addr, int port);
    void streaming(const std::string& addr, int port, bool on);

    /// Connections closed for being quiet too long, and connections open now.
    [[nodiscard]] std::uint64_t closed() const;
    [[nodiscard]] std::size_t open() const;
    /// Connections open from `addr` (as httplib reports a peer address) at the last sweep.
    [[nodiscard]] std::size_t open_from(const std::string& addr) const;

private:
    struct connection {
        std::chrono::steady_clock::time_point last_activity;
        int requests_in_progress = 0;
        bool streaming = false;
        bool seen = false;  // found by the last sweep
        std::chrono::steady_clock::time_point rest_mark{};  // the last_activity that rest_bytes was taken at
        std::uint64_t rest_bytes = 0;  // bytes received (TCP_INFO) when the connection was last at rest
    };
    bool oversized_head(connection& c, std::optional<std::uint64_t> received) const;
    void loop();
    void sweep();

    int port_;
    limits limits_;
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::map<std::string, connection> connections_;  // "peer address|peer port"
    std::uint64_t closed_ = 0;
    std::size_t open_ = 0;
    std::map<std::string, std::size_t> open_by_address_;  // at the last sweep
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace mqtt_presence::detail
