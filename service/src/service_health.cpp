#include "service_health.hpp"

#include <mqtt_presence/render.hpp>

#include "history_database.hpp"

namespace mqtt_presence::detail {

using json = nlohmann::json;

namespace {

json time_or_null(const std::optional<time_point>& t) { return t ? json(format_iso8601(*t)) : json(nullptr); }

void broker_part(presence_service& svc, service_health& h) {
    const auto& st = h.broker = svc.table().status();
    std::string why;
    const auto now = clock::now();
    if (!st.connected) why = "not connected to the broker";
    else if (st.no_news(now))
        why = "no round trip through the broker for " +
              std::to_string(std::chrono::duration_cast<std::chrono::seconds>(now - *st.last_heard).count()) +
              " s: frozen or cut, not yet declared lost (last heard " + format_iso8601(*st.last_heard) + ")";
    else if (st.sync == sync_state::syncing) why = "syncing";
    else if (st.sync == sync_state::unverified) why = "sync not verified: the broker may have dropped statuses";
    if (!why.empty() && st.since && !st.no_news(now)) why += " (since " + format_iso8601(*st.since) + ")";
    if (!why.empty()) h.problems.push_back(why);
    if (st.sync_tail_refused)  // the sync still ends (its marker): healthy, and said
        h.notes.push_back("the broker refused the scanner's sync tail (an ACL? let it write mqtt-presence-sync/#)");
    if (st.sync == sync_state::partial)  // how this broker works (RabbitMQ), not a fault: healthy, and said
        h.notes.push_back("partial sync: no retained status came through the wildcard and the sync tail never came "
                          "back: the broker sends none to a wildcard subscription (RabbitMQ), or refused the tail "
                          "(an ACL)");
    h.parts["broker"] = {{"uri", svc.options().scan.broker.server_uri},
                         {"connected", st.connected},
                         {"last_heard", time_or_null(st.last_heard)},
                         {"sync", std::string(to_string(st.sync))},
                         {"since", time_or_null(st.since)}};
}

// A follower writes nothing: its history is the leader's, which it must be able to read (and see the leader in).
void follower_history_part(presence_service& svc, service_health& h) {
    const auto leader = svc.leader();
    if (!leader.problem.empty()) h.problems.push_back("history: " + leader.problem);
    h.parts["history"] = {{"path", svc.history_name()},
                          {"failing", !leader.problem.empty()},
                          {"written_by", leader.who.empty() ? json(nullptr) : json(leader.who)},
                          {"leader_seen_at", time_or_null(leader.seen)},
                          {"last_error", leader.problem.empty() ? json(nullptr) : json(leader.problem)}};
}

void history_part(presence_service& svc, service_health& h) {
    if (!svc.leading()) return follower_history_part(svc, h);
    const auto& s = h.history = svc.history_figures();
    if (s.failing) h.problems.push_back("history: " + s.last_error);
    h.parts["history"] = {{"path", svc.history_name()},
                          {"failing", s.failing},
                          {"backlog", s.queued},
                          {"written", s.written},
                          {"dropped", s.dropped},
                          {"write_errors", s.write_errors},
                          {"last_error", s.last_error.empty() ? json(nullptr) : json(s.last_error)},
                          {"last_error_at", time_or_null(s.last_error_at)},
                          {"last_commit_at", time_or_null(s.last_commit_at)}};
}

void notary_part(presence_service& svc, service_health& h) {
    const auto* notary = svc.notary();
    if (!notary) {
        h.parts["notary"] = nullptr;
        return;
    }
    const auto& s = *(h.notary = notary->stats());
    if (!s.connected) h.problems.push_back("notary: not connected; " + std::to_string(s.pending) + " records wait");
    h.parts["notary"] = {{"connected", s.connected}, {"pending", s.pending}, {"published", s.published},
                         {"failed", s.failed}};
}

void alerts_part(presence_service& svc, service_health& h) {
    if (!svc.options().alerts) {
        h.parts["alerts"] = nullptr;
        return;
    }
    const auto& b = h.alerts = svc.alerts_pending();
    if (b.oldest && clock::now() - *b.oldest > alert_delivery_limit)
        h.problems.push_back("alerts: " + std::to_string(b.count) + " not delivered, the oldest since " +
                             format_iso8601(*b.oldest));
    h.parts["alerts"] = {{"pending", b.count}, {"oldest", time_or_null(b.oldest)}, {"given_up", b.given_up}};
}

}  // namespace

std::string service_health::json_text() const {
    json j = parts;
    j["status"] = ok() ? "ok" : "failing";
    j["problems"] = problems;
    j["notes"] = notes;
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json role_json(const presence_service& svc) {
    if (svc.leading()) return {{"role", "leader"}, {"leader", writer_name()}};
    const auto leader = svc.leader();
    return {{"role", "follower"}, {"leader", leader.who.empty() ? json(nullptr) : json(leader.who)}};
}

service_health assess(presence_service& svc) {
    service_health h;
    h.parts = role_json(svc);
    broker_part(svc, h);
    history_part(svc, h);
    notary_part(svc, h);
    alerts_part(svc, h);
    return h;
}

}  // namespace mqtt_presence::detail
