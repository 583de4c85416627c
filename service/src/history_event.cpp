#include <mqtt_presence/service/history_event.hpp>

#include <array>

namespace mqtt_presence {
namespace {

constexpr std::array<std::string_view, 10> cause_names{"connected", "clean", "lost",   "unknown", "removed",
                                                       "stale",     "fresh", "unseen", "overdue", "back"};

}  // namespace

std::string_view to_string(cause c) noexcept { return cause_names[static_cast<std::size_t>(c)]; }

std::optional<cause> parse_cause(std::string_view text) noexcept {
    for (std::size_t i = 0; i < cause_names.size(); ++i)
        if (cause_names[i] == text) return static_cast<cause>(i);
    return std::nullopt;
}

cause cause_of(const change& c) noexcept {
    switch (c.kind) {
        case change_kind::removed: return cause::removed;
        case change_kind::stale: return cause::stale;
        case change_kind::fresh: return cause::fresh;
        case change_kind::overdue: return cause::overdue;
        case change_kind::back: return cause::back;
        case change_kind::added:
        case change_kind::changed:
        case change_kind::reconnected: break;
    }
    // A retained status that differs from what the table held: it changed while nobody watched.
    if (!c.live && c.previous) return cause::unseen;
    switch (c.current.status) {
        case state::connected: return cause::connected;
        case state::disconnected:
            if (c.current.reason == "clean") return cause::clean;
            if (c.current.reason == "lost") return cause::lost;
            return cause::unknown;
        case state::unknown: break;
    }
    return cause::unknown;
}

history_event event_of(const change& c) {
    history_event e;
    e.observed = c.at;
    e.time = time_of(c);
    e.client = c.current.client;
    e.topic = c.current.topic;
    e.previous = c.previous;
    e.status = c.current.status;
    e.stale = c.current.stale;
    e.overdue = c.current.overdue;
    e.why = cause_of(c);
    e.epoch = c.current.epoch;
    e.ip = c.current.ip;
    e.retained = !c.live;
    return e;
}

}  // namespace mqtt_presence
