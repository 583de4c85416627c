// GET /metrics (Prometheus) and GET /healthz.
#include <algorithm>
#include <map>
#include <optional>
#include <sstream>
#include <tuple>

#include <mqtt_presence/duration.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/render.hpp>
#include <mqtt_presence/service/history_json.hpp>
#include <mqtt_presence/version.hpp>

#include "dashboard_impl.hpp"
#include "service_health.hpp"

namespace mqtt_presence {

using namespace dashboard_util;

void dashboard::impl::metrics(httplib::Response& res) {
    // Appended in place, with one reused label text: a scrape of 100,000 clients makes 400,000 lines.
    std::string up, seen, since, transitions, labels;
    std::map<std::string, group_health> groups;
    auto& table = svc.table();
    const auto rows = table.counts().total();  // grown once, not by doubling and copying tens of megabytes
    up.reserve(rows * 72);
    seen.reserve(rows * 96);
    since.reserve(rows * 96);
    transitions.reserve(rows * 80);
    const auto sample = [&labels](std::string& family, const char* name) -> std::string& {
        return family.append(name).append(labels);
    };
    const auto [counts, stats] = table.for_each_sorted([&](const client_status& c) {
        for (const auto& g : c.groups) groups[g].tally(c);
        labels.assign("{client=\"");
        append_prometheus_label(labels, c.client);
        labels += "\",topic=\"";
        append_prometheus_label(labels, c.topic);
        labels += "\"} ";
        append_prometheus_up_sample(up, c);
        if (c.last_seen) {
            append_prometheus_seconds(sample(seen, "mqtt_presence_last_seen_timestamp_seconds"), *c.last_seen);
            seen += '\n';
        }
        if (c.since) {
            append_prometheus_seconds(sample(since, "mqtt_presence_state_since_timestamp_seconds"), *c.since);
            since += '\n';
        }
        sample(transitions, "mqtt_presence_transitions_total").append(std::to_string(c.transitions)) += '\n';
    });
    const auto health = detail::assess(svc);  // every part read once, for the figures below too
    const auto& st = health.broker;
    const auto& h = health.history;
    const auto& alerts = health.alerts;
    std::string out;
    out.reserve(up.size() + seen.size() + since.size() + transitions.size() + 16384);
    const auto family = [&out](const char* name, const char* type, const char* help, const std::string& samples) {
        out.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ").append(name).append(" ");
        out.append(type).append("\n").append(samples);
    };
    family("mqtt_presence_build_info", "gauge", "Always 1; the version of the service in a label.",
           std::string("mqtt_presence_build_info{version=\"") + mqtt_presence::version + "\"} 1\n");
    family("mqtt_presence_up", "gauge", "1 if the client is connected and neither stale nor overdue, else 0.", up);
    family("mqtt_presence_last_seen_timestamp_seconds", "gauge", "When the client's last message arrived.", seen);
    family("mqtt_presence_state_since_timestamp_seconds", "gauge", "When the client's current state began.", since);
    family("mqtt_presence_transitions_total", "counter", "State changes of the client since the history began.",
           transitions);
    out += render_prometheus_summary(counts, stats, &st);  // the same families as once --format prometheus
    out += render_prometheus_groups(groups);
    struct scalar {
        const char* name;
        const char* type;
        const char* help;
        std::uint64_t value;
    };
    for (const auto& m : {
             scalar{"mqtt_presence_history_backlog", "gauge", "Changes waiting for the history's disk.", h.queued},
             scalar{"mqtt_presence_history_write_errors_total", "counter", "Commits to the history that failed.",
                    h.write_errors},
             scalar{"mqtt_presence_history_failing", "gauge", "1 while the history cannot be written.",
                    h.failing ? 1u : 0u},
             scalar{"mqtt_presence_history_cache_bytes", "gauge",
                    "The history writer's page cache (grows with the file, 64 MiB at most).", h.cache_bytes},
             scalar{"mqtt_presence_alerts_pending", "gauge", "Alerts waiting for their receiver.", alerts.count},
             scalar{"mqtt_presence_alerts_given_up_total", "counter", "Alerts never delivered.", alerts.given_up},
             scalar{"mqtt_presence_alerts_silenced_total", "counter", "Alerts held by a silence (recorded, not sent).",
                    svc.silences().held()},
             scalar{"mqtt_presence_silences_active", "gauge", "Silences running now.",
                    svc.silences().active(clock::now()).size()},
             scalar{"mqtt_presence_healthy", "gauge", "1 when /healthz says ok.", health.ok() ? 1u : 0u},
             scalar{"mqtt_presence_leader", "gauge",
                    "1 while this service writes the history (0: it follows another serve).", svc.leading() ? 1u : 0u},
             scalar{"mqtt_presence_history_written_total", "counter", "Changes committed to the history.", h.written},
             scalar{"mqtt_presence_history_dropped_total", "counter", "Changes the history could not keep (a gap).",
                    h.dropped},
             scalar{"mqtt_presence_http_viewers", "gauge", "Live dashboard viewers connected.", feed.viewers()},
             scalar{"mqtt_presence_http_pages_built_total", "counter", "Pages of /api/clients built from the table.",
                    pages_built.load()},
             scalar{"mqtt_presence_http_pages_shared_total", "counter",
                    "Pages of /api/clients served as built for an earlier request (same query, same table version).",
                    pages_shared.load()},
         })
        family(m.name, m.type, m.help, std::string(m.name) + " " + std::to_string(m.value) + "\n");
    if (health.notary) {  // absent without a notary
        family("mqtt_presence_notary_connected", "gauge", "1 while the notary is connected.",
               "mqtt_presence_notary_connected " + std::string(health.notary->connected ? "1" : "0") + "\n");
        family("mqtt_presence_notary_pending", "gauge", "Notary records waiting for the broker.",
               "mqtt_presence_notary_pending " + std::to_string(health.notary->pending) + "\n");
    }
    if (alerts.oldest)
        family("mqtt_presence_alerts_oldest_pending_seconds", "gauge", "Age of the oldest alert not yet delivered.",
               "mqtt_presence_alerts_oldest_pending_seconds " +
                   std::to_string(std::chrono::duration_cast<std::chrono::seconds>(clock::now() - *alerts.oldest).count()) +
                   "\n");
    res.set_content(out, "text/plain; version=0.0.4; charset=utf-8");
}

void dashboard::impl::healthz(httplib::Response& res) {
    const auto h = detail::assess(svc);
    res.status = h.ok() ? 200 : 503;
    res.set_header("Cache-Control", "no-store");
    res.set_content(h.json_text() + "\n", "application/json");
}


}  // namespace mqtt_presence
