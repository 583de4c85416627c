#include <mqtt_presence/status_announcer.hpp>

#include <nlohmann/json.hpp>

#include <mqtt_presence/error.hpp>
#include <mqtt_presence/status_codec.hpp>
#include <mqtt_presence/this_machine.hpp>

#include "paho/clean_stop.hpp"
#include "text_util.hpp"

namespace mqtt_presence {
namespace {

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock::now().time_since_epoch()).count();
}

}  // namespace

void status_options::validate() const {
    const auto scheme = topic_scheme::parse(topic_template);
    scheme.validate_name(name.empty() ? host_name() : name);
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
    if (options_.name.empty()) options_.name = host_name();
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
    mqtt5_ = options.get_mqtt_version() == MQTTVERSION_5;
    next_epoch();
    options.set_will(will());
}

mqtt::will_options status_announcer::will() const {
    return mqtt::will_options(topic_, payload(state::disconnected, "lost"), options_.qos, true);
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
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    mqtt::delivery_token_ptr clean_status;
    try {
        if (client.is_connected())
            clean_status = client.publish(
                mqtt::message::create(topic_, payload(state::disconnected, "clean"), options_.qos, true));
    } catch (...) {
        // not sent: the connection still ends below
    }
    std::string problem;  // no caller to report to: the return value says it was not delivered
    return detail::finish_clean_stop(client, clean_status, mqtt5_, deadline, problem);
}

}  // namespace mqtt_presence
