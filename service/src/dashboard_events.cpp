// GET /api/events: the live feed (server-sent events), resumable from the file by Last-Event-ID.
#include <algorithm>
#include <map>
#include <optional>
#include <sstream>
#include <tuple>

#include <mqtt_presence/duration.hpp>
#include <mqtt_presence/error.hpp>
#include <mqtt_presence/render.hpp>
#include <mqtt_presence/service/history_json.hpp>

#include "dashboard_impl.hpp"
#include "sink_stream.hpp"

namespace mqtt_presence {

using namespace dashboard_util;

namespace dashboard_util {

// A live change as the feed sends it: the `events` JSON with the file's id and the cause in front.
std::string change_json(std::int64_t id, const change& c) {
    std::string body = render_change_json(c);
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
    return "{\"id\":" + std::to_string(id) + ",\"cause\":\"" + std::string(to_string(cause_of(c))) + "\"," +
           body.substr(1);
}

// A change read back from the file, in the same shape (the row holds what the file keeps).
std::string change_json(const history_event& e) {
    const char* kind = !e.previous ? "added"
                       : e.why == cause::removed ? "removed"
                       : e.why == cause::stale   ? "stale"
                       : e.why == cause::fresh   ? "fresh"
                       : e.why == cause::overdue ? "overdue"
                       : e.why == cause::back    ? "back"
                                                 : "changed";
    json client{{"client", e.client},
                {"state", to_string(e.status)},
                {"stale", e.stale},
                {"overdue", e.overdue},
                {"topic", e.topic},
                {"ip", e.ip.empty() ? json(nullptr) : json(e.ip)},
                {"epoch", e.epoch ? json(*e.epoch) : json(nullptr)},
                {"since", time_or_null(e.time)}};
    return dump({{"id", e.id},
                 {"cause", to_string(e.why)},
                 {"event", kind},
                 {"previous", e.previous ? json(to_string(*e.previous)) : json(nullptr)},
                 {"client", client}});
}

}  // namespace dashboard_util

void dashboard::impl::events(const httplib::Request& req, httplib::Response& res) {
    std::optional<std::int64_t> resume;
    const auto last = req.has_header("Last-Event-ID") ? req.get_header_value("Last-Event-ID") : req.get_param_value("last_id");
    if (last.size() < 19 && all_digits(last))
        resume = std::stoll(last);
    struct viewer {
        std::uint64_t cursor = 0;
        std::int64_t sent = -1;  // the last event id sent
        bool started = false;
    };
    if (feed.viewers() >= static_cast<std::size_t>(options.max_viewers)) {
        res.status = 503;
        res.set_header("Retry-After", "10");
        res.set_content("too many live viewers (" + std::to_string(options.max_viewers) + "); try again later\n",
                        "text/plain; charset=utf-8");
        return;
    }
    auto v = std::make_shared<viewer>();
    guard->streaming(req.remote_addr, req.remote_port, true);
    feed.viewer(+1);          // first: from here on the feed renders what the history commits
    v->cursor = feed.head();  // then: what it publishes from now on is followed; what came before is read
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, v, resume](std::size_t, httplib::DataSink& sink) {
            std::string out;
            if (!v->started) {
                v->started = true;
                out += "retry: 2000\n\n";
                out += "event: scanner\ndata: " + render_scanner_json(svc.table().status()) + "\n\n";
                if (resume) {
                    // What the viewer missed, from the file; a great many: it reloads instead.
                    v->sent = *resume;
                    constexpr std::size_t most = 5000;
                    const auto missed = reader.events_after(*resume, most + 1);
                    if (missed.size() > most) {
                        out += "event: reset\ndata: {\"missed\":" + std::to_string(missed.size()) + "}\n\n";
                    } else if (!missed.empty()) {
                        std::string list;
                        for (const auto& e : missed) list += (list.empty() ? "" : ",") + change_json(e);
                        v->sent = missed.back().id;
                        out += "id: " + std::to_string(v->sent) + "\nevent: changes\ndata: {\"changes\":[" + list +
                               "]}\n\n";
                    }
                }
                return sink.write(out.data(), out.size());
            }
            const auto messages = feed.after(v->cursor, std::chrono::seconds(15));
            if (feed.closed()) {
                sink.done();
                return false;
            }
            if (messages.empty()) out = ": keepalive\n\n";
            for (const auto& m : messages) {
                v->cursor = m.seq;
                if (!m.state.empty()) {
                    out += "event: scanner\ndata: " + m.state + "\n\n";
                    continue;
                }
                std::string list;
                // (Id 0: a follower's own change, not in the history: always shown, never resumed from.)
                for (const auto& [id, text] : m.changes)
                    if (id == 0 || id > v->sent) list += (list.empty() ? "" : ",") + text;
                if (!m.changes.empty()) v->sent = std::max(v->sent, m.changes.back().first);
                const auto id_line = v->sent > 0 ? "id: " + std::to_string(v->sent) + "\n" : std::string();
                if (m.truncated > 0)
                    out += id_line + "event: reset\ndata: {\"truncated\":" + std::to_string(m.truncated) + "}\n\n";
                else if (!list.empty())
                    out += id_line + "event: changes\ndata: {\"changes\":[" + list + "]}\n\n";
            }
            if (out.empty()) return true;
            return sink.write(out.data(), out.size());
        },
        [this, addr = req.remote_addr, port = req.remote_port](bool) {
            feed.viewer(-1);
            guard->streaming(addr, port, false);
        });
}


}  // namespace mqtt_presence
