#pragma once
// change_feed: the live feed behind GET /api/events. The history's writer publishes each committed batch (changes
// with their ids in the file); every viewer reads the batches after its own cursor. A ring keeps the recent batches
// for viewers that fall behind a little; a browser that reconnects with Last-Event-ID reads what it missed from the
// file, then follows the feed (ids tell the two apart).
// Private to the service library.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mqtt_presence::detail {

class change_feed {
public:
    struct message {
        std::uint64_t seq = 0;                                 // the feed's own order
        std::vector<std::pair<std::int64_t, std::string>> changes;  // (event id, JSON), ascending ids
        std::size_t truncated = 0;  // changes of the batch left out (a storm): the viewer reloads instead
        std::string state;          // non-empty: the service's own state (JSON), not changes
    };

    explicit change_feed(std::size_t keep = 256) : keep_(keep) {}

    void publish_changes(std::vector<std::pair<std::int64_t, std::string>> changes, std::size_t truncated);
    void publish_state(std::string json);
    /// Messages after `seq`, waiting up to `timeout` for one. Empty on timeout or close().
    std::vector<message> after(std::uint64_t seq, std::chrono::milliseconds timeout);
    [[nodiscard]] std::uint64_t head() const;
    /// Wakes every viewer and makes them leave.
    void close();
    [[nodiscard]] bool closed() const;
    [[nodiscard]] std::size_t viewers() const;
    void viewer(int delta);

private:
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<message> ring_;
    std::size_t keep_;
    std::uint64_t seq_ = 0;
    std::size_t viewers_ = 0;
    bool closed_ = false;
};

}  // namespace mqtt_presence::detail
