#pragma once
// Topic schemes: where a client's status lives. A template has exactly one "{client}" placeholder filling a whole
// topic level, e.g. "sensors/connected/{client}", "sensors/{client}/connected", "$CONNECTED/{client}".
// Pure: no I/O, no Paho. Immutable after construction, so safe to share between threads.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mqtt_presence {

class topic_scheme {
public:
    /// Parses and validates a template; throws mqtt_presence::error saying what is wrong, with a valid example.
    [[nodiscard]] static topic_scheme parse(std::string_view templ);

    /// Known conventions by name: "connected" ($CONNECTED/{client}), "sensors" (sensors/connected/{client}),
    /// "homie", "tasmota", "esphome", "zigbee2mqtt", "sparkplug", "smarthome". Throws for an unknown name.
    [[nodiscard]] static topic_scheme preset(std::string_view name);
    /// The names preset() accepts, with their templates, for help texts.
    [[nodiscard]] static const std::vector<std::pair<std::string, std::string>>& presets();

    /// "$CONNECTED/{client}": one system-wide status tree.
    [[nodiscard]] static topic_scheme system_wide();
    /// "<group>/connected/{client}": all of a group's statuses under one level.
    [[nodiscard]] static topic_scheme group_connected(std::string_view group);
    /// "<group>/{client}/connected": the status beside the client's other topics.
    [[nodiscard]] static topic_scheme group_client_connected(std::string_view group);

    /// The status topic of one client; throws mqtt_presence::error for an invalid name.
    [[nodiscard]] std::string topic_for(std::string_view client) const;
    /// The subscription filter: the template with "{client}" replaced by "+".
    [[nodiscard]] const std::string& filter() const noexcept { return filter_; }
    [[nodiscard]] const std::string& template_text() const noexcept { return template_; }
    /// The client name if `topic` is a status topic of this scheme. The view points into `topic`.
    [[nodiscard]] std::optional<std::string_view> match(std::string_view topic) const noexcept;

    /// Throws mqtt_presence::error if `client` cannot be a name in this scheme (empty, contains + # / or NUL,
    /// invalid UTF-8, starts with '$' where it would be the first topic level, or makes the topic too long).
    void validate_name(std::string_view client) const;

    friend bool operator==(const topic_scheme& a, const topic_scheme& b) { return a.template_ == b.template_; }

private:
    topic_scheme() = default;
    std::string template_;
    std::string prefix_;  // text before {client}
    std::string suffix_;  // text after {client}
    std::string filter_;
};

}  // namespace mqtt_presence
