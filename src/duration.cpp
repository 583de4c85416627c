#include <mqtt_presence/duration.hpp>

#include <cstdio>

#include <mqtt_presence/error.hpp>

#include "text_util.hpp"

namespace mqtt_presence {

std::chrono::milliseconds parse_duration(std::string_view text) {
    const auto bad = [&](const std::string& why) {
        return error("invalid duration \"" + detail::printable(text) + "\": " + why +
                     "; write e.g. 500ms, 5s, 10m, 2h or 7d");
    };
    std::size_t i = 0;
    unsigned long long value = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
        value = value * 10 + static_cast<unsigned long long>(text[i] - '0');
        if (value > 1'000'000'000ULL) throw bad("too large");
        ++i;
    }
    if (i == 0) throw bad("it does not start with a number");
    const auto unit = text.substr(i);
    const auto v = static_cast<long long>(value);
    std::chrono::milliseconds d{};
    if (unit.empty() || unit == "s") d = std::chrono::seconds(v);
    else if (unit == "ms") d = std::chrono::milliseconds(v);
    else if (unit == "m") d = std::chrono::minutes(v);
    else if (unit == "h") d = std::chrono::hours(v);
    else if (unit == "d") d = std::chrono::hours(24 * v);
    else throw bad("unknown unit \"" + detail::printable(unit) + "\"");
    // Times are added to and subtracted from the clock in nanoseconds: past a century they would overflow.
    if (d > max_duration) throw bad("longer than 100 years (36500d)");
    return d;
}

std::string format_duration(std::chrono::milliseconds d) {
    const long long ms = d.count();
    char buf[32];
    if (ms < 1000) std::snprintf(buf, sizeof buf, "%lldms", ms);
    else if (ms < 60'000) std::snprintf(buf, sizeof buf, "%llds", ms / 1000);
    else if (ms < 3'600'000) std::snprintf(buf, sizeof buf, "%lldm%02llds", ms / 60'000, (ms / 1000) % 60);
    else if (ms < 86'400'000) std::snprintf(buf, sizeof buf, "%lldh%02lldm", ms / 3'600'000, (ms / 60'000) % 60);
    else std::snprintf(buf, sizeof buf, "%lldd%02lldh", ms / 86'400'000, (ms / 3'600'000) % 24);
    return buf;
}

}  // namespace mqtt_presence
