#include <mqtt_presence/service/ha_discovery.hpp>

#include <cstdio>

#include <nlohmann/json.hpp>

#include <mqtt_presence/error.hpp>

namespace mqtt_presence {
namespace {

// Reads every payload form the scanner reads: JSON with "status" or "state", or a plain word.
constexpr const char* value_template =
    "{% set v = value | trim %}"
    "{% if v[:1] == '{' %}{% set s = (value_json.status if value_json.status is defined else value_json.state) %}"
    "{% else %}{% set s = v %}{% endif %}"
    "{{ 'ON' if (s | string | lower) in ['1', 'true', 'online', 'connected', 'on', 'ready'] else 'OFF' }}";

std::uint32_t fnv1a(const std::string& text) {
    std::uint32_t h = 2166136261u;
    for (unsigned char c : text) h = (h ^ c) * 16777619u;
    return h;
}

// Home Assistant's object ids allow [a-zA-Z0-9_-]: the name's letters and digits, and a hash of the topic that
// keeps two clients apart when their names differ only in other characters (or sit under two schemes).
std::string object_id(const client_status& row) {
    std::string id = "mp_";
    for (unsigned char c : row.client) {
        if (id.size() >= 43) break;
        id += (std::isalnum(c) != 0 && c < 128) ? static_cast<char>(c) : '_';
    }
    char hash[16];
    std::snprintf(hash, sizeof hash, "_%08x", fnv1a(row.topic));
    return id + hash;
}

}  // namespace

ha_discovery::ha_discovery(scanner& scan, std::string prefix) : scan_(scan), prefix_(std::move(prefix)) {
    if (prefix_.empty() || prefix_.find_first_of("+#") != std::string::npos || prefix_.front() == '/' ||
        prefix_.back() == '/' || prefix_.find("//") != std::string::npos)
        throw error("--ha-discovery " + prefix_ + ": give a plain topic prefix, e.g. homeassistant");
}

std::string ha_discovery::config_topic(const client_status& row) const {
    return prefix_ + "/binary_sensor/mqtt_presence/" + object_id(row) + "/config";
}

std::string ha_discovery::config_json(const client_status& row) {
    const auto id = object_id(row);
    nlohmann::json j{{"name", row.client},
                     {"unique_id", id},
                     {"object_id", id},
                     {"state_topic", row.topic},
                     {"device_class", "connectivity"},
                     {"value_template", value_template},
                     {"payload_on", "ON"},
                     {"payload_off", "OFF"},
                     {"qos", 1},
                     {"device", {{"identifiers", {id}}, {"name", row.client}, {"manufacturer", "mqtt-presence"}}}};
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void ha_discovery::on_change(const change& c) noexcept {
    try {
        if (c.current.topic.empty()) return;
        if (c.kind == change_kind::removed) scan_.publish(config_topic(c.current), "", 1, true);
        else if (c.kind == change_kind::added) scan_.publish(config_topic(c.current), config_json(c.current), 1, true);
    } catch (...) {
        // a config that cannot be built: the client stays out of Home Assistant
    }
}

void ha_discovery::publish_all() noexcept {
    try {
        scan_.for_each_sorted([this](const client_status& row) {
            if (!row.topic.empty()) scan_.publish(config_topic(row), config_json(row), 1, true);
        });
    } catch (...) {
    }
}

}  // namespace mqtt_presence
