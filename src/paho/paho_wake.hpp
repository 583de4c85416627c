#pragma once
// Paho C 1.3.12 (Debian 12) polls the sockets it had when its poll began, for up to a second, and is not woken when
// a socket is added (paho.mqtt.c issue #1430, fixed upstream by pull request #1642). A connect made during that poll
// is seen only when another socket of the process has traffic, or when the poll times out: a fleet connecting in one
// process stalls for up to a second whenever its connected clients fall quiet (with MQTT 5, all "1" of 10,000 sensors
// took 5.2-6.4 s before this, 3.5-4.3 s after: `BENCH_MQTT=5 bench/publisher 10000`, docs/performance.md). So a connect still in
// flight after a while asks one connected client of the process for a round trip to the broker: an UNSUBSCRIBE of a
// filter nobody subscribes to, whose UNSUBACK changes nothing and ends the poll. Private to the library.
#include "../client_scheduler.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace mqtt_presence::detail {

class paho_wake {
public:
    /// The filter of the round trip: nobody subscribes to it, so unsubscribing from it changes nothing.
    static constexpr const char* filter = "mqtt-presence/paho-wake";
    static paho_wake& instance();

    /// A client connected: it can make the round trip, `round_trip`, run as one of its tasks (under `guard`).
    void connected(const std::shared_ptr<task_guard>& guard, std::function<void()> round_trip);
    /// The client is no longer connected (or stops).
    void gone(const std::shared_ptr<task_guard>& guard) noexcept;
    /// A connect is in flight longer than it should be: the longest-connected client makes the round trip. One
    /// round trip wakes the poll for every connect, so there is at most one per `spacing`.
    void request();

    static constexpr std::chrono::milliseconds spacing{100};

private:
    paho_wake() = default;
    void forget(const task_guard* guard) noexcept;  // mutex_ held
    struct entry {
        entry(const std::shared_ptr<task_guard>& g, std::function<void()> fn)
            : guard(g), key(g.get()), round_trip(std::move(fn)) {}
        std::weak_ptr<task_guard> guard;
        const task_guard* key;  // where age_of_ finds it
        std::function<void()> round_trip;
    };
    std::mutex mutex_;
    // Connected clients, oldest first, and where each is: gone() runs on Paho's thread at every lost connection, so
    // it finds its entry without a walk (a broker restart loses every connection of the process at once).
    std::map<std::uint64_t, entry> by_age_;
    std::unordered_map<const task_guard*, std::uint64_t> age_of_;
    std::uint64_t next_age_ = 0;
    std::chrono::steady_clock::time_point last_request_{};
};

}  // namespace mqtt_presence::detail
