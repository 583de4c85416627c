#include "connection_guard.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/tcp.h>  // struct tcp_info with tcpi_bytes_received (glibc's netinet/tcp.h lacks it)
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <optional>
#include <vector>

namespace mqtt_presence::detail {
namespace {

std::string key_of(const std::string& addr, int port) { return addr + "|" + std::to_string(port); }

// The peer of a connected socket whose local port is `port`, as "address|port"; empty for anything else.
std::string peer_of(int fd, int port) {
    sockaddr_storage local{}, peer{};
    socklen_t len = sizeof local;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) return {};
    int local_port = 0;
    if (local.ss_family == AF_INET) local_port = ntohs(reinterpret_cast<sockaddr_in&>(local).sin_port);
    else if (local.ss_family == AF_INET6) local_port = ntohs(reinterpret_cast<sockaddr_in6&>(local).sin6_port);
    if (local_port != port) return {};
    len = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return {};  // the listening socket
    char text[INET6_ADDRSTRLEN] = "";
    int peer_port = 0;
    if (peer.ss_family == AF_INET) {
        const auto& a = reinterpret_cast<sockaddr_in&>(peer);
        ::inet_ntop(AF_INET, &a.sin_addr, text, sizeof text);
        peer_port = ntohs(a.sin_port);
    } else {
        const auto& a = reinterpret_cast<sockaddr_in6&>(peer);
        ::inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof text);
        peer_port = ntohs(a.sin6_port);
    }
    return key_of(text, peer_port);
}

// Bytes the kernel has received on the connection so far; nullopt where TCP_INFO cannot say.
std::optional<std::uint64_t> bytes_received(int fd) {
    tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0 ||
        len < offsetof(tcp_info, tcpi_bytes_received) + sizeof info.tcpi_bytes_received)
        return std::nullopt;
    return info.tcpi_bytes_received;
}

// The process's descriptors that are sockets.
std::vector<int> socket_descriptors() {
    std::vector<int> out;
    DIR* dir = ::opendir("/proc/self/fd");
    if (!dir) return out;
    const int own = ::dirfd(dir);
    while (const dirent* e = ::readdir(dir)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        const int fd = std::atoi(e->d_name);
        if (fd == own) continue;
        char target[64];
        const auto n = ::readlinkat(own, e->d_name, target, sizeof target - 1);
        if (n > 7 && std::string_view(target, 7) == "socket:") out.push_back(fd);
    }
    ::closedir(dir);
    return out;
}

// Shuts `fd`'s connection down if it is still the one with peer `key` (checked on a duplicate, see the header).
bool shut_down_if(int fd, int port, const std::string& key) {
    const int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) return false;
    const bool same = peer_of(dup, port) == key;
    if (same) ::shutdown(dup, SHUT_RDWR);
    ::close(dup);
    return same;
}

}  // namespace

connection_guard::connection_guard(int port, limits l) : port_(port), limits_(l) {
    thread_ = std::thread([this] { loop(); });
}

connection_guard::~connection_guard() noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void connection_guard::request_began(const std::string& addr, int port) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& c = connections_[key_of(addr, port)];
    ++c.requests_in_progress;
    c.last_activity = std::chrono::steady_clock::now();
}

void connection_guard::request_ended(const std::string& addr, int port) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = connections_.find(key_of(addr, port));
    if (it == connections_.end()) return;
    if (it->second.requests_in_progress > 0) --it->second.requests_in_progress;
    it->second.last_activity = std::chrono::steady_clock::now();
}

void connection_guard::streaming(const std::string& addr, int port, bool on) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& c = connections_[key_of(addr, port)];
    c.streaming = on;
    c.last_activity = std::chrono::steady_clock::now();
}

std::uint64_t connection_guard::closed() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return closed_;
}

std::size_t connection_guard::open() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return open_;
}

std::size_t connection_guard::open_from(const std::string& addr) const {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = open_by_address_.find(addr);
    return it == open_by_address_.end() ? 0 : it->second;
}

void connection_guard::loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
        cv_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping_; });
        if (stopping_) return;
        lock.unlock();
        sweep();
        lock.lock();
    }
}

// Between requests, httplib reads a request line and headers into a buffer without a bound: more than max_head
// bytes received since the connection was last at rest is a head no request needs.
bool connection_guard::oversized_head(connection& c, std::optional<std::uint64_t> received) const {
    if (!received) return false;
    if (c.rest_mark != c.last_activity) {  // at rest since a request ended (or since it was first seen)
        c.rest_mark = c.last_activity;
        c.rest_bytes = *received;
        return false;
    }
    return *received - c.rest_bytes > limits_.max_head;
}

void connection_guard::sweep() {
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::pair<int, std::string>> found;
    std::map<std::string, std::optional<std::uint64_t>> received;
    for (const int fd : socket_descriptors()) {
        auto key = peer_of(fd, port_);
        if (key.empty()) continue;
        received[key] = bytes_received(fd);
        found.emplace_back(fd, std::move(key));
    }
    std::vector<std::pair<int, std::string>> quiet;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto& [key, c] : connections_) c.seen = false;
        for (const auto& [fd, key] : found) {
            const auto [it, fresh] = connections_.try_emplace(key);
            if (fresh) it->second.last_activity = now;
            it->second.seen = true;
        }
        for (auto it = connections_.begin(); it != connections_.end();)
            it = it->second.seen ? std::next(it) : connections_.erase(it);  // closed meanwhile
        open_ = found.size();
        open_by_address_.clear();
        for (const auto& [fd, key] : found) ++open_by_address_[key.substr(0, key.rfind('|'))];
        const auto pressed = found.size() > limits_.pressure_at;
        for (const auto& [fd, key] : found) {
            auto& c = connections_[key];
            const bool crowded = limits_.max_per_address > 0 &&
                                 open_by_address_[key.substr(0, key.rfind('|'))] > limits_.max_per_address;
            const auto limit = pressed || crowded ? limits_.quiet_under_pressure : limits_.quiet;
            // A request that never reported its end (a path httplib answers without the hook) is busy for 60 s.
            const bool busy = c.requests_in_progress > 0 && now - c.last_activity < std::chrono::seconds(60);
            if (busy || c.streaming) continue;
            if (now - c.last_activity > limit || oversized_head(c, received[key])) quiet.emplace_back(fd, key);
        }
    }
    std::uint64_t n = 0;
    for (const auto& [fd, key] : quiet) n += shut_down_if(fd, port_, key) ? 1 : 0;
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ += n;
}

}  // namespace mqtt_presence::detail
