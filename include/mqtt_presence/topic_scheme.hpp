#pragma once
// Topic schemes: where a client's status lives. A template has exactly one placeholder filling whole topic levels:
//   {client}   one level: "sensors/connected/{client}", "sensors/{client}/connected", "$CONNECTED/{client}";
//   {client+}  one to max_name_levels levels, for names with '/' (Zigbee2MQTT friendly names such as
//              "kitchen/lamp"): "zigbee2mqtt/{client+}/availability".
// A {client+} scheme subscribes one '+' filter per depth ("zigbee2mqtt/+/availability", ".../+/+/availability", ...)
// rather than "zigbee2mqtt/#": '#' cannot stand before a suffix, and would bring every reading of every device.
// At the end of a template ("home/{client+}") the filter is "home/#", names of any depth.
// One more shape, not a template: Sparkplug B edge nodes, "spBv1.0/{group}/NBIRTH/{edge}" (sparkplug_nodes_template),
// read from NBIRTH and NDEATH ("spBv1.0/+/NBIRTH/+", "spBv1.0/+/NDEATH/+"); a node's name is "group/edge".
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

    /// The Sparkplug B edge node scheme's text (preset "sparkplug-nodes").
    static constexpr std::string_view sparkplug_nodes_template = "spBv1.0/{group}/NBIRTH/{edge}";
    /// A {client+} name spans at most this many levels where the placeholder has a suffix after it.
    static constexpr std::size_t max_name_levels = 8;

    /// Known conventions by name (see presets()); "all" is not one scheme but every preset (see preset_names()).
    /// Throws for an unknown name.
    [[nodiscard]] static topic_scheme preset(std::string_view name);
    /// The names preset() accepts, with their templates, for help texts.
    [[nodiscard]] static const std::vector<std::pair<std::string, std::string>>& presets();
    /// The templates of a --convention argument: one preset's, or every preset's for "all". Throws for an unknown
    /// name.
    [[nodiscard]] static std::vector<std::string> convention_templates(std::string_view name);
    /// The activity templates of a --convention argument (scanner_options::activity): where the convention's
    /// devices publish readings ("tele/{client}/STATE" for Tasmota, "zigbee2mqtt/{client+}" for Zigbee2MQTT's
    /// devices); none for most. Every preset's for "all". Throws for an unknown name.
    [[nodiscard]] static std::vector<std::string> convention_activity(std::string_view name);

    /// "$CONNECTED/{client}": one system-wide status tree.
    [[nodiscard]] static topic_scheme system_wide();
    /// "<group>/connected/{client}": all of a group's statuses under one level.
    [[nodiscard]] static topic_scheme group_connected(std::string_view group);
    /// "<group>/{client}/connected": the status beside the client's other topics.
    [[nodiscard]] static topic_scheme group_client_connected(std::string_view group);

    /// The status topic of one client; throws mqtt_presence::error for an invalid name.
    [[nodiscard]] std::string topic_for(std::string_view client) const;
    /// The subscription filter: the template with "{client}" replaced by "+" (for {client+}, the first of
    /// filters()).
    [[nodiscard]] const std::string& filter() const noexcept { return filters_.front(); }
    /// Every filter the scheme needs: one, or one per depth for a {client+} before a suffix.
    [[nodiscard]] const std::vector<std::string>& filters() const noexcept { return filters_; }
    /// What the scanner subscribes: filters(), except for a one-level {client} under a fixed level: it also takes
    /// the deeper topics, "prefix/#" at the end of a template, else one filter per depth up to max_name_levels
    /// ("tele/+/LWT", "tele/+/+/LWT", ...; '#' cannot stand before a suffix). Such a topic fits no name, but
    /// arrives and is counted as unmatched with an example instead of never being delivered: RabbitMQ turns a '.'
    /// in a name into a '/' ("a.b" arrives as "prefix/a/b"), and statuses a level too deep are a misconfigured
    /// template.
    [[nodiscard]] const std::vector<std::string>& subscription_filters() const noexcept {
        return subscriptions_.empty() ? filters_ : subscriptions_;
    }
    /// True for a {client+} scheme: names may contain '/'.
    [[nodiscard]] bool multi_level() const noexcept { return multi_; }
    [[nodiscard]] const std::string& template_text() const noexcept { return template_; }
    /// The client name if `topic` is a status topic of this scheme. The view points into `topic` (for Sparkplug
    /// nodes, whose "group/edge" is not one piece of the topic, into a per-thread buffer valid until the next call).
    [[nodiscard]] std::optional<std::string_view> match(std::string_view topic) const noexcept;
    /// True for the Sparkplug B edge node scheme: payloads are protobuf, the topic says birth or death.
    [[nodiscard]] bool sparkplug_nodes() const noexcept { return sparkplug_; }
    /// For the Sparkplug node scheme: true if `topic` is an NDEATH (else an NBIRTH).
    [[nodiscard]] static bool is_sparkplug_death(std::string_view topic) noexcept;

    /// Throws mqtt_presence::error if `client` cannot be a name in this scheme (empty, contains + # or NUL, a '/'
    /// outside a {client+} scheme or an empty level inside one, too many levels, invalid UTF-8, starts with '$'
    /// where it would be the first topic level, or makes the topic too long).
    void validate_name(std::string_view client) const;

    friend bool operator==(const topic_scheme& a, const topic_scheme& b) { return a.template_ == b.template_; }

private:
    topic_scheme() = default;
    std::string template_;
    std::string prefix_;  // text before {client}
    std::string suffix_;  // text after {client}
    std::vector<std::string> filters_;
    std::vector<std::string> subscriptions_;  // empty: filters_
    bool multi_ = false;
    bool sparkplug_ = false;
};

}  // namespace mqtt_presence
