#include "change_feed.hpp"

namespace mqtt_presence::detail {

void change_feed::publish_changes(std::vector<std::pair<std::int64_t, std::string>> changes, std::size_t truncated) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        ring_.push_back(message{++seq_, std::move(changes), truncated, {}});
        if (ring_.size() > keep_) ring_.pop_front();
    }
    cv_.notify_all();
}

void change_feed::publish_state(std::string json) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        ring_.push_back(message{++seq_, {}, 0, std::move(json)});
        if (ring_.size() > keep_) ring_.pop_front();
    }
    cv_.notify_all();
}

std::vector<change_feed::message> change_feed::after(std::uint64_t seq, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait_for(lock, timeout, [&] { return closed_ || seq_ > seq; });
    std::vector<message> out;
    if (closed_) return out;
    for (const auto& m : ring_)
        if (m.seq > seq) out.push_back(m);
    return out;
}

std::uint64_t change_feed::head() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return seq_;
}

void change_feed::close() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        closed_ = true;
    }
    cv_.notify_all();
}

bool change_feed::closed() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return closed_;
}

std::size_t change_feed::viewers() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return viewers_;
}

void change_feed::viewer(int delta) {
    std::lock_guard<std::mutex> lock(mutex_);
    viewers_ = delta > 0 ? viewers_ + 1 : viewers_ - 1;
}

}  // namespace mqtt_presence::detail
