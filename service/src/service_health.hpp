#pragma once
// service_health: one verdict on every part of a running service (broker and sync, history writes, notary, alert
// delivery), for /healthz, /metrics and the log. Private to the service library.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mqtt_presence/service/presence_service.hpp>

namespace mqtt_presence::detail {

struct service_health {
    // Each part as read once (short locks), for /metrics to show without reading it again.
    scanner_status broker;
    history_stats history;
    std::optional<notary_stats> notary;  ///< nullopt: no notary
    alert_sinks::backlog alerts;         ///< empty when alerts are off

    std::vector<std::string> problems;  ///< empty: healthy; else one sentence per failing part
    std::vector<std::string> notes;     ///< healthy but worth saying (a partial sync on RabbitMQ)
    nlohmann::json parts;               ///< {"broker":{...},"history":{...},"notary":{...},"alerts":{...}}

    [[nodiscard]] bool ok() const noexcept { return problems.empty(); }
    /// {"status":"ok"|"failing","problems":[...],"notes":[...], ...parts}
    [[nodiscard]] std::string json_text() const;
};

/// Alerts waiting longer than this for their receiver make the service unhealthy.
constexpr std::chrono::seconds alert_delivery_limit{60};

/// The service's role in a pair: {"role":"leader"|"follower","leader":WHO|null}, WHO as the leader names itself
/// (detail::writer_name; null while a follower has seen none).
[[nodiscard]] nlohmann::json role_json(const presence_service& svc);

/// Reads each part's state (short locks, no I/O). Thread-safe.
[[nodiscard]] service_health assess(presence_service& svc);

}  // namespace mqtt_presence::detail
