#pragma once
// Reconnects a Paho client from its owner's thread, soon after a loss. Paho's automatic reconnect tries at whole
// seconds (1 s, then 2 s) and runs the try on its own 1 s loop: a monitor was healthy again only 3.6-3.8 s after a
// broker's return. Here the first try is at once and the next ones 100 ms apart, doubling to `cap`, each drawn in
// [interval / 2, interval] so that many monitors do not knock in step. Paho C 1.3.12 still reads the CONNACK of a
// new socket on its next poll (up to 1 s later, paho.mqtt.c #1430), so a cap of 250 ms keeps the return within 2 s
// also on a loaded machine (with 500 ms one return took 2.05 s in CI).
// Public for the tools and the service built on the core (the death notary reconnects with it).
#include <chrono>
#include <mutex>
#include <random>

#include <mqtt/async_client.h>
#include <mqtt/connect_options.h>

namespace mqtt_presence {

class reconnect_driver {
public:
    using steady = std::chrono::steady_clock;
    static constexpr std::chrono::milliseconds first_interval{100};
    static constexpr std::chrono::milliseconds default_cap{250};

    /// `client` outlives the driver; `options` are the first connection's (its will, credentials, TLS).
    reconnect_driver(mqtt::async_client& client, mqtt::connect_options options,
                     std::chrono::milliseconds cap = default_cap);

    /// The connection went: try again from the next tick. Cheap, never blocks: safe on Paho's thread.
    void lost() noexcept;
    /// Connected (Paho's connected handler): nothing more to do until the next loss.
    void connected() noexcept;
    /// No more tries (the owner stops).
    void stop() noexcept;

    /// From the owner's thread: starts a try when one is due and none is in flight. Returns how long the owner may
    /// wait before the next tick (`idle` when nothing is due). Never throws; a try that cannot start waits its turn.
    std::chrono::milliseconds tick(std::chrono::milliseconds idle) noexcept;

    /// Tries started since construction (for tests and the log).
    [[nodiscard]] unsigned long tries() const;

private:
    std::chrono::milliseconds next_wait_locked();  // mutex_ held

    mqtt::async_client& client_;
    mqtt::connect_options options_;
    const std::chrono::milliseconds cap_;
    mutable std::mutex mutex_;
    bool wanted_ = false;
    bool stopped_ = false;
    mqtt::token_ptr in_flight_;
    std::chrono::milliseconds interval_{first_interval};
    steady::time_point due_{};
    unsigned long tries_ = 0;
    std::minstd_rand jitter_{std::random_device{}()};
};

}  // namespace mqtt_presence
