#include <mqtt_presence/presence.hpp>

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>

#include <nlohmann/json.hpp>

#include <mqtt_presence/error.hpp>
#include <mqtt_presence/status_codec.hpp>

#include "text_util.hpp"
#include "uri.hpp"

namespace mqtt_presence {
namespace {

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock::now().time_since_epoch()).count();
}

}  // namespace

void status_options::validate() const {
    const auto scheme = topic_scheme::parse(topic_template);
    scheme.validate_name(name);
    if (qos < 0 || qos > 2) throw error("status qos " + std::to_string(qos) + " is invalid; use 0, 1 or 2 (1 is usual)");
    if (heartbeat.count() < 0) throw error("heartbeat must not be negative");
    if (heartbeat > std::chrono::hours(24 * 7))  // what a reader accepts as "hb": at most a week
        throw error("heartbeat " + std::to_string(heartbeat.count()) + " s is longer than a week (604800 s)");
    if (!meta.empty()) {
        const auto j = nlohmann::json::parse(meta, nullptr, false);
        if (!j.is_object())
            throw error("metadata \"" + detail::printable(meta) + "\" is not a JSON object; write e.g. {\"fw\":\"1.4\"}");
        for (const auto& [key, value] : j.items())
            if (is_status_member(key))
                throw error("metadata member \"" + detail::printable(key) +
                            "\" is a status member the payload sets itself; choose another name");
    }
}

status_announcer::status_announcer(std::string_view name) : status_announcer([&] {
    status_options o;
    o.name = std::string(name);
    return o;
}()) {}

status_announcer::status_announcer(status_options options) : options_(std::move(options)) {
    options_.validate();
    topic_ = topic_scheme::parse(options_.topic_template).topic_for(options_.name);
    if (options_.format == payload_format::json && options_.host.empty()) options_.host = host_name();
}

std::uint64_t status_announcer::next_epoch() noexcept {
    const auto now = now_ms();
    const auto candidate = static_cast<std::uint64_t>(now);
    std::uint64_t previous = epoch_.load();
    std::uint64_t next = 0;
    do {
        next = candidate > previous ? candidate : previous + 1;
    } while (!epoch_.compare_exchange_weak(previous, next));
    epoch_started_ms_.store(now);
    return next;
}

std::string status_announcer::payload(state s, std::string_view reason) const {
    status_record r;
    r.status = s;
    r.client = options_.name;
    r.epoch = epoch_.load();
    // A will's time is its registration (the connection's start); other payloads are made now.
    const auto ts = reason == "lost" ? epoch_started_ms_.load() : now_ms();
    r.timestamp = time_point(std::chrono::milliseconds(ts));
    r.ip = options_.ip;
    r.host = options_.host;
    r.reason = std::string(reason);
    if (options_.heartbeat.count() > 0 && s == state::connected) r.heartbeat = options_.heartbeat;
    r.meta = options_.meta;
    return encode(r, options_.format);
}

void status_announcer::add_will(mqtt::connect_options& options) {
    next_epoch();
    options.set_will(mqtt::will_options(topic_, payload(state::disconnected, "lost"), options_.qos, true));
}

bool status_announcer::announce(mqtt::async_client& client) noexcept {
    try {
        if (epoch_.load() == 0) next_epoch();
        client.publish(mqtt::message::create(topic_, payload(state::connected), options_.qos, true));
        return true;
    } catch (...) {
        return false;
    }
}

bool status_announcer::disconnect(mqtt::async_client& client, std::chrono::milliseconds timeout) noexcept {
    bool delivered = false;
    try {
        if (client.is_connected()) {
            auto token = client.publish(
                mqtt::message::create(topic_, payload(state::disconnected, "clean"), options_.qos, true));
            delivered = token->wait_for(timeout);
        }
    } catch (...) {
        delivered = false;
    }
    try {
        if (client.is_connected()) client.disconnect()->wait_for(timeout);
    } catch (...) {
        // already disconnected: nothing left to do
    }
    return delivered;
}

std::string host_name() {
    std::array<char, 256> buf{};
    if (gethostname(buf.data(), buf.size() - 1) != 0) return {};
    return std::string(buf.data());
}

void validate_server_uri(std::string_view uri) { (void)detail::parse_server_uri(uri); }

std::string local_address_for(std::string_view server_uri) {
    detail::server_uri parsed;
    try {
        parsed = detail::parse_server_uri(server_uri);
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
