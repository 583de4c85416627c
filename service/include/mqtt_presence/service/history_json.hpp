#pragma once
// The JSON shapes of the history's answers, one definition for the command line (history, uptime) and the HTTP API:
//   history: {"client":NAME,"events":[{"time","observed","state","stale","previous","cause","epoch","topic","ip",
//             "retained"}]}                      (time null when unknown)
//   uptime:  {"window","from","to","clients":[{"client","topic","state","uptime_percent","up_s","down_s",
//             "unknown_s","disconnects","flaps","longest_outage_s","last_seen"}]}
// Text from the network is carried exactly (invalid UTF-8 replaced), escaped per JSON.

#include <string>
#include <vector>

#include <mqtt_presence/service/history_event.hpp>
#include <mqtt_presence/service/uptime.hpp>

namespace mqtt_presence {

/// One event object (an NDJSON line without the newline); `client` adds a "client" member (for NDJSON).
[[nodiscard]] std::string history_event_json(const history_event& e, bool with_client = false);
[[nodiscard]] std::string history_json(const std::string& client, const std::vector<history_event>& events);
/// One client's uptime object.
[[nodiscard]] std::string uptime_row_json(const uptime_figures& f);
[[nodiscard]] std::string uptime_json(const std::string& window, time_point from, time_point to,
                                      const std::vector<uptime_figures>& rows);
/// uptime --by group: {"window","from","to","groups":[{"group","clients","down_now","uptime_percent","up_s",
/// "down_s","unknown_s","disconnects","flaps","longest_outage_s"}]}; one object per NDJSON line.
[[nodiscard]] std::string group_uptime_row_json(const group_uptime& g);
[[nodiscard]] std::string group_uptime_json(const std::string& window, time_point from, time_point to,
                                            const std::vector<group_uptime>& rows);

}  // namespace mqtt_presence
