#include <mqtt_presence/service/uptime.hpp>

#include <algorithm>

namespace mqtt_presence {
namespace {

// Stale and overdue are down: connected by its word, but not heard as it should be.
health health_of(state s, bool unheard) {
    if (s == state::connected) return unheard ? health::down : health::up;
    return s == state::disconnected ? health::down : health::unknown;
}

shade shade_of(state s, bool stale, bool overdue) {
    if (s == state::disconnected) return shade::disconnected;
    if (s != state::connected) return shade::unknown;
    return overdue ? shade::overdue : stale ? shade::stale : shade::connected;
}

shade shade_after(const history_event& e) {
    return e.why == cause::removed ? shade::unknown : shade_of(e.status, e.stale, e.overdue);
}

shade shade_at_start(const std::optional<client_status>& current, const std::vector<history_event>& events) {
    if (!events.empty()) {
        const auto& first = events.front();
        if (!first.previous) return shade::unknown;
        // What the first event changed from: stale before a "fresh", overdue before a "back".
        return shade_of(*first.previous, first.why == cause::fresh, first.why == cause::back);
    }
    return current ? shade_of(current->status, current->stale, current->overdue) : shade::unknown;
}

health health_of(shade s) {
    switch (s) {
        case shade::connected: return health::up;
        case shade::disconnected:
        case shade::stale:
        case shade::overdue: return health::down;
        case shade::unknown: break;
    }
    return health::unknown;
}

health health_after(const history_event& e) {
    return e.why == cause::removed ? health::unknown : health_of(e.status, e.stale || e.overdue);
}

// How much of [a, b) the watched intervals cover; `at` remembers where the last look ended (segments only move on).
std::chrono::milliseconds covered(const std::vector<interval>& watched, std::size_t& at, time_point a, time_point b) {
    std::chrono::milliseconds total{0};
    while (at < watched.size() && watched[at].to <= a) ++at;
    for (std::size_t i = at; i < watched.size() && watched[i].from < b; ++i) {
        const auto lo = std::max(a, watched[i].from);
        const auto hi = std::min(b, watched[i].to);
        if (hi > lo) total += std::chrono::duration_cast<std::chrono::milliseconds>(hi - lo);
    }
    return total;
}

// The health when the window opens: what the first event in it changed from, or, with none, the state now.
health health_at_start(const std::optional<client_status>& current, const std::vector<history_event>& events) {
    if (!events.empty()) {
        const auto& first = events.front();
        return first.previous ? health_of(*first.previous, first.why == cause::fresh || first.why == cause::back)
                              : health::unknown;
    }
    return current ? health_of(current->status, current->stale || current->overdue) : health::unknown;
}

}  // namespace

std::string_view to_string(health h) noexcept {
    switch (h) {
        case health::up: return "up";
        case health::down: return "down";
        case health::unknown: break;
    }
    return "unknown";
}

std::string_view to_string(shade s) noexcept {
    switch (s) {
        case shade::connected: return "connected";
        case shade::disconnected: return "disconnected";
        case shade::stale: return "stale";
        case shade::overdue: return "overdue";
        case shade::unknown: break;
    }
    return "unknown";
}

std::vector<segment> compute_timeline(const std::optional<client_status>& current,
                                      const std::vector<history_event>& events, const std::vector<interval>& watched,
                                      time_point from, time_point to) {
    std::vector<segment> out;
    const auto add = [&out](time_point a, time_point b, shade s) {
        if (b <= a) return;
        if (!out.empty() && out.back().shade == s && out.back().to == a) out.back().to = b;
        else out.push_back(segment{a, b, health_of(s), s});
    };
    shade h = shade_at_start(current, events);
    std::size_t w = 0;
    const auto stretch = [&](time_point a, time_point b) {  // [a, b) in health h, unknown where not watched
        while (w < watched.size() && watched[w].to <= a) ++w;
        time_point t = a;
        for (std::size_t i = w; i < watched.size() && watched[i].from < b && t < b; ++i) {
            const auto lo = std::max(t, watched[i].from), hi = std::min(b, watched[i].to);
            if (hi <= lo) continue;
            add(t, lo, shade::unknown);
            add(lo, hi, h);
            t = hi;
        }
        add(t, b, shade::unknown);
    };
    time_point t = from;
    for (const auto& e : events) {
        const auto when = std::clamp(e.observed, from, to);
        stretch(t, when);
        t = when;
        h = shade_after(e);
    }
    stretch(t, to);
    return out;
}

std::optional<double> uptime_figures::uptime_percent() const {
    const auto known = up + down;
    if (known.count() <= 0) return std::nullopt;
    return 100.0 * static_cast<double>(up.count()) / static_cast<double>(known.count());
}

std::optional<double> group_uptime::uptime_percent() const {
    const auto known = up + down;
    if (known.count() <= 0) return std::nullopt;
    return 100.0 * static_cast<double>(up.count()) / static_cast<double>(known.count());
}

std::vector<group_uptime> uptime_by_group(
    const std::vector<uptime_figures>& clients, const std::vector<std::string>& names,
    const std::function<std::vector<std::string>(const uptime_figures&)>& groups_of) {
    std::vector<group_uptime> out(names.size());
    for (std::size_t i = 0; i < names.size(); ++i) out[i].group = names[i];
    for (const auto& f : clients) {
        for (const auto& g : groups_of(f)) {
            const auto it = std::find(names.begin(), names.end(), g);
            if (it == names.end()) continue;
            auto& u = out[static_cast<std::size_t>(it - names.begin())];
            ++u.clients;
            if (f.state == "disconnected" || f.state == "stale" || f.state == "overdue") ++u.down_now;
            u.up += f.up;
            u.down += f.down;
            u.unknown += f.unknown;
            u.disconnects += f.disconnects;
            u.flaps += f.flaps;
            u.longest_outage = std::max(u.longest_outage, f.longest_outage);
        }
    }
    return out;
}

uptime_figures compute_uptime(const std::string& client, const std::string& topic,
                              const std::optional<client_status>& current, const std::vector<history_event>& events,
                              const std::vector<interval>& watched, time_point from, time_point to,
                              std::chrono::milliseconds flap_interval) {
    uptime_figures f;
    f.client = client;
    f.topic = topic;
    f.state = !current                ? "removed"
              : current->overdue ? "overdue"
              : current->stale   ? "stale"
                                 : std::string(to_string(current->status));
    if (current) f.last_seen = current->last_seen;

    health h = health_at_start(current, events);

    std::size_t at = 0;
    std::chrono::milliseconds outage{0};
    auto segment = [&](time_point a, time_point b) {
        if (b <= a) return;
        const auto length = std::chrono::duration_cast<std::chrono::milliseconds>(b - a);
        const auto seen = covered(watched, at, a, b);
        f.unknown += length - seen;
        switch (h) {
            case health::up: f.up += seen; break;
            case health::down: f.down += seen; outage += seen; break;
            case health::unknown: f.unknown += seen; break;
        }
        if (h != health::down) outage = std::chrono::milliseconds{0};
        f.longest_outage = std::max(f.longest_outage, outage);
    };

    time_point t = from;
    for (std::size_t i = 0; i < events.size(); ++i) {
        const auto& e = events[i];
        const auto when = std::clamp(e.observed, from, to);
        segment(t, when);
        t = when;
        const health next = health_after(e);
        if (next != health::down) outage = std::chrono::milliseconds{0};
        h = next;
        if (e.status == e.previous && e.status != state::unknown && e.why == cause::unseen) {
            // Connected again under a newer connection (the watched one ended unseen), or disconnected again under
            // a newer one (a whole connection began and ended unseen): one disconnect nobody saw, either way.
            ++f.disconnects;
            ++f.unseen_disconnects;
        } else if (e.status == state::disconnected && e.previous == state::connected && e.why != cause::removed) {
            ++f.disconnects;
            for (std::size_t j = i + 1; j < events.size(); ++j) {
                if (events[j].status != state::connected || events[j].why == cause::removed) continue;
                if (events[j].observed - e.observed <= flap_interval) ++f.flaps;
                break;
            }
        }
    }
    segment(t, to);
    return f;
}

}  // namespace mqtt_presence
