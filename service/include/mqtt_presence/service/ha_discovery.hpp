#pragma once
// ha_discovery: every tracked client as a Home Assistant binary_sensor (device_class connectivity) through MQTT
// discovery. The service publishes a retained config per client under
//   <prefix>/binary_sensor/mqtt_presence/<object id>/config
// whose state topic is the client's own status topic, with a value template that reads every payload form the
// scanner reads (1/0, online/offline, true/false, JSON status/state). Configs are published after the first sync and
// for each new client, again when Home Assistant announces itself (<prefix>/status "online"), and cleared (empty
// retained) when a client's status is purged. Publishes go through the scanner's own connection.

#include <string>

#include <mqtt_presence/scanner.hpp>

namespace mqtt_presence {

class ha_discovery {
public:
    static constexpr const char* default_prefix = "homeassistant";

    /// Throws mqtt_presence::error for a prefix that is not a plain topic (wildcards, empty levels).
    ha_discovery(scanner& scan, std::string prefix = default_prefix);

    /// Home Assistant's birth topic: its "online" asks for every config again.
    [[nodiscard]] std::string status_topic() const { return prefix_ + "/status"; }
    /// The config's topic and payload for a row (its topic filled).
    [[nodiscard]] std::string config_topic(const client_status& row) const;
    [[nodiscard]] static std::string config_json(const client_status& row);

    /// Publishes (or, for a removed client, clears) the config a change calls for. Never blocks.
    void on_change(const change& c) noexcept;
    /// Publishes every client's config (after a sync, or when Home Assistant starts).
    void publish_all() noexcept;

private:
    scanner& scan_;
    std::string prefix_;
};

}  // namespace mqtt_presence
