#include "client_scheduler.hpp"

#include <algorithm>

namespace mqtt_presence::detail {

client_scheduler& client_scheduler::instance() {
    static client_scheduler scheduler;
    return scheduler;
}

client_scheduler::~client_scheduler() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void client_scheduler::at(steady::time_point when, std::shared_ptr<task_guard> guard, std::function<void()> fn) {
    bool first = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        first = tasks_.empty() || when < tasks_.begin()->first;
        tasks_.emplace(when, task{std::move(guard), std::move(fn)});
        if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
    }
    if (first) cv_.notify_one();
}

client_scheduler::steady::time_point client_scheduler::reserve_connect() {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto now = steady::now();
    if (connect_rate_ <= 0) return now;
    const auto slot = std::max(now, next_connect_);
    next_connect_ = slot + std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(1.0 / connect_rate_));
    return slot;
}

void client_scheduler::set_connect_rate(double per_second) {
    std::lock_guard<std::mutex> lock(mutex_);
    connect_rate_ = std::max(0.0, per_second);
}

double client_scheduler::connect_rate() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return connect_rate_;
}

void client_scheduler::loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
        if (tasks_.empty()) {
            cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
            continue;
        }
        const auto due = tasks_.begin()->first;
        if (steady::now() < due) {
            cv_.wait_until(lock, due);
            continue;
        }
        auto t = std::move(tasks_.begin()->second);
        tasks_.erase(tasks_.begin());
        lock.unlock();
        {
            std::lock_guard<std::mutex> hold(t.guard->mutex);
            if (t.guard->alive) {
                try {
                    t.fn();
                } catch (...) {
                    // a task reports its own errors; nothing may end this thread
                }
            }
        }
        t = {};  // the task's captures go before the lock is taken again
        lock.lock();
    }
}

}  // namespace mqtt_presence::detail
