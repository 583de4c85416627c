#pragma once
// ha_discovery: every tracked client as a Home Assistant binary_sensor (device_class connectivity) through MQTT
// discovery, per Home Assistant's current schema (default_entity_id, the device's main entity with name null, the
// origin). The service publishes, retained, per client:
//   <prefix>/binary_sensor/mqtt_presence/<object id>/config   the entity and its device
//   <prefix>/binary_sensor/mqtt_presence/<object id>/state    the scanner's own verdict, ON or OFF
//   <prefix>/binary_sensor/mqtt_presence/service/availability the service's online/offline, on a connection of
//                                                              its own with an "offline" will (ha_availability)
// so every payload form the scanner reads (and its liveness rules: a stale or overdue client is OFF) maps right, with no value
// template in Home Assistant. Configs are published after the first sync and for each new client, again when Home
// Assistant announces itself (<prefix>/status "online"); a purged client's config and state are cleared (empty
// retained), and remove_all() clears every one. Clients of excluded conventions (devices Home Assistant already
// knows, e.g. Tasmota, Zigbee2MQTT) get none. Publishes go through the scanner's own connection.

#include <set>
#include <string>
#include <vector>

#include <mqtt_presence/scanner.hpp>

namespace mqtt_presence {

class ha_discovery {
public:
    static constexpr const char* default_prefix = "homeassistant";

    /// Throws mqtt_presence::error for a prefix that is not a plain topic (wildcards, empty levels) or an unknown
    /// convention in `exclude` (its schemes' clients get no entity).
    ha_discovery(scanner& scan, std::string prefix = default_prefix, const std::vector<std::string>& exclude = {});

    /// Home Assistant's birth topic: its "online" asks for every config again.
    [[nodiscard]] std::string status_topic() const { return prefix_ + "/status"; }
    /// The config's topic and payload for a row (its topic filled).
    [[nodiscard]] std::string config_topic(const client_status& row) const;
    [[nodiscard]] std::string state_topic(const client_status& row) const;
    /// The service's own online/offline (retained; its will says offline): every entity's availability.
    [[nodiscard]] std::string availability_topic() const;
    [[nodiscard]] std::string config_json(const client_status& row) const;
    /// ON for a client that is connected and neither stale nor overdue, else OFF.
    [[nodiscard]] static const char* verdict(const client_status& row) noexcept;
    /// Whether the row gets an entity (its scheme is not excluded).
    [[nodiscard]] bool covers(const client_status& row) const;

    /// Publishes (or, for a removed client, clears) the config a change calls for. Never blocks.
    void on_change(const change& c) noexcept;
    /// Publishes every client's config and state (after a sync, or when Home Assistant starts).
    void publish_all() noexcept;
    /// Clears every client's config and state (serve --ha-discovery-remove); how many it cleared.
    std::size_t remove_all();

private:
    scanner& scan_;
    std::string prefix_;
    std::set<std::string> excluded_templates_;
};

}  // namespace mqtt_presence
