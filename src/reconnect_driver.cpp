#include <mqtt_presence/reconnect_driver.hpp>

#include <algorithm>

namespace mqtt_presence {

reconnect_driver::reconnect_driver(mqtt::async_client& client, mqtt::connect_options options,
                                   std::chrono::milliseconds cap)
    : client_(client), options_(std::move(options)), cap_(std::max(cap, first_interval)) {}

void reconnect_driver::lost() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    if (wanted_) return;
    wanted_ = true;
    interval_ = first_interval;
    due_ = steady::now();
}

void reconnect_driver::connected() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    wanted_ = false;
}

void reconnect_driver::stop() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    stopped_ = true;
    wanted_ = false;
}

unsigned long reconnect_driver::tries() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return tries_;
}

std::chrono::milliseconds reconnect_driver::next_wait_locked() {
    const auto drawn = std::uniform_int_distribution<long long>(interval_.count() / 2, interval_.count())(jitter_);
    interval_ = std::min(cap_, interval_ * 2);
    return std::chrono::milliseconds(drawn);
}

std::chrono::milliseconds reconnect_driver::tick(std::chrono::milliseconds idle) noexcept {
    const auto now = steady::now();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!wanted_ || stopped_) return idle;
        // A try in flight ends by its CONNACK, a refusal or the connect timeout: one at a time.
        if (in_flight_ && !in_flight_->is_complete()) return std::min(idle, first_interval);
        in_flight_.reset();
        if (now < due_)
            return std::min(idle, std::chrono::duration_cast<std::chrono::milliseconds>(due_ - now) +
                                      std::chrono::milliseconds(1));
        due_ = now + next_wait_locked();
        ++tries_;
    }
    mqtt::token_ptr token;
    try {
        token = client_.connect(options_);  // Paho's call, without the lock
    } catch (...) {
        // Paho refused to start the try (already connecting, out of memory): the next one is due anyway
    }
    std::lock_guard<std::mutex> lock(mutex_);
    in_flight_ = token;
    return std::min(idle, first_interval);
}

}  // namespace mqtt_presence
