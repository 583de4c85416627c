#include <mqtt_presence/topic_scheme.hpp>

#include <mqtt_presence/error.hpp>

#include <algorithm>

#include "text_util.hpp"

namespace mqtt_presence {
namespace {

constexpr std::string_view placeholder = "{client}";
constexpr std::string_view multi_placeholder = "{client+}";
constexpr std::size_t max_topic_bytes = 65535;  // MQTT's two-byte length prefix
constexpr std::string_view template_example = "e.g. \"sensors/connected/{client}\" or \"$CONNECTED/{client}\"";

[[noreturn]] void bad_template(std::string_view templ, const std::string& why) {
    throw error("invalid topic template \"" + detail::printable(templ) + "\": " + why + "; " +
                std::string(template_example));
}

// Throws unless `text` is valid UTF-8 without NUL; `what` names the thing in the message.
void validate_utf8(std::string_view text, std::string_view what) {
    if (text.find('\0') != std::string_view::npos)
        throw error(std::string(what) + " contains a NUL character, which MQTT topics cannot carry");
    if (!detail::is_valid_utf8(text))
        throw error(std::string(what) + " \"" + detail::printable(text) + "\" is not valid UTF-8");
}

}  // namespace

topic_scheme topic_scheme::parse(std::string_view templ) {
    if (templ == sparkplug_nodes_template) {
        topic_scheme s;
        s.template_ = std::string(templ);
        s.prefix_ = "spBv1.0/";
        s.sparkplug_ = true;
        s.filters_ = {"spBv1.0/+/NBIRTH/+", "spBv1.0/+/NDEATH/+"};
        return s;
    }
    if (templ.empty()) bad_template(templ, "it is empty");
    validate_utf8(templ, "topic template");
    if (templ.size() > max_topic_bytes) bad_template(templ.substr(0, 40), "it is longer than 65535 bytes");
    const bool multi = templ.find(multi_placeholder) != std::string_view::npos;
    const auto& ph = multi ? multi_placeholder : placeholder;
    const auto at = templ.find(ph);
    if (at == std::string_view::npos) bad_template(templ, "it has no {client} placeholder");
    if (templ.find(placeholder, at + 1) != std::string_view::npos ||
        templ.find(multi_placeholder, at + 1) != std::string_view::npos ||
        (multi && templ.find(placeholder) != std::string_view::npos))
        bad_template(templ, "it has more than one {client} placeholder");
    const auto end = at + ph.size();
    if ((at > 0 && templ[at - 1] != '/') || (end < templ.size() && templ[end] != '/'))
        bad_template(templ, "{client} must fill whole topic levels (between '/' separators)");
    auto rest = std::string(templ.substr(0, at)) + std::string(templ.substr(end));
    if (rest.find_first_of("+#") != std::string::npos)
        bad_template(templ, "it contains a wildcard ('+' or '#'); a template names topics, the filter is derived");
    if (rest.find_first_of("{}") != std::string::npos)
        bad_template(templ, "it has a brace outside the {client} placeholder (only {client} and {client+} exist)");
    if (multi && rest.find_first_not_of('/') == std::string::npos)
        bad_template(templ, "{client+} needs a fixed level beside it, or it would subscribe to every topic");

    topic_scheme s;
    s.template_ = std::string(templ);
    s.prefix_ = std::string(templ.substr(0, at));
    s.suffix_ = std::string(templ.substr(end));
    s.multi_ = multi;
    if (!multi) {
        s.filters_.push_back(s.prefix_ + "+" + s.suffix_);
        // Under a fixed level, deeper topics are subscribed too, to be counted (topic_scheme.hpp).
        if (s.prefix_.find_first_not_of('/') != std::string::npos) {
            if (s.suffix_.empty()) {
                s.subscriptions_.push_back(s.prefix_ + "#");
            } else {
                std::string levels = "+";
                for (std::size_t depth = 1; depth <= max_name_levels; ++depth, levels += "/+")
                    s.subscriptions_.push_back(s.prefix_ + levels + s.suffix_);
            }
        }
    } else if (s.suffix_.empty()) {
        s.filters_.push_back(s.prefix_ + "#");  // '#' may end a filter: names of any depth
    } else {
        std::string levels = "+";
        for (std::size_t depth = 1; depth <= max_name_levels; ++depth, levels += "/+")
            s.filters_.push_back(s.prefix_ + levels + s.suffix_);
    }
    return s;
}

const std::vector<std::pair<std::string, std::string>>& topic_scheme::presets() {
    static const std::vector<std::pair<std::string, std::string>> all = {
        {"sensors", "sensors/connected/{client}"},
        {"connected", "$CONNECTED/{client}"},
        {"homie", "homie/{client}/$state"},
        {"tasmota", "tele/{client}/LWT"},
        {"esphome", "{client}/status"},
        {"zigbee2mqtt", "{client}/bridge/state"},
        {"sparkplug", "spBv1.0/STATE/{client}"},
        {"smarthome", "{client}/connected"},
        {"zigbee2mqtt-devices", "zigbee2mqtt/{client+}/availability"},
        {"homie5", "homie/5/{client}/$state"},
        {"valetudo", "valetudo/{client}/$state"},
        {"shelly", "shellies/{client}/online"},
        {"shelly-gen2", "{client}/online"},
        {"frigate", "{client}/available"},
        {"openmqttgateway", "home/{client}/LWT"},
        {"zwave-js-ui", "zwave/_CLIENTS/{client}/status"},
        {"sparkplug-nodes", std::string(sparkplug_nodes_template)},
    };
    return all;
}

std::vector<std::string> topic_scheme::convention_templates(std::string_view name) {
    if (!detail::iequals(name, "all")) return {preset(name).template_text()};
    std::vector<std::string> out;
    for (const auto& entry : presets()) out.push_back(entry.second);
    return out;
}

std::vector<std::string> topic_scheme::convention_activity(std::string_view name) {
    // Where a convention's devices publish their readings, beside their status: telemetry (Tasmota), a device's
    // state topic (Zigbee2MQTT, whose {client+} brings every topic under zigbee2mqtt/).
    static const std::vector<std::pair<std::string, std::vector<std::string>>> readings = {
        {"tasmota", {"tele/{client}/STATE", "tele/{client}/SENSOR"}},
        {"zigbee2mqtt-devices", {"zigbee2mqtt/{client+}"}},
    };
    const bool all = detail::iequals(name, "all");
    if (!all) (void)preset(name);  // an unknown name throws, naming the known ones
    std::vector<std::string> out;
    for (const auto& [key, templates] : readings)
        if (all || detail::iequals(key, name)) out.insert(out.end(), templates.begin(), templates.end());
    return out;
}

topic_scheme topic_scheme::preset(std::string_view name) {
    std::string names;
    for (const auto& [key, templ] : presets()) {
        if (detail::iequals(key, name)) return parse(templ);
        names += names.empty() ? key : ", " + key;
    }
    throw error("unknown convention \"" + detail::printable(name) + "\"; known: " + names + ", all");
}

topic_scheme topic_scheme::system_wide() { return parse("$CONNECTED/{client}"); }

topic_scheme topic_scheme::group_connected(std::string_view group) {
    return parse(std::string(group) + "/connected/{client}");
}

topic_scheme topic_scheme::group_client_connected(std::string_view group) {
    return parse(std::string(group) + "/{client}/connected");
}

void topic_scheme::validate_name(std::string_view client) const {
    const auto example = " (a valid name: \"kitchen-sensor-1\")";
    if (client.empty()) throw error("client name is empty" + std::string(example));
    validate_utf8(client, "client name");
    if (sparkplug_) {
        const auto slash = client.find('/');
        if (slash == std::string_view::npos || slash == 0 || slash + 1 == client.size() ||
            client.find('/', slash + 1) != std::string_view::npos || client.find_first_of("+#") != std::string_view::npos)
            throw error("Sparkplug node name \"" + detail::printable(client) +
                        "\" is not \"group/edge\" (one '/', no '+' or '#'), e.g. \"plant-1/press-3\"");
        return;
    }
    if (client.find_first_of(multi_ ? "+#" : "+#/") != std::string_view::npos)
        throw error("client name \"" + detail::printable(client) +
                    (multi_ ? "\" contains '+' or '#', which are wildcards in a topic filter"
                            : "\" contains '+', '#' or '/', which would change the topic's levels") + example);
    if (multi_) {
        if (client.front() == '/' || client.back() == '/' || client.find("//") != std::string_view::npos)
            throw error("client name \"" + detail::printable(client) + "\" has an empty topic level" + example);
        const auto levels = static_cast<std::size_t>(std::count(client.begin(), client.end(), '/')) + 1;
        if (!suffix_.empty() && levels > max_name_levels)
            throw error("client name \"" + detail::printable(client) + "\" spans " + std::to_string(levels) +
                        " topic levels; \"" + template_ + "\" reads names of up to " +
                        std::to_string(max_name_levels));
    }
    // Control characters (C0, DEL, C1) and the non-characters U+FFFE/U+FFFF: MQTT says a topic should not contain
    // them and brokers may refuse the topic, which would leave a client reconnecting forever.
    for (std::size_t i = 0; i < client.size(); ++i) {
        const auto c = static_cast<unsigned char>(client[i]);
        const auto next = i + 1 < client.size() ? static_cast<unsigned char>(client[i + 1]) : 0;
        const auto third = i + 2 < client.size() ? static_cast<unsigned char>(client[i + 2]) : 0;
        if (c < 0x20 || c == 0x7F || (c == 0xC2 && next >= 0x80 && next <= 0x9F) ||
            (c == 0xEF && next == 0xBF && (third == 0xBE || third == 0xBF)))
            throw error("client name \"" + detail::printable(client) +
                        "\" contains a control character or a non-character" + example);
    }
    if (prefix_.empty() && client.front() == '$')
        throw error("client name \"" + detail::printable(client) + "\" starts with '$' and is the first level of \"" +
                    template_ + "\": brokers reserve such topics and the '+' filter would not match it" + example);
    if (prefix_.size() + client.size() + suffix_.size() > max_topic_bytes)
        throw error("client name of " + std::to_string(client.size()) +
                    " bytes makes the status topic longer than 65535 bytes");
}

std::string topic_scheme::topic_for(std::string_view client) const {
    validate_name(client);
    if (sparkplug_) {
        const auto slash = client.find('/');
        return prefix_ + std::string(client.substr(0, slash)) + "/NBIRTH" + std::string(client.substr(slash));
    }
    std::string topic;
    topic.reserve(prefix_.size() + client.size() + suffix_.size());
    topic.append(prefix_).append(client).append(suffix_);
    return topic;
}

bool topic_scheme::is_sparkplug_death(std::string_view topic) noexcept {
    const auto first = topic.find('/');
    const auto second = first == std::string_view::npos ? first : topic.find('/', first + 1);
    return second != std::string_view::npos && topic.substr(second + 1, 7) == "NDEATH/";
}

std::optional<std::string_view> topic_scheme::match(std::string_view topic) const noexcept {
    if (sparkplug_) {
        // spBv1.0/<group>/NBIRTH|NDEATH/<edge>, nothing deeper (device messages have a fifth level).
        if (topic.compare(0, prefix_.size(), prefix_) != 0) return std::nullopt;
        const auto rest = topic.substr(prefix_.size());
        const auto a = rest.find('/');
        if (a == std::string_view::npos || a == 0) return std::nullopt;
        const auto kind = rest.substr(a + 1, 7);
        if (kind != "NBIRTH/" && kind != "NDEATH/") return std::nullopt;
        const auto edge = rest.substr(a + 8);
        if (edge.empty() || edge.find('/') != std::string_view::npos) return std::nullopt;
        try {
            thread_local std::string name;
            name.assign(rest.substr(0, a)).append("/").append(edge);
            return std::string_view(name);
        } catch (...) {
            return std::nullopt;
        }
    }
    if (topic.size() <= prefix_.size() + suffix_.size()) return std::nullopt;
    if (topic.compare(0, prefix_.size(), prefix_) != 0) return std::nullopt;
    if (topic.compare(topic.size() - suffix_.size(), suffix_.size(), suffix_) != 0) return std::nullopt;
    auto name = topic.substr(prefix_.size(), topic.size() - prefix_.size() - suffix_.size());
    if (!multi_) {
        if (name.find('/') != std::string_view::npos) return std::nullopt;
    } else {
        if (name.front() == '/' || name.back() == '/' || name.find("//") != std::string_view::npos)
            return std::nullopt;
        if (!suffix_.empty() &&
            static_cast<std::size_t>(std::count(name.begin(), name.end(), '/')) + 1 > max_name_levels)
            return std::nullopt;
    }
    if (prefix_.empty() && name.front() == '$') return std::nullopt;
    return name;
}

}  // namespace mqtt_presence
