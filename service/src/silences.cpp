#include <mqtt_presence/service/silences.hpp>

#include <fnmatch.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include <nlohmann/json.hpp>

#include <mqtt_presence/error.hpp>
#include <mqtt_presence/render.hpp>

namespace mqtt_presence {
namespace {

constexpr std::size_t longest_text = 500;

std::string random_id() {
    std::random_device rd;
    const std::uint64_t v = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(v));
    return text;
}

}  // namespace

std::string silence::json() const {
    return nlohmann::json{{"id", id},
                          {"target", target},
                          {"reason", reason},
                          {"by", by},
                          {"from", format_iso8601(from)},
                          {"until", format_iso8601(until)},
                          {"ended", ended ? nlohmann::json(format_iso8601(*ended)) : nlohmann::json(nullptr)}}
        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool silence::covers(const std::string& client, const std::vector<std::string>& groups) const {
    if (target.rfind("group:", 0) == 0)
        return std::find(groups.begin(), groups.end(), target.substr(6)) != groups.end();
    return !client.empty() && fnmatch(target.c_str(), client.c_str(), 0) == 0;
}

silence silence_book::add(const std::string& target, std::chrono::milliseconds duration, const std::string& reason,
                          const std::string& by, time_point now) {
    if (target.empty() || target == "group:") throw error("a silence needs a client (a name or glob) or group:NAME");
    if (reason.empty()) throw error("a silence needs a reason (--reason): who reads the alerts later asks why");
    if (target.size() > longest_text || reason.size() > longest_text || by.size() > longest_text)
        throw error("a silence's target, reason and author are at most 500 bytes each");
    if (duration.count() <= 0 || duration > longest) throw error("a silence lasts more than 0 and at most 90 days");
    silence s{random_id(), target, reason, by, now, now + duration, std::nullopt};
    std::lock_guard<std::mutex> lock(mutex_);
    // Those over (ended, or past their time) go; one that begins later stays.
    silences_.erase(std::remove_if(silences_.begin(), silences_.end(),
                                   [&](const silence& x) { return x.ended || x.until <= now; }),
                    silences_.end());
    silences_.push_back(s);
    return s;
}

std::optional<silence> silence_book::end(const std::string& id, time_point now) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& s : silences_) {
        if (s.id != id || !s.active(now)) continue;
        s.ended = now;
        return s;
    }
    return std::nullopt;
}

std::vector<silence> silence_book::active(time_point now) const {
    std::vector<silence> out;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& s : silences_)
            if (s.active(now)) out.push_back(s);
    }
    std::sort(out.begin(), out.end(), [](const silence& a, const silence& b) { return a.until < b.until; });
    return out;
}

void silence_book::restore(const std::vector<silence>& remembered) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& s : remembered)
        if (std::none_of(silences_.begin(), silences_.end(), [&](const silence& x) { return x.id == s.id; }))
            silences_.push_back(s);
}

std::optional<silence> silence_book::covering(const std::string& client, const std::vector<std::string>& groups,
                                              time_point now) const {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& s : silences_)
        if (s.active(now) && s.covers(client, groups)) return s;
    return std::nullopt;
}

std::uint64_t silence_book::held() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return held_;
}

void silence_book::count_held() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++held_;
}

}  // namespace mqtt_presence
