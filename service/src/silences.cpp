#include <mqtt_presence/service/silences.hpp>

#include <fnmatch.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <random>
#include <sstream>

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

namespace {

constexpr const char* day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

int day_of(std::string text) {
    for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (int d = 0; d < 7; ++d)
        if (text == day_names[d]) return d;
    return -1;
}

// "HH:MM" as minutes after midnight; -1 when it is not one.
int minutes_of(const std::string& text) {
    int h = 0, m = 0;
    char tail = 0;
    if (std::sscanf(text.c_str(), "%2d:%2d%c", &h, &m, &tail) != 2 || h < 0 || h > 24 || m < 0 || m > 59 ||
        (h == 24 && m != 0))
        return -1;
    return h * 60 + m;
}

std::uint8_t days_of(const std::string& text) {
    if (text == "daily" || text == "*") return 0x7F;
    std::uint8_t days = 0;
    std::size_t at = 0;
    while (at <= text.size()) {
        auto end = text.find(',', at);
        if (end == std::string::npos) end = text.size();
        const auto item = text.substr(at, end - at);
        const auto dash = item.find('-');
        const int a = day_of(item.substr(0, dash)), b = dash == std::string::npos ? a : day_of(item.substr(dash + 1));
        if (a < 0 || b < 0) return 0;
        for (int d = a;; d = (d + 1) % 7) {
            days = static_cast<std::uint8_t>(days | (1u << d));
            if (d == b) break;
        }
        at = end + 1;
    }
    return days;
}

}  // namespace

recurring_silence recurring_silence::parse(const std::string& text) {
    const auto bad = [&](const std::string& why) {
        return error("--silence-every \"" + text + "\": " + why +
                     "; write e.g. \"group:garage Sun 02:00-04:00 weekly backup\" or \"boiler Mon-Fri 22:00-06:00 night\"");
    };
    std::istringstream in(text);
    std::string target, days, window;
    in >> target >> days >> window;
    std::string reason;
    std::getline(in >> std::ws, reason);
    if (target.empty() || window.empty()) throw bad("it needs a target, the days and the hours");
    if (reason.empty()) throw bad("it needs a reason after the hours");
    recurring_silence r;
    r.target = target;
    r.reason = reason;
    r.days = days_of(days);
    if (r.days == 0) throw bad("the days are daily, a day (Sun), a range (Mon-Fri) or a list (Sat,Sun)");
    const auto dash = window.find('-');
    const int a = dash == std::string::npos ? -1 : minutes_of(window.substr(0, dash));
    const int b = dash == std::string::npos ? -1 : minutes_of(window.substr(dash + 1));
    if (a < 0 || b < 0 || a == b) throw bad("the hours are HH:MM-HH:MM, not empty");
    r.start_min = static_cast<std::uint16_t>(a);
    r.end_min = static_cast<std::uint16_t>(b);
    return r;
}

std::optional<silence> recurring_silence::open_at(time_point now, std::size_t index) const {
    const std::time_t t = clock::to_time_t(now);
    std::tm local{};
    localtime_r(&t, &local);
    const int minute = local.tm_hour * 60 + local.tm_min;
    const auto begins = [this](int weekday) { return (days >> weekday & 1u) != 0; };
    int day_offset = 0;  // the window began today (0) or yesterday (-1)
    if (start_min < end_min) {
        if (!begins(local.tm_wday) || minute < start_min || minute >= end_min) return std::nullopt;
    } else if (begins(local.tm_wday) && minute >= start_min) {
        day_offset = 0;
    } else if (begins((local.tm_wday + 6) % 7) && minute < end_min) {
        day_offset = -1;
    } else {
        return std::nullopt;
    }
    std::tm start = local;
    start.tm_mday += day_offset;
    start.tm_hour = start_min / 60;
    start.tm_min = start_min % 60;
    start.tm_sec = 0;
    start.tm_isdst = -1;
    std::tm end = start;
    end.tm_hour = end_min / 60;
    end.tm_min = end_min % 60;
    if (end_min <= start_min) end.tm_mday += 1;
    end.tm_isdst = -1;
    return silence{"every-" + std::to_string(index), target, reason, "configuration",
                   clock::from_time_t(std::mktime(&start)), clock::from_time_t(std::mktime(&end)), std::nullopt};
}

void silence_book::recurring(std::vector<recurring_silence> windows) {
    std::lock_guard<std::mutex> lock(mutex_);
    recurring_ = std::move(windows);
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
        for (std::size_t i = 0; i < recurring_.size(); ++i)
            if (auto open = recurring_[i].open_at(now, i)) out.push_back(std::move(*open));
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

void silence_book::mirror(std::vector<silence> running) {
    std::lock_guard<std::mutex> lock(mutex_);
    silences_ = std::move(running);
}

std::optional<silence> silence_book::covering(const std::string& client, const std::vector<std::string>& groups,
                                              time_point now) const {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& s : silences_)
        if (s.active(now) && s.covers(client, groups)) return s;
    for (std::size_t i = 0; i < recurring_.size(); ++i)
        if (auto open = recurring_[i].open_at(now, i); open && open->covers(client, groups)) return open;
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
