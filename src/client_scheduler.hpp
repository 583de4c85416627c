#pragma once
// One timer thread for every presence_client of the process: reconnect attempts and their backoff, heartbeats and
// the writing of unhandled errors run here as short, non-blocking tasks, so a process with N clients has one thread
// beyond Paho's own, not N. Connects are paced process-wide (a token bucket, connect_rate per second), so that a
// large fleet, or a fleet reconnecting after a broker restart, never turns into a storm of connects.
// Private to the library.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

namespace mqtt_presence::detail {

/// What a client's tasks hold: while a task runs, `mutex` is held, so a client that retires its guard (alive =
/// false under the mutex) knows that none of its tasks runs now or will run later.
struct task_guard {
    std::mutex mutex;
    bool alive = true;
};

class client_scheduler {
public:
    using steady = std::chrono::steady_clock;

    /// The process's scheduler; its thread starts with the first task.
    static client_scheduler& instance();

    /// Runs `fn` at `when` on the scheduler's thread, unless `guard` was retired first. `fn` must not block.
    void at(steady::time_point when, std::shared_ptr<task_guard> guard, std::function<void()> fn);
    /// The earliest time a new connect may start, reserved: connects are spread at connect_rate per second.
    steady::time_point reserve_connect();
    /// Connects per second for the whole process; 0: unpaced.
    void set_connect_rate(double per_second);
    [[nodiscard]] double connect_rate() const;

    ~client_scheduler();

private:
    client_scheduler() = default;
    void loop();

    struct task {
        std::shared_ptr<task_guard> guard;
        std::function<void()> fn;
    };
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::multimap<steady::time_point, task> tasks_;
    std::thread thread_;
    bool stopping_ = false;
    double connect_rate_ = 0;
    steady::time_point next_connect_{};
};

}  // namespace mqtt_presence::detail
