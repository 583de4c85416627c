#include "paho_sockets.hpp"

#include <MQTTAsync.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string_view>
#include <unordered_map>

namespace mqtt_presence::detail {
namespace {

std::mutex sockets_mutex;  // the map, and who needs the trace
bool traced_always = false;
int connects_traced = 0;

std::unordered_map<std::string, int>& sockets() {
    static std::unordered_map<std::string, int> map;
    return map;
}

// "<date> <time> <fd> <client id> -> CONNECT version 4 clean: 1 (0)"
void on_trace(enum MQTTASYNC_TRACE_LEVELS, char* message) {
    if (message == nullptr) return;
    const std::string_view line(message);
    const auto marker = line.find(" -> CONNECT version ");
    if (marker == std::string_view::npos) return;
    const auto head = line.substr(0, marker);
    const auto date_end = head.find(' ');
    const auto time_end = date_end == std::string_view::npos ? date_end : head.find(' ', date_end + 1);
    const auto fd_end = time_end == std::string_view::npos ? time_end : head.find(' ', time_end + 1);
    if (fd_end == std::string_view::npos) return;
    const std::string fd_text(head.substr(time_end + 1, fd_end - time_end - 1));
    const int fd = std::atoi(fd_text.c_str());
    if (fd <= 0) return;
    std::lock_guard<std::mutex> lock(sockets_mutex);
    sockets()[std::string(head.substr(fd_end + 1))] = fd;
}

int peer_port(int fd) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return -1;
    if (peer.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&peer)->sin_port);
    if (peer.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&peer)->sin6_port);
    return -1;
}

// Paho formats a trace line for the callback only at or above the level set here (sockets_mutex held).
void apply_trace_level() {
    MQTTAsync_setTraceLevel(traced_always || connects_traced > 0 ? MQTTASYNC_TRACE_PROTOCOL : MQTTASYNC_TRACE_FATAL);
}

void install_trace_callback() {
    static std::once_flag once;
    std::call_once(once, [] { MQTTAsync_setTraceCallback(on_trace); });
}

}  // namespace

void track_paho_sockets() {
    install_trace_callback();
    std::lock_guard<std::mutex> lock(sockets_mutex);
    traced_always = true;
    apply_trace_level();
}

void begin_tracked_connect(const std::string& client_id) {
    install_trace_callback();
    std::lock_guard<std::mutex> lock(sockets_mutex);
    sockets().erase(client_id);  // a CONNECT line missed is then an unknown socket, never an old one
    ++connects_traced;
    apply_trace_level();
}

void end_tracked_connect() noexcept {
    std::lock_guard<std::mutex> lock(sockets_mutex);
    if (connects_traced > 0) --connects_traced;
    apply_trace_level();
}

int paho_socket_of(const std::string& client_id) {
    std::lock_guard<std::mutex> lock(sockets_mutex);
    const auto it = sockets().find(client_id);
    return it == sockets().end() ? -1 : it->second;
}

bool drop_connection(const std::string& client_id, int port) noexcept {
    const int fd = paho_socket_of(client_id);
    if (fd < 0) return false;
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) || peer_port(fd) != port) return false;
    return shutdown(fd, SHUT_RDWR) == 0;
}

}  // namespace mqtt_presence::detail
