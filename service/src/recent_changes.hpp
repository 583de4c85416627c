#pragma once
// recent_changes: what a follower's own table changed in the last seconds, so that when it takes over it writes
// what the old leader had not (its last batches, lost with it: a SIGKILL, a cut connection), each change once.
// The follower marks the database's newest event every time it looks at the leader, and lets go of the changes
// the leader has written since; at its takeover it reads the events committed after a mark from before the first
// change it kept and, per client, writes the changes after the run of them that the history holds. A change is
// the same change on both sides by its key: the client, its topic, the state, the stale and overdue flags, the
// epoch and the cause. Private to the service library.

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <mqtt_presence/connection_table.hpp>
#include <mqtt_presence/service/history_reader.hpp>

namespace mqtt_presence::detail {

/// What makes a change the same change in a follower's table and in the leader's history.
std::string key_of(const history_event& e);

class recent_changes {
public:
    /// The leader writes what it observed within about a second; its clock and this one agree within this margin.
    static constexpr std::chrono::seconds margin{2};
    /// At most this many changes are kept (the oldest go first; `overflowed` says so).
    static constexpr std::size_t most = 200000;

    /// A change the follower's table made (the delivery thread).
    void add(const change& c);
    /// The database's newest committed event: its id and when it was observed (nullopt: none yet). Changes well
    /// before it are let go: the leader, which writes in the order it observes, wrote them.
    void mark(std::int64_t last_event_id, std::optional<time_point> last_observed);
    /// The kept changes the database does not hold, in order, and forgets them all; notes, per client, the
    /// changes the leader wrote that this table has not made yet (it lags), for written_ahead(). Throws
    /// mqtt_presence::error when the database cannot be read.
    /// `kept` (if given) receives every change kept, written or not.
    std::vector<change> unwritten(const history_reader& db, std::vector<change>* kept = nullptr);
    /// After unwritten(): whether this change of the table (the next of its client) is one the leader wrote.
    bool written_ahead(const change& c);
    /// Changes that were let go because more than `most` waited for the leader.
    [[nodiscard]] std::uint64_t overflowed() const;

    struct keyed {
        std::size_t key;  // a hash of the change's key
        time_point at;    // observed
    };

private:
    void trim(time_point now);  // caller holds mutex_
    static std::size_t key_of(const change& c);

    mutable std::mutex mutex_;
    std::deque<change> changes_;
    struct mark_t {
        std::int64_t id = 0;
        time_point observed{};
    };
    std::deque<mark_t> marks_;
    std::uint64_t overflowed_ = 0;
    std::unordered_map<std::string, std::deque<std::size_t>> ahead_;  // by topic and client: keys, oldest first
};

}  // namespace mqtt_presence::detail
