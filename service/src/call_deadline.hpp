#pragma once
// call_deadline: a watchdog thread for calls that have no bound of their own. A libpq query to a database server that
// stopped answering (frozen, or a network that drops packets) waits for ever: the connection stays up. arm() before
// such a call with what ends it (interrupting the connection); if the call is not over when the time passes, the
// watchdog runs that on its own thread, and the call fails instead of holding its thread. Private to the service
// library.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

namespace mqtt_presence::detail {

class call_deadline {
public:
    call_deadline();
    ~call_deadline() noexcept;
    call_deadline(const call_deadline&) = delete;
    call_deadline& operator=(const call_deadline&) = delete;

    /// Disarms when it goes (waiting for an `on_late` that is running: what it uses may go next).
    class armed {
    public:
        explicit armed(call_deadline& d) : d_(&d) {}
        armed(armed&& o) noexcept : d_(o.d_) { o.d_ = nullptr; }
        armed& operator=(armed&&) = delete;
        ~armed() { if (d_) d_->disarm(); }

    private:
        call_deadline* d_;
    };
    /// `on_late` runs once, on the watchdog's thread, unless the guard goes within `within`. One call at a time.
    [[nodiscard]] armed arm(std::chrono::milliseconds within, std::function<void()> on_late);
    /// How many calls were ended so.
    [[nodiscard]] unsigned long late() const;

private:
    void disarm() noexcept;
    void watch();

    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::optional<std::chrono::steady_clock::time_point> due_;
    std::function<void()> on_late_;
    unsigned long late_ = 0;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace mqtt_presence::detail
