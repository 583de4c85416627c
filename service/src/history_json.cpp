#include <mqtt_presence/service/history_json.hpp>

#include <cmath>

#include <nlohmann/json.hpp>

#include <mqtt_presence/render.hpp>

namespace mqtt_presence {
namespace {

using json = nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }
json time_or_null(const std::optional<time_point>& t) { return t ? json(format_iso8601(*t)) : json(nullptr); }

json event_object(const history_event& e) {
    return {{"time", time_or_null(e.time)},
            {"observed", format_iso8601(e.observed)},
            {"state", to_string(e.status)},
            {"stale", e.stale},
            {"overdue", e.overdue},
            {"previous", e.previous ? json(to_string(*e.previous)) : json(nullptr)},
            {"cause", to_string(e.why)},
            {"epoch", e.epoch ? json(*e.epoch) : json(nullptr)},
            {"topic", e.topic},
            {"ip", e.ip.empty() ? json(nullptr) : json(e.ip)},
            {"retained", e.retained}};
}

json uptime_object(const uptime_figures& f) {
    const auto p = f.uptime_percent();
    return {{"client", f.client},
            {"topic", f.topic},
            {"state", f.state},
            {"uptime_percent", p ? json(std::round(*p * 1000) / 1000) : json(nullptr)},
            {"up_s", f.up.count() / 1000},
            {"down_s", f.down.count() / 1000},
            {"unknown_s", f.unknown.count() / 1000},
            {"disconnects", f.disconnects},
            {"unseen_disconnects", f.unseen_disconnects},
            {"flaps", f.flaps},
            {"longest_outage_s", f.longest_outage.count() / 1000},
            {"last_seen", time_or_null(f.last_seen)}};
}

}  // namespace

std::string history_event_json(const history_event& e, bool with_client) {
    auto j = event_object(e);
    if (with_client) j["client"] = e.client;
    return dump(j);
}

std::string history_json(const std::string& client, const std::vector<history_event>& events) {
    json list = json::array();
    for (const auto& e : events) list.push_back(event_object(e));
    return dump({{"client", client}, {"events", list}});
}

std::string uptime_row_json(const uptime_figures& f) { return dump(uptime_object(f)); }

namespace {
json group_object(const group_uptime& g) {
    const auto seconds = [](std::chrono::milliseconds d) { return static_cast<double>(d.count()) / 1000.0; };
    const auto p = g.uptime_percent();
    return {{"group", g.group},
            {"clients", g.clients},
            {"down_now", g.down_now},
            {"uptime_percent", p ? json(*p) : json(nullptr)},
            {"up_s", seconds(g.up)},
            {"down_s", seconds(g.down)},
            {"unknown_s", seconds(g.unknown)},
            {"disconnects", g.disconnects},
            {"flaps", g.flaps},
            {"longest_outage_s", seconds(g.longest_outage)}};
}
}  // namespace

std::string group_uptime_row_json(const group_uptime& g) { return dump(group_object(g)); }

std::string group_uptime_json(const std::string& window, time_point from, time_point to,
                              const std::vector<group_uptime>& rows) {
    json list = json::array();
    for (const auto& g : rows) list.push_back(group_object(g));
    return dump({{"window", window}, {"from", format_iso8601(from)}, {"to", format_iso8601(to)}, {"groups", list}});
}

std::string uptime_json(const std::string& window, time_point from, time_point to,
                        const std::vector<uptime_figures>& rows) {
    json list = json::array();
    for (const auto& f : rows) list.push_back(uptime_object(f));
    return dump({{"window", window}, {"from", format_iso8601(from)}, {"to", format_iso8601(to)}, {"clients", list}});
}

}  // namespace mqtt_presence
