#include "recent_changes.hpp"

#include <algorithm>
#include <functional>
#include <string>
#include <unordered_map>

#include <mqtt_presence/service/history_event.hpp>

#include <optional>

namespace mqtt_presence::detail {

// What makes a change the same change in the follower's table and in the leader's history.
std::string key_of(const history_event& e) {
    std::string k;
    k.reserve(e.topic.size() + e.client.size() + 32);
    k.append(e.topic).push_back('\0');
    k.append(e.client).push_back('\0');
    k += std::to_string(static_cast<int>(e.status));
    k += e.stale ? 's' : '-';
    k += e.overdue ? 'o' : '-';
    k += to_string(e.why);
    if (e.epoch) k += std::to_string(*e.epoch);
    return k;
}

void recent_changes::add(const change& c) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (changes_.size() == most) {
        changes_.pop_front();
        ++overflowed_;
    }
    changes_.push_back(c);
}

void recent_changes::mark(std::int64_t last_event_id, std::optional<time_point> last_observed) {
    std::lock_guard<std::mutex> lock(mutex_);
    marks_.push_back({last_event_id, last_observed.value_or(time_point{})});
    // The leader writes in the order it observes: what this table changed well before the leader's newest event
    // is written (or in a gap the leader said).
    const auto written_before = marks_.back().observed - margin;
    while (!changes_.empty() && changes_.front().at < written_before) changes_.pop_front();
    // The newest mark from before the first change kept (by the margin) bounds the events to compare with; with
    // nothing kept, the first change to come is after the newest event.
    const auto bound = changes_.empty() ? written_before - std::chrono::seconds(1) : changes_.front().at - margin;
    while (marks_.size() > 1 && marks_[1].observed <= bound) marks_.pop_front();
}

namespace {
// Where a client's kept changes `mine` (oldest first) begin among the history's events `theirs` (after the mark,
// oldest first): at an event with the same key, within a second of the follower's first (the two saw the same
// messages within milliseconds), from which the two agree until either ends; the closest in time when several do
// (plain "1"/"0" repeat their keys; changes with epochs, as this library's statuses have, have keys of their own).
// nullopt: none of them was written.
std::optional<std::size_t> start_in(const std::vector<recent_changes::keyed>& theirs,
                                    const std::vector<recent_changes::keyed>& mine) {
    std::optional<std::size_t> best;
    auto best_gap = std::chrono::milliseconds::max();
    for (std::size_t s = 0; s < theirs.size(); ++s) {
        if (theirs[s].key != mine[0].key) continue;
        const auto gap = std::chrono::abs(std::chrono::duration_cast<std::chrono::milliseconds>(theirs[s].at - mine[0].at));
        if (gap > std::chrono::seconds(1) || gap >= best_gap) continue;
        std::size_t i = 1;
        while (i < mine.size() && s + i < theirs.size() && theirs[s + i].key == mine[i].key) ++i;
        if (i < mine.size() && s + i < theirs.size()) continue;  // they disagree
        best = s;
        best_gap = gap;
    }
    return best;
}
}  // namespace

std::size_t recent_changes::key_of(const change& c) {
    return std::hash<std::string>{}(detail::key_of(event_of(c)));
}

std::vector<change> recent_changes::unwritten(const history_reader& db, std::vector<change>* kept) {
    std::deque<change> changes;
    mark_t from;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (marks_.empty()) {  // never looked at the database: nothing to compare with
            changes_.clear();
            return {};
        }
        changes.swap(changes_);
        from = marks_.front();
    }
    // (A follower that started moments ago has no mark from before its first changes: those within the margin
    // of the mark's newest event may be in the history before the mark, and the leader, alive then, wrote them.)
    while (!changes.empty() && changes.front().at < from.observed + margin) changes.pop_front();
    if (kept) kept->assign(changes.begin(), changes.end());
    std::unordered_map<std::string, std::vector<keyed>> theirs, mine;  // by topic and client
    for (const auto& e : db.events_after(from.id, 4 * most))
        theirs[e.topic + '\0' + e.client].push_back({std::hash<std::string>{}(detail::key_of(e)), e.observed});
    for (const auto& c : changes) mine[c.current.topic + '\0' + c.current.client].push_back({key_of(c), c.at});
    std::unordered_map<std::string, std::size_t> skip;  // of each client's kept changes, how many were written
    std::lock_guard<std::mutex> lock(mutex_);
    ahead_.clear();
    for (const auto& [client, seen] : mine) {
        const auto it = theirs.find(client);
        if (it == theirs.end()) continue;
        const auto start = start_in(it->second, seen);
        if (!start) continue;
        const auto& events = it->second;
        const auto written = std::min(seen.size(), events.size() - *start);
        skip[client] = written;
        // The leader wrote more than this follower's table has changed yet (it lags): those come later, and are
        // written already.
        for (std::size_t k = *start + written; k < events.size(); ++k) ahead_[client].push_back(events[k].key);
    }
    std::vector<change> out;
    for (auto& c : changes) {
        auto it = skip.find(c.current.topic + '\0' + c.current.client);
        if (it != skip.end() && it->second > 0) {
            --it->second;
            continue;
        }
        out.push_back(std::move(c));
    }
    return out;
}

bool recent_changes::written_ahead(const change& c) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (ahead_.empty()) return false;
    const auto it = ahead_.find(c.current.topic + '\0' + c.current.client);
    if (it == ahead_.end()) return false;
    const bool same = it->second.front() == key_of(c);
    if (same) it->second.pop_front();
    if (!same || it->second.empty()) ahead_.erase(it);  // (one that differs: from here on they disagree)
    return same;
}

std::uint64_t recent_changes::overflowed() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return overflowed_;
}

}  // namespace mqtt_presence::detail
