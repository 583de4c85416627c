#include "paho_wake.hpp"

#include <algorithm>

namespace mqtt_presence::detail {
namespace {
bool same(const std::weak_ptr<task_guard>& a, const std::shared_ptr<task_guard>& b) {
    return !a.owner_before(b) && !b.owner_before(a);
}
}  // namespace

paho_wake& paho_wake::instance() {
    static paho_wake wake;
    return wake;
}

void paho_wake::connected(const std::shared_ptr<task_guard>& guard, std::function<void()> round_trip) {
    if (!guard) return;
    std::lock_guard<std::mutex> lock(mutex_);
    connected_.push_back({guard, std::move(round_trip)});
}

void paho_wake::gone(const std::shared_ptr<task_guard>& guard) noexcept {
    if (!guard) return;
    std::lock_guard<std::mutex> lock(mutex_);
    connected_.erase(std::remove_if(connected_.begin(), connected_.end(),
                                    [&](const entry& e) { return same(e.guard, guard) || e.guard.expired(); }),
                     connected_.end());
}

void paho_wake::request() {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    if (now - last_request_ < spacing) return;
    for (const auto& e : connected_) {
        auto guard = e.guard.lock();
        if (!guard) continue;  // gone without saying so: pruned at the next gone()
        last_request_ = now;
        // A task of that client: it runs only while the client lives (task_guard), never under this lock.
        client_scheduler::instance().at(now, std::move(guard), e.round_trip);
        return;
    }
}

}  // namespace mqtt_presence::detail
