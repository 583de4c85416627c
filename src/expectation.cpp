#include <mqtt_presence/expectation.hpp>

#include <fnmatch.h>

#include <algorithm>
#include <charconv>

#include <mqtt_presence/duration.hpp>
#include <mqtt_presence/error.hpp>

#include "text_util.hpp"

namespace mqtt_presence {

expectation expectation::parse(std::string_view text) {
    const auto bad = [&](const std::string& why) {
        return error("--expect \"" + detail::printable(text) + "\": " + why +
                     "; write e.g. 10m, auto, 'kitchen*=2h' or 'zigbee2mqtt/*=auto'");
    };
    expectation e;
    std::string_view value = text;
    if (const auto eq = text.rfind('='); eq != std::string_view::npos) {
        e.match.assign(text.substr(0, eq));
        value = text.substr(eq + 1);
        if (e.match.empty()) throw bad("the glob before '=' is empty");
    }
    if (value.empty()) throw bad("the interval is empty");
    if (value == "auto") {
        e.learned = true;
        return e;
    }
    std::chrono::milliseconds d{};
    try {
        d = parse_duration(value);
    } catch (const error&) {
        throw bad("\"" + detail::printable(value) + "\" is neither a duration nor auto");
    }
    if (d < std::chrono::seconds(1)) throw bad("the interval must be at least 1s");
    if (d > std::chrono::hours(24 * 365)) throw bad("the interval must be at most a year");
    e.every = std::chrono::duration_cast<std::chrono::seconds>(d);
    return e;
}

std::string expectation::text() const {
    const auto value = learned ? std::string("auto") : std::to_string(every.count()) + "s";
    return match.empty() ? value : match + "=" + value;
}

const expectation* expectation_for(const std::vector<expectation>& rules, std::string_view client,
                                   std::string_view topic, const std::vector<std::string>& groups) {
    const expectation* fallback = nullptr;
    const std::string name(client), where(topic);  // fnmatch wants C strings
    for (const auto& rule : rules) {
        if (rule.match.empty()) fallback = &rule;
        else if (rule.match.rfind("group:", 0) == 0) {
            if (std::find(groups.begin(), groups.end(), rule.match.substr(6)) != groups.end()) return &rule;
        } else if (fnmatch(rule.match.c_str(), name.c_str(), 0) == 0 ||
                 (!where.empty() && fnmatch(rule.match.c_str(), where.c_str(), 0) == 0))
            return &rule;
    }
    return fallback;
}

void cadence::sighted(std::int64_t unix_ms) noexcept {
    if (last_ms >= 0) {
        const std::int64_t gap = unix_ms - last_ms;
        if (gap < 1000) return;  // the same burst: its first message is the sign of life
        gaps_ms[next] = static_cast<std::uint32_t>(std::min<std::int64_t>(gap, UINT32_MAX));
        next = static_cast<std::uint8_t>((next + 1) % kept);
        if (count < kept) ++count;
    }
    last_ms = unix_ms;
}

std::uint32_t cadence::median_ms() const noexcept {
    if (count < needed) return 0;
    std::uint32_t sorted[kept] = {};
    for (std::size_t i = 0; i < count; ++i) {  // eight at most: an insertion sort
        std::size_t j = i;
        for (; j > 0 && sorted[j - 1] > gaps_ms[i]; --j) sorted[j] = sorted[j - 1];
        sorted[j] = gaps_ms[i];
    }
    return sorted[count / 2];
}

std::uint32_t cadence::limit_ms() const noexcept {
    const std::uint64_t median = median_ms();
    if (median == 0) return 0;
    const std::uint64_t longest = *std::max_element(gaps_ms, gaps_ms + count);
    const std::uint64_t limit = std::max<std::uint64_t>(median * multiple, longest * 3 / 2);
    return static_cast<std::uint32_t>(std::min<std::uint64_t>(limit, UINT32_MAX));
}

std::string cadence::gaps_text() const {
    std::string out;
    for (std::size_t i = 0; i < count; ++i) {
        // The oldest first: the ring's next slot once it is full, else its start.
        const std::size_t at = (count < kept ? i : (next + i) % kept);
        if (!out.empty()) out += ',';
        out += std::to_string(gaps_ms[at]);
    }
    return out;
}

std::optional<cadence> cadence::from_gaps_text(std::string_view text) {
    cadence c;
    const char* p = text.data();
    const char* const end = text.data() + text.size();
    while (p != end) {
        if (c.count == kept) return std::nullopt;
        std::uint32_t gap = 0;
        const auto [after, ec] = std::from_chars(p, end, gap);
        if (ec != std::errc() || gap < 1000) return std::nullopt;
        c.gaps_ms[c.count++] = gap;
        p = after;
        if (p != end && (*p != ',' || ++p == end)) return std::nullopt;
    }
    c.next = static_cast<std::uint8_t>(c.count % kept);
    return c;
}

}  // namespace mqtt_presence
