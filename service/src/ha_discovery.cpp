#include <mqtt_presence/service/ha_discovery.hpp>

#include <cctype>
#include <cstdio>

#include <nlohmann/json.hpp>

#include <mqtt_presence/error.hpp>
#include <mqtt_presence/topic_scheme.hpp>
#include <mqtt_presence/version.hpp>

namespace mqtt_presence {
namespace {

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

ha_discovery::ha_discovery(scanner& scan, std::string prefix, const std::vector<std::string>& exclude)
    : scan_(scan), prefix_(std::move(prefix)) {
    if (prefix_.empty() || prefix_.find_first_of("+#") != std::string::npos || prefix_.front() == '/' ||
        prefix_.back() == '/' || prefix_.find("//") != std::string::npos)
        throw error("--ha-discovery " + prefix_ + ": give a plain topic prefix, e.g. homeassistant");
    for (const auto& name : exclude)
        for (auto& t : topic_scheme::convention_templates(name)) excluded_templates_.insert(std::move(t));
}

bool ha_discovery::covers(const client_status& row) const {
    if (row.topic.empty()) return false;
    if (excluded_templates_.empty()) return true;
    const auto& schemes = scan_.schemes();
    return row.source >= schemes.size() || excluded_templates_.count(schemes[row.source].template_text()) == 0;
}

std::string ha_discovery::config_topic(const client_status& row) const {
    return prefix_ + "/binary_sensor/mqtt_presence/" + object_id(row) + "/config";
}

std::string ha_discovery::state_topic(const client_status& row) const {
    return prefix_ + "/binary_sensor/mqtt_presence/" + object_id(row) + "/state";
}

std::string ha_discovery::availability_topic() const {
    return prefix_ + "/binary_sensor/mqtt_presence/service/availability";
}

const char* ha_discovery::verdict(const client_status& row) noexcept {
    return row.up() ? "ON" : "OFF";
}

std::string ha_discovery::config_json(const client_status& row) const {
    const auto id = object_id(row);
    // name null: the entity is its device's main feature, named by the device (not "kitchen kitchen").
    nlohmann::json j{{"name", nullptr},
                     {"unique_id", id},
                     {"default_entity_id", "binary_sensor." + id},
                     {"state_topic", state_topic(row)},
                     {"availability_topic", availability_topic()},
                     {"payload_available", "online"},
                     {"payload_not_available", "offline"},
                     {"device_class", "connectivity"},
                     {"payload_on", "ON"},
                     {"payload_off", "OFF"},
                     {"qos", 1},
                     {"device",
                      {{"identifiers", {id}}, {"name", row.client}, {"manufacturer", "mqtt-presence"},
                       {"model", "MQTT client status"}}},
                     {"origin", {{"name", "mqtt-presence"}, {"sw_version", version}}}};
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void ha_discovery::on_change(const change& c) noexcept {
    try {
        const auto& row = c.current;
        if (!covers(row)) return;
        if (c.kind == change_kind::removed) {
            scan_.publish(config_topic(row), "", 1, true);
            scan_.publish(state_topic(row), "", 1, true);
            return;
        }
        if (c.kind == change_kind::added) scan_.publish(config_topic(row), config_json(row), 1, true);
        scan_.publish(state_topic(row), verdict(row), 1, true);
    } catch (...) {
        // a config that cannot be built: the client stays out of Home Assistant
    }
}

void ha_discovery::publish_all() noexcept {
    try {
        scan_.for_each_sorted([this](const client_status& row) {
            if (!covers(row)) return;
            scan_.publish(config_topic(row), config_json(row), 1, true);
            scan_.publish(state_topic(row), verdict(row), 1, true);
        });
    } catch (...) {
    }
}

std::size_t ha_discovery::remove_all() {
    std::size_t n = 0;
    scan_.for_each_sorted([this, &n](const client_status& row) {
        if (row.topic.empty()) return;
        scan_.publish(config_topic(row), "", 1, true);
        scan_.publish(state_topic(row), "", 1, true);
        ++n;
    });
    return n;
}

}  // namespace mqtt_presence
