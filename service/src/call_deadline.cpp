#include "call_deadline.hpp"

namespace mqtt_presence::detail {

call_deadline::call_deadline() : thread_([this] { watch(); }) {}

call_deadline::~call_deadline() noexcept {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

call_deadline::armed call_deadline::arm(std::chrono::milliseconds within, std::function<void()> on_late) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        due_ = std::chrono::steady_clock::now() + within;
        on_late_ = std::move(on_late);
    }
    cv_.notify_all();
    return armed(*this);
}

void call_deadline::disarm() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);  // an on_late that runs holds it: it ends first
    due_.reset();
    on_late_ = nullptr;
}

unsigned long call_deadline::late() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return late_;
}

void call_deadline::watch() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
        if (!due_) {
            cv_.wait(lock, [this] { return stopping_ || due_.has_value(); });
            continue;
        }
        const auto due = *due_;
        if (cv_.wait_until(lock, due, [this, due] { return stopping_ || !due_ || *due_ != due; })) continue;
        // Still armed for this call: it is late. Ended under the lock, so that disarm() waits for it.
        ++late_;
        try {
            if (on_late_) on_late_();
        } catch (...) {
            // what ends the call failed: the call goes on, as it would have without the watchdog
        }
        due_.reset();
        on_late_ = nullptr;
    }
}

}  // namespace mqtt_presence::detail
