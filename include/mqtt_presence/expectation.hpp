#pragma once
// Expected intervals: how long a client may go unheard (no status message, no reading on an activity topic)
// before it is `overdue`. Given per client or topic by glob, or for every client, as a fixed interval or "auto":
// the client's own cadence, learned from the gaps between its messages (a sleeping sensor that reports once a day
// is not overdue after ten minutes).
// Pure: no I/O, no Paho.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mqtt_presence {

struct expectation {
    std::string match;  ///< glob (fnmatch) on the client's name or status topic, or "group:NAME"; empty: every client
    std::chrono::seconds every{0};   ///< the interval (at least 1 s); unused when `learned`
    bool learned = false;            ///< "auto": a multiple of the client's own cadence

    /// "10m", "auto", "GLOB=2h" or "GLOB=auto" (the last '=' splits: a glob may hold one). Throws
    /// mqtt_presence::error saying what is wrong and how to write it.
    [[nodiscard]] static expectation parse(std::string_view text);
    /// The text parse() reads back ("kitchen*=7200s").
    [[nodiscard]] std::string text() const;
};

/// The rule for one client: the first whose glob fits its name or topic (or names one of its `groups`), else the
/// last without a glob; nullptr when none applies.
[[nodiscard]] const expectation* expectation_for(const std::vector<expectation>& rules, std::string_view client,
                                                 std::string_view topic, const std::vector<std::string>& groups = {});

/// A client's cadence learned from its last gaps (between live messages at least a second apart: readings that
/// come in a burst are one sign of life).
struct cadence {
    static constexpr std::size_t kept = 8;    ///< the gaps it remembers
    static constexpr std::size_t needed = 3;  ///< gaps before it judges: until then nobody is overdue by it
    static constexpr std::uint32_t multiple = 3;  ///< overdue after this many of its median gaps ...

    std::int64_t last_ms = -1;  ///< its last live message (Unix ms); -1 before the first
    std::uint32_t gaps_ms[kept] = {};
    std::uint8_t count = 0;
    std::uint8_t next = 0;

    /// A live message at `unix_ms`.
    void sighted(std::int64_t unix_ms) noexcept;
    /// The median of the gaps it keeps; 0 until `needed` gaps.
    [[nodiscard]] std::uint32_t median_ms() const noexcept;
    /// How long it may go unheard: the larger of `multiple` medians and 1.5 times its longest kept gap (... or
    /// longer, for a client whose gaps vary); 0 until `needed` gaps.
    [[nodiscard]] std::uint32_t limit_ms() const noexcept;

    /// The gaps it keeps, oldest first, in ms ("3600000,3590000,3610000"): how a history keeps what was learned
    /// across restarts ("" before the first gap).
    [[nodiscard]] std::string gaps_text() const;
    /// The gaps read back from gaps_text() (the last message unknown: the next one starts a gap); nullopt for text
    /// that is not such a list (at most `kept` numbers of at least a second each).
    [[nodiscard]] static std::optional<cadence> from_gaps_text(std::string_view text);
};

/// A client's learned cadence by its status topic (scanner::cadences): what a history keeps, so that a service that
/// restarts does not have to learn a sleeping device's day-long cadence again.
struct learned_cadence {
    std::string topic;         ///< its status topic (filled by the scanner; the table leaves it empty)
    std::string client;        ///< its name
    std::uint16_t source = 0;  ///< its topic scheme (the table's key beside the name)
    cadence learned;
};

}  // namespace mqtt_presence
