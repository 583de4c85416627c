// The silences' API: GET /api/silences, POST /api/silences {"target","for","reason"}, DELETE /api/silences/{id}.
// Changes are JSON bodies only (a form or an <img> of another site cannot send one without the browser asking
// first), and refused on a listener beyond this machine without a login.
#include <nlohmann/json.hpp>

#include <mqtt_presence/duration.hpp>
#include <mqtt_presence/error.hpp>

#include "dashboard_impl.hpp"

namespace mqtt_presence {

using namespace dashboard_util;

namespace {

void answer(httplib::Response& res, int status, const std::string& body) {
    res.status = status;
    res.set_content(body + "\n", "application/json");
}

// The user of a Basic login ("Basic base64(user:password)"), else the peer's address.
std::string author(const httplib::Request& req, const std::string& user) {
    return user.empty() ? "anonymous at " + req.remote_addr : user;
}

}  // namespace

void dashboard::impl::list_silences(httplib::Response& res) {
    const auto now = clock::now();
    std::string body = "{\"silences\":[";
    bool first = true;
    for (const auto& s : svc.silences().active(now)) {
        body += (first ? "" : ",") + s.json();
        first = false;
    }
    answer(res, 200, body + "],\"held\":" + std::to_string(svc.silences().held()) + "}");
}

bool dashboard::impl::may_change_silences(const httplib::Request& req, httplib::Response& res) const {
    if (options.user.empty() && !options.loopback()) {
        answer(res, 403, dump({{"error", "silences are changed only with a login (--http-user) on a listener beyond "
                                         "this machine"}}));
        return false;
    }
    const auto type = req.get_header_value("Content-Type");
    if (req.method == "POST" && type.rfind("application/json", 0) != 0) {
        answer(res, 415, dump({{"error", "send the silence as JSON (Content-Type: application/json)"}}));
        return false;
    }
    return true;
}

void dashboard::impl::add_silence(const httplib::Request& req, httplib::Response& res) {
    if (!may_change_silences(req, res)) return;
    const auto body = nlohmann::json::parse(req.body, nullptr, false);
    const auto text = [&body](const char* key) {
        return body.is_object() && body.contains(key) && body[key].is_string() ? body[key].get<std::string>()
                                                                                 : std::string();
    };
    try {
        if (!body.is_object()) throw error("the body is not a JSON object: {\"target\",\"for\",\"reason\"}");
        const auto duration = parse_duration(text("for").empty() ? "1h" : text("for"));
        const auto s = svc.add_silence(text("target"), duration, text("reason"), author(req, options.user));
        answer(res, 201, s.json());
    } catch (const not_leading& e) {
        answer(res, 503, dump({{"error", e.what()}}));
    } catch (const error& e) {
        bad_request(res, e.what());
    }
}

void dashboard::impl::end_silence(const httplib::Request& req, httplib::Response& res) {
    if (!may_change_silences(req, res)) return;
    std::optional<silence> ended;
    try {
        ended = svc.end_silence(std::string(req.matches[1]));
    } catch (const not_leading& e) {
        answer(res, 503, dump({{"error", e.what()}}));
        return;
    }
    if (!ended) {
        answer(res, 404, dump({{"error", "no running silence has that id"}}));
        return;
    }
    answer(res, 200, ended->json());
}

}  // namespace mqtt_presence
