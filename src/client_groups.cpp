#include <mqtt_presence/client_groups.hpp>

#include <fnmatch.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include <mqtt_presence/error.hpp>

#include "text_util.hpp"

namespace mqtt_presence {
namespace {

bool fits(const std::string& pattern, const std::string& text) { return fnmatch(pattern.c_str(), text.c_str(), 0) == 0; }

// The text of a metadata member as a rule compares it: a string as it is, anything else as JSON writes it.
std::string member_text(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

}  // namespace

group_rule group_rule::parse(std::string_view text) {
    const auto bad = [&](const std::string& why) {
        return error("--group \"" + detail::printable(text) + "\": " + why +
                     "; write e.g. garage='garage-*', tele='tele/*/LWT' or battery=meta.power=battery");
    };
    const auto eq = text.find('=');
    if (eq == std::string_view::npos) throw bad("it names no rule (NAME=GLOB)");
    group_rule r;
    r.group.assign(text.substr(0, eq));
    if (r.group.empty()) throw bad("the group's name is empty");
    if (r.group.find_first_of(",\"\\") != std::string::npos || detail::printable(r.group) != r.group)
        throw bad("a group's name must not hold a comma, a quote, a backslash or a control character");
    const auto rule = text.substr(eq + 1);
    if (rule.empty()) throw bad("the pattern is empty");
    if (rule.substr(0, 5) == "meta.") {
        const auto kv = rule.substr(5);
        const auto at = kv.find('=');
        if (at == std::string_view::npos || at == 0) throw bad("a metadata rule is meta.KEY=VALUE");
        r.meta_key.assign(kv.substr(0, at));
        r.meta_value.assign(kv.substr(at + 1));
        return r;
    }
    r.pattern.assign(rule);
    return r;
}

client_groups::client_groups(std::vector<group_rule> rules) : rules_(std::move(rules)) {
    for (const auto& r : rules_)
        if (std::find(names_.begin(), names_.end(), r.group) == names_.end()) names_.push_back(r.group);
}

std::vector<std::string> client_groups::of(std::string_view client, std::string_view topic) const {
    client_status row;
    row.client.assign(client);
    row.topic.assign(topic);
    return of(row);
}

std::vector<std::string> client_groups::of(const client_status& row) const {
    std::vector<std::string> out;
    if (rules_.empty()) return out;
    nlohmann::json meta;
    bool meta_read = false;
    for (const auto& name : names_) {
        for (const auto& r : rules_) {
            if (r.group != name) continue;
            bool in = false;
            if (!r.pattern.empty()) {
                in = fits(r.pattern, row.client) || (!row.topic.empty() && fits(r.pattern, row.topic));
            } else if (r.meta_key == "host") {
                in = !row.host.empty() && row.host == r.meta_value;
            } else if (!row.meta.empty()) {
                if (!meta_read) {  // once a row, and only for a metadata rule
                    meta = nlohmann::json::parse(row.meta, nullptr, false);
                    meta_read = true;
                }
                in = meta.is_object() && meta.contains(r.meta_key) && member_text(meta[r.meta_key]) == r.meta_value;
            }
            if (in) {
                out.push_back(name);
                break;
            }
        }
    }
    return out;
}

}  // namespace mqtt_presence
