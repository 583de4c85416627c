#include <mqtt_presence/this_machine.hpp>

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>

#include <mqtt_presence/error.hpp>

#include "uri.hpp"

namespace mqtt_presence {

std::string host_name() {
    std::array<char, 256> buf{};
    if (gethostname(buf.data(), buf.size() - 1) != 0) return {};
    return std::string(buf.data());
}

std::string local_address_for(std::string_view uri) {
    detail::server_uri parsed;
    try {
        parsed = detail::parse_server_uri(uri);
    } catch (const error&) {
        return {};
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_DGRAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(parsed.host.c_str(), std::to_string(parsed.port).c_str(), &hints, &found) != 0) return {};
    std::string result;
    // A UDP "connect" sends nothing; it only makes the kernel pick the route and so the source address.
    const int fd = socket(found->ai_family, SOCK_DGRAM, 0);
    if (fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) == 0) {
        sockaddr_storage local{};
        socklen_t len = sizeof local;
        std::array<char, INET6_ADDRSTRLEN> text{};
        if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
            const void* addr = local.ss_family == AF_INET6
                                   ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr)
                                   : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr);
            if (inet_ntop(local.ss_family, addr, text.data(), text.size()) != nullptr) result = text.data();
        }
    }
    if (fd >= 0) close(fd);
    freeaddrinfo(found);
    return result;
}

}  // namespace mqtt_presence
