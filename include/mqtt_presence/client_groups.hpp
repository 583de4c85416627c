#pragma once
// Groups of clients, named by the people who run them ("garage", "battery", "site-b"): a client is in every group
// one of whose rules fits it, so it may be in several or none. A rule is a glob (fnmatch) on the client's name or
// status topic, or a member of its JSON status's metadata (`meta.KEY=VALUE`; `meta.host` is the host it reported).
// Pure: no I/O, no Paho. Immutable once built, so safe to share between threads.

#include <string>
#include <string_view>
#include <vector>

#include <mqtt_presence/connection_table.hpp>

namespace mqtt_presence {

struct group_rule {
    std::string group;       ///< the group's name
    std::string pattern;     ///< glob on the name or topic; empty for a metadata rule
    std::string meta_key;    ///< a metadata rule: this member ...
    std::string meta_value;  ///< ... has this value (a string as it is, a number or true/false as JSON writes it)

    /// "NAME=GLOB" or "NAME=meta.KEY=VALUE". Throws mqtt_presence::error saying what is wrong and how to write it.
    [[nodiscard]] static group_rule parse(std::string_view text);
};

class client_groups {
public:
    client_groups() = default;
    explicit client_groups(std::vector<group_rule> rules);

    /// The groups `row` is in (its name, topic, meta and host), in the order they were first named; none when no
    /// rule fits.
    [[nodiscard]] std::vector<std::string> of(const client_status& row) const;
    /// The same for a client whose status is not read yet (its name and topic alone: no metadata rule fits).
    [[nodiscard]] std::vector<std::string> of(std::string_view client, std::string_view topic) const;
    /// Every group named by a rule, in the order first named.
    [[nodiscard]] const std::vector<std::string>& names() const noexcept { return names_; }
    [[nodiscard]] bool empty() const noexcept { return rules_.empty(); }

private:
    std::vector<group_rule> rules_;
    std::vector<std::string> names_;
};

}  // namespace mqtt_presence
