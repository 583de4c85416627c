#include "paho_wake.hpp"

namespace mqtt_presence::detail {

paho_wake& paho_wake::instance() {
    static paho_wake wake;
    return wake;
}

void paho_wake::connected(const std::shared_ptr<task_guard>& guard, std::function<void()> round_trip) {
    if (!guard) return;
    std::lock_guard<std::mutex> lock(mutex_);
    forget(guard.get());
    by_age_.emplace(next_age_, entry{guard, std::move(round_trip)});
    age_of_[guard.get()] = next_age_++;
}

void paho_wake::gone(const std::shared_ptr<task_guard>& guard) noexcept {
    if (!guard) return;
    std::lock_guard<std::mutex> lock(mutex_);
    forget(guard.get());
}

void paho_wake::forget(const task_guard* guard) noexcept {
    const auto it = age_of_.find(guard);
    if (it == age_of_.end()) return;
    by_age_.erase(it->second);
    age_of_.erase(it);
}

void paho_wake::request() {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    if (now - last_request_ < spacing) return;
    for (auto it = by_age_.begin(); it != by_age_.end();) {
        auto guard = it->second.guard.lock();
        if (!guard) {  // its client is gone without saying so; its address may belong to another guard by now
            const auto age = age_of_.find(it->second.key);
            if (age != age_of_.end() && age->second == it->first) age_of_.erase(age);
            it = by_age_.erase(it);
            continue;
        }
        last_request_ = now;
        // A task of that client: it runs only while the client lives (task_guard), never under this lock.
        client_scheduler::instance().at(now, std::move(guard), it->second.round_trip);
        return;
    }
}

}  // namespace mqtt_presence::detail
