#include <mqtt_presence/service/alert_engine.hpp>

#include <fnmatch.h>

#include <algorithm>
#include <cstdio>
#include <ctime>

#include <nlohmann/json.hpp>

#include <mqtt_presence/error.hpp>
#include <mqtt_presence/duration.hpp>
#include <mqtt_presence/render.hpp>
#include <mqtt_presence/service/history_event.hpp>

namespace mqtt_presence {
namespace {

constexpr std::size_t sample_size = 5;
// A scheme's outage is announced once no client fell for this long (its count is then the whole outage's) ...
constexpr std::chrono::seconds outage_settle{1};
// ... and over once no client returned for this long (a fleet coming back at its own pace is one recovery).
constexpr std::chrono::seconds recovery_settle{5};

bool is_down(const client_status& r) { return r.status == state::disconnected || r.unheard(); }

}  // namespace

void alert_options::validate() const {
    if (after.count() < 0) throw error("--alert-after must not be negative");
    if (flap_count < 2) throw error("--alert-flap-count must be at least 2");
    if (flap_window.count() <= 0) throw error("--alert-flap-window must be positive");
    if (!(outage_percent > 0 && outage_percent <= 100)) throw error("--alert-outage-percent must be in (0, 100]");
}

namespace {

const char* cause_words(const std::string& cause) {
    if (cause == "lost") return "lost: its connection dropped and the broker published its will";
    if (cause == "clean") return "clean: it said it was going";
    if (cause == "stale") return "stale: its heartbeats stopped";
    if (cause == "overdue") return "overdue: unheard for longer than expected";
    if (cause == "unseen") return "unseen: it changed while the service was not watching";
    return "cause unknown";
}

std::string when(const std::optional<time_point>& t) { return t ? format_iso8601(*t) : std::string("an unknown time"); }

std::string names(const std::vector<std::string>& sample, std::size_t count) {
    std::string out;
    for (const auto& n : sample) out += (out.empty() ? "" : ", ") + n;
    if (count > sample.size()) out += ", ... (" + std::to_string(count - sample.size()) + " more)";
    return out;
}

}  // namespace

std::string alert::title() const {
    const auto of = reason == "broker" ? std::string("the broker") : reason;
    if (kind == "down") return client + " is down";
    if (kind == "recovered") return client + " is back";
    if (kind == "overdue") return client + " is overdue";
    if (kind == "back") return client + " was heard from again";
    if (kind == "flapping") return client + " is flapping";
    if (kind == "new") return client + " is new";
    if (kind == "removed") return client + " was removed";
    if (kind == "outage" && !group.empty())
        return std::to_string(count) + " of " + std::to_string(total) + " in " + group + " are down";
    if (kind == "outage-over" && !group.empty()) return "the outage of " + group + " is over";
    if (kind == "outage")
        return reason == "broker" ? "the service lost the broker"
                                  : std::to_string(count) + " clients of " + of + " are down";
    if (kind == "outage-over")
        return reason == "broker" ? "the service has the broker again" : "the outage of " + of + " is over";
    if (kind == "already-down")
        return std::to_string(count) + " clients were already down at the service's first start";
    return kind + (client.empty() ? "" : " " + client);
}

std::string alert::message() const {
    if (kind == "down")
        return client + " (" + topic + ") disconnected at " + when(since) + " (" + cause_words(cause) + ").";
    if (kind == "recovered")
        return client + " (" + topic + ") is connected again" +
               (down_for ? " after " + format_duration(*down_for) + " down." : "; how long it was down is unknown.");
    if (kind == "overdue")
        return client + " (" + topic + ") has not been heard from since " + when(since) +
               (expected ? "; it is expected within " + format_duration(*expected) + "." : ".");
    if (kind == "back")
        return client + " (" + topic + ") was heard from again" +
               (down_for ? " after " + format_duration(*down_for) + " of silence." : ".");
    if (kind == "flapping")
        return client + " (" + topic + ") keeps disconnecting (the last: " + cause_words(cause) +
               "); no more alerts about it until it is stable.";
    if (kind == "new" || kind == "removed") return client + " (" + topic + ")";
    if (kind == "outage" && reason == "broker")
        return "The service lost " + (broker.empty() ? std::string("the broker") : broker) + " at " + when(since) +
               "; the " + std::to_string(count) + " clients up then are unknown now.";
    if (kind == "outage")
        return std::to_string(count) + (group.empty() ? " clients" : " of the " + std::to_string(total) + " in " + group) +
               " went down at once: " + names(sample, count) + ".";
    if (kind == "outage-over")
        return count == 0 ? std::string("Every client is back.")
                          : std::to_string(count) + " still down: " + names(sample, count) + ".";
    if (kind == "already-down")
        return "Down when the service first looked: " + names(sample, count) + ". They alert again only once back.";
    return title();
}

std::string alert::json() const {
    const auto text_or_null = [](const std::string& t) {
        return t.empty() ? nlohmann::json(nullptr) : nlohmann::json(t);
    };
    nlohmann::json j{{"alert", kind},
                     {"cause", text_or_null(cause)},
                     {"client", text_or_null(client)},
                     {"topic", text_or_null(topic)},
                     {"scheme", text_or_null(scheme)},
                     {"broker", text_or_null(broker)},
                     {"time", format_iso8601(time)},
                     {"since", since ? nlohmann::json(format_iso8601(*since)) : nlohmann::json(nullptr)},
                     {"count", count},
                     {"title", title()},
                     {"message", message()},
                     {"url", text_or_null(url)}};
    if (kind == "overdue")
        j["expect_s"] =
            expected ? nlohmann::json(static_cast<double>(expected->count()) / 1000.0) : nlohmann::json(nullptr);
    if (kind == "recovered" || kind == "back")
        j["down_for_s"] =
            down_for ? nlohmann::json(static_cast<double>(down_for->count()) / 1000.0) : nlohmann::json(nullptr);
    if (!sample.empty() || kind == "outage" || kind == "outage-over" || kind == "already-down") j["sample"] = sample;
    if (!reason.empty()) j["reason"] = reason;
    if (!group.empty()) j["group"] = group;
    if (!groups.empty()) j["groups"] = groups;
    if (!silenced.empty()) j["silenced"] = silenced;
    if (total > 0) j["total"] = total;
    if (outbox_id > 0) j["id"] = outbox_id;  // the same at a re-delivery: what a receiver dedupes by
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {
std::optional<time_point> iso_time(const nlohmann::json& v) {
    if (!v.is_string()) return std::nullopt;
    std::tm tm{};
    int ms = 0;
    if (std::sscanf(v.get<std::string>().c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                    &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return std::nullopt;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return time_point(std::chrono::seconds(timegm(&tm)) + std::chrono::milliseconds(ms));
}
}  // namespace

std::optional<alert> alert::from_json(const std::string& text) {
    const auto j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_object() || !j.contains("alert") || !j["alert"].is_string()) return std::nullopt;
    const auto str = [&j](const char* key) {
        return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
    };
    alert a;
    a.kind = str("alert");
    a.client = str("client");
    a.topic = str("topic");
    const auto t = iso_time(j.value("time", nlohmann::json()));
    if (!t) return std::nullopt;
    a.time = *t;
    a.since = iso_time(j.value("since", nlohmann::json()));
    if (j.contains("count") && j["count"].is_number_unsigned()) a.count = j["count"].get<std::size_t>();
    if (j.contains("sample") && j["sample"].is_array())
        for (const auto& s : j["sample"])
            if (s.is_string()) a.sample.push_back(s.get<std::string>());
    a.reason = str("reason");
    a.group = str("group");
    a.silenced = str("silenced");
    if (j.contains("groups") && j["groups"].is_array())
        for (const auto& g : j["groups"])
            if (g.is_string()) a.groups.push_back(g.get<std::string>());
    if (j.contains("total") && j["total"].is_number_unsigned()) a.total = j["total"].get<std::size_t>();
    a.cause = str("cause");
    a.scheme = str("scheme");
    a.broker = str("broker");
    a.url = str("url");
    if (j.contains("down_for_s") && j["down_for_s"].is_number())
        a.down_for = std::chrono::milliseconds(static_cast<std::int64_t>(j["down_for_s"].get<double>() * 1000.0 + 0.5));
    if (j.contains("expect_s") && j["expect_s"].is_number())
        a.expected = std::chrono::milliseconds(static_cast<std::int64_t>(j["expect_s"].get<double>() * 1000.0 + 0.5));
    return a;
}

alert_engine::alert_engine(alert_options options, std::vector<std::string> scheme_filters)
    : options_(std::move(options)), scheme_filters_(std::move(scheme_filters)) {
    options_.validate();
}

bool alert_engine::watched(const std::string& client) const {
    const auto matches = [&client](const std::string& pattern) { return fnmatch(pattern.c_str(), client.c_str(), 0) == 0; };
    if (!options_.only.empty() && std::none_of(options_.only.begin(), options_.only.end(), matches)) return false;
    return std::none_of(options_.exclude.begin(), options_.exclude.end(), matches);
}

bool alert_engine::in_outage(const client_state& s) const {
    if (broker_outage_ || !service_watching_) return true;
    const auto it = schemes_.find(s.scheme);
    return it != schemes_.end() && it->second.active;
}

alert alert_engine::make(const std::string& kind, const client_state& s, time_point now) const {
    alert a;
    a.kind = kind;
    a.client = s.client;
    a.topic = s.topic;
    a.time = now;
    a.since = s.down_since;
    a.cause = s.down_cause;
    a.count = 1;
    if (s.source < scheme_filters_.size()) a.scheme = scheme_filters_[s.source];
    a.groups = s.groups;
    if (kind == "overdue") a.expected = s.expected;
    return a;
}

// A client's outage scope: its first group's, else its topic scheme's (scheme i is scope i; groups come after).
std::uint16_t alert_engine::scope_of(const client_status& row) {
    if (row.groups.empty()) return row.source;
    const auto it = group_scopes_.find(row.groups.front());
    if (it != group_scopes_.end()) return it->second;
    const auto scope = static_cast<std::uint16_t>(first_group_scope + group_scopes_.size());
    group_scopes_.emplace(row.groups.front(), scope);
    scope_groups_.emplace(scope, row.groups.front());
    return scope;
}

std::string alert_engine::scope_reason(std::uint16_t scope) const {
    if (const auto it = scope_groups_.find(scope); it != scope_groups_.end()) return "group:" + it->second;
    return scope < scheme_filters_.size() ? scheme_filters_[scope] : std::string();
}

alert_engine::client_state& alert_engine::track(const client_status& row) {
    auto [it, added] = clients_.try_emplace({row.client, row.source});
    auto& s = it->second;
    if (added) {
        s.client = row.client;
        s.source = row.source;
        s.scheme = scope_of(row);
        ++schemes_[s.scheme].clients;
    }
    s.topic = row.topic;
    s.groups = row.groups;
    s.expected = row.expected;
    return s;
}

void alert_engine::set_down(client_state& s, bool down) {
    if (s.down == down) return;
    s.down = down;
    auto& sc = schemes_[s.scheme];
    sc.down = down ? sc.down + 1 : sc.down - 1;
}

template <class Pick>
alert alert_engine::outage(const char* kind, std::string reason, time_point now, Pick counted) const {
    alert a;
    a.kind = kind;
    a.time = now;
    a.cause = reason == "broker" ? "broker" : reason.rfind("group:", 0) == 0 ? "group" : "scheme";
    if (a.cause == "scheme") a.scheme = reason;
    if (a.cause == "group") a.group = reason.substr(6);
    a.reason = std::move(reason);
    for (const auto& [key, s] : clients_) {
        if (!counted(s)) continue;
        ++a.count;
        if (a.sample.size() < sample_size) a.sample.push_back(s.client);
    }
    return a;
}

void alert_engine::seed(const client_status& row, bool down_sent, time_point now) {
    auto& s = track(row);
    set_down(s, is_down(row));
    s.down_since = s.down ? row.since : std::nullopt;
    s.down_cause = row.overdue                                    ? "overdue"
                   : row.stale                                    ? "stale"
                   : row.reason == "lost" || row.reason == "clean" ? row.reason
                                                                  : "unknown";
    // A death the history dated counts from then: one due while the service was down is sent at the next tick.
    s.down_at = s.down && row.since && !row.overdue ? *row.since : now;
    s.down_sent = s.down && down_sent;
}

bool alert_engine::down(const client_status& row) noexcept { return is_down(row); }

std::optional<alert> alert_engine::already_down(const std::vector<client_status>& down_rows, time_point now) {
    constexpr std::size_t named = 20;
    alert a;
    a.kind = "already-down";
    a.cause = "unknown";
    a.time = now;
    for (const auto& row : down_rows) {
        seed(row, true, now);  // alerted: this summary stands for its "down"
        if (!watched(row.client)) continue;
        ++a.count;
        if (a.sample.size() < named) a.sample.push_back(row.client);
    }
    if (a.count == 0) return std::nullopt;
    return a;
}

void alert_engine::went_down(client_state& s, std::optional<time_point> since, std::string cause, time_point now,
                             std::vector<alert>& out) {
    set_down(s, true);
    s.down_since = since;  // unknown stays unknown (a death learned after the fact)
    s.down_cause = std::move(cause);
    s.down_at = now;
    s.down_sent = false;
    s.held = false;
    s.covered = false;
    s.member = schemes_[s.scheme].active;
    // Flapping: the disconnects within the window.
    s.disconnects.push_back(now);
    while (!s.disconnects.empty() && now - s.disconnects.front() > options_.flap_window) s.disconnects.pop_front();
    if (!s.flapping && s.disconnects.size() >= options_.flap_count) {
        s.flapping = true;
        if (watched(s.client) && !in_outage(s)) out.push_back(make("flapping", s, now));
    }
    auto& sc = schemes_[s.scheme];
    sc.downs.push_back(now);
    check_outage(s.scheme, now, out);
}

void alert_engine::came_back(client_state& s, std::optional<time_point> since, time_point now,
                             std::vector<alert>& out) {
    const bool was_sent = s.down_sent && !s.covered;  // an outage-over stood for its "down": no "recovered"
    set_down(s, false);
    s.down_sent = false;
    s.held = false;
    s.covered = false;
    s.member = false;
    schemes_[s.scheme].last_up = now;
    if (was_sent && !s.flapping && watched(s.client)) {
        const bool heard = s.down_cause == "overdue";
        auto a = make(heard ? "back" : "recovered", s, now);
        a.cause = heard ? "seen" : s.down_cause == "stale" ? "fresh" : "connected";
        a.since = since;  // when its connection began, if known
        const auto back_at = since.value_or(now);
        if (s.down_since && back_at >= *s.down_since)
            a.down_for = std::chrono::duration_cast<std::chrono::milliseconds>(back_at - *s.down_since);
        out.push_back(std::move(a));
    }
    s.down_since.reset();
}

void alert_engine::check_outage(std::uint16_t scheme, time_point now, std::vector<alert>& out) {
    auto& sc = schemes_[scheme];
    while (!sc.downs.empty() && now - sc.downs.front() > options_.outage_window) sc.downs.pop_front();
    const double limit = options_.outage_percent / 100.0 * static_cast<double>(sc.clients);
    const auto members_down = [scheme](const client_state& s) { return s.scheme == scheme && s.down && s.member; };
    if (!sc.active) {
        if (sc.clients < options_.outage_min_clients || static_cast<double>(sc.downs.size()) <= limit) return;
        sc.active = true;
        sc.announced = false;
        sc.detected = now;
        for (auto& [key, s] : clients_)  // the ones that made it: members (once per outage, not per change)
            if (s.scheme == scheme && s.down && !s.down_sent) s.member = true;
        return;
    }
    if (!sc.announced) {
        const auto last_down = sc.downs.empty() ? sc.detected : sc.downs.back();
        if (now - last_down < outage_settle && now - sc.detected < options_.after) return;
        sc.announced = true;
        auto a = outage("outage", scope_reason(scheme), now, members_down);
        a.total = sc.clients;
        out.push_back(std::move(a));
        return;
    }
    // Back: every client up again, or few enough down and no new death for the outage window; either once no
    // client returned for recovery_settle.
    const bool back = sc.down == 0 || (static_cast<double>(sc.down) <= limit && sc.downs.empty());
    if (back && now - sc.last_up >= recovery_settle) end_outage(scheme, now, out);
}

// The scheme is back: one summary of the members still down, which stands for their own "down".
void alert_engine::end_outage(std::uint16_t scheme, time_point now, std::vector<alert>& out) {
    auto& sc = schemes_[scheme];
    sc.active = false;
    auto over = outage("outage-over", scope_reason(scheme), now,
                       [scheme](const client_state& s) { return s.scheme == scheme && s.down && s.member; });
    over.total = sc.clients;
    out.push_back(std::move(over));
    for (auto& [key, s] : clients_) {
        if (s.scheme != scheme || !s.member) continue;
        s.member = false;
        if (!s.down) continue;
        s.down_sent = true;
        s.covered = true;
        s.held = false;
    }
}

std::vector<alert> alert_engine::on_change(const change& c, time_point now) {
    std::vector<alert> out;
    const auto& r = c.current;
    const auto key = std::make_pair(r.client, r.source);
    if (c.kind == change_kind::removed) {
        const auto it = clients_.find(key);
        if (it != clients_.end()) {
            if (options_.on_removed && watched(r.client)) out.push_back(make("removed", it->second, now));
            set_down(it->second, false);
            --schemes_[it->second.scheme].clients;
            clients_.erase(it);
        }
        return out;
    }
    const bool known = clients_.count(key) > 0;
    auto& s = track(r);
    if (!known && c.kind == change_kind::added && options_.on_new && watched(r.client)) out.push_back(make("new", s, now));
    // Down since: a disconnect's own time (unknown when it happened unseen), or when heartbeats were judged missing;
    // an overdue client's silence began when it was last heard, and ends when it is heard again (the table's time).
    const bool overdue_only = r.unheard() && !r.stale;
    if (is_down(r) && !s.down)
        went_down(s, r.status == state::disconnected ? r.since : overdue_only ? r.last_seen : std::optional(c.at),
                  overdue_only ? std::string("overdue") : std::string(to_string(cause_of(c))), now, out);
    else if (r.up() && s.down)
        came_back(s, c.kind == change_kind::back ? std::optional(c.at) : r.since, now, out);
    return out;
}

std::vector<alert> alert_engine::on_service(bool watching, time_point now) {
    std::vector<alert> out;
    if (watching == service_watching_) return out;
    service_watching_ = watching;
    if (!watching) {
        service_lost_ = now;  // the outage alert waits `after`, as a client's would
        return out;
    }
    service_lost_.reset();
    if (broker_outage_) {
        broker_outage_ = false;
        out.push_back(outage("outage-over", "broker", now, [](const client_state& s) { return s.down; }));
    }
    return out;
}

std::vector<alert> alert_engine::tick(time_point now) {
    std::vector<alert> out;
    if (!service_watching_ && service_lost_ && !broker_outage_ && now - *service_lost_ >= options_.after) {
        broker_outage_ = true;
        // What was up when the service lost the broker: now unknown.
        auto a = outage("outage", "broker", now, [](const client_state& s) { return !s.down; });
        a.since = service_lost_;
        out.push_back(std::move(a));
    }
    std::vector<std::uint16_t> active;
    for (auto& [scheme, sc] : schemes_)
        if (sc.active) active.push_back(scheme);
    for (const auto scheme : active) check_outage(scheme, now, out);
    if (!service_watching_) return out;  // nothing is known about the clients meanwhile
    for (auto& [key, s] : clients_) {
        if (s.flapping && (s.disconnects.empty() || now - s.disconnects.back() > options_.flap_window)) {
            s.flapping = false;  // stable for the window: alerts again
            s.disconnects.clear();
        }
        if (!s.down || s.down_sent || s.flapping || now - s.down_at < options_.after) continue;
        if (in_outage(s)) {
            s.held = true;
            continue;
        }
        if (!watched(s.client)) continue;
        s.down_sent = true;
        s.held = false;
        out.push_back(make(s.down_cause == "overdue" ? "overdue" : "down", s, now));
    }
    return out;
}

time_point alert_engine::next_due() const {
    time_point next = time_point::max();
    for (const auto& [key, s] : clients_)
        if (s.down && !s.down_sent && !s.held && !s.flapping) next = std::min(next, s.down_at + options_.after);
    if (service_lost_ && !broker_outage_) next = std::min(next, *service_lost_ + options_.after);
    return next;
}

}  // namespace mqtt_presence
