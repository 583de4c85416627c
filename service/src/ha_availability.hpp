#pragma once
// ha_availability: the service's own "online"/"offline" for Home Assistant's `availability_topic`, on a connection
// of its own whose Last Will says "offline" (retained). A service that dies (kill -9, a lost host) turns its
// entities "unavailable" instead of leaving its last verdicts standing as if they were current; a stop says
// "offline" itself. The scanner's connection cannot carry it: its one will clears its sync tail. Private to the
// service.

#include <memory>
#include <string>

#include <mqtt/async_client.h>

#include <mqtt_presence/broker_options.hpp>

namespace mqtt_presence::detail {

class ha_availability {
public:
    ha_availability(const broker_options& broker, std::string topic);
    ~ha_availability() noexcept;
    ha_availability(const ha_availability&) = delete;
    ha_availability& operator=(const ha_availability&) = delete;

    /// Connects in the background (Paho's own reconnect: the will is the same at every connect); "online" at each
    /// connect. Never blocks.
    void start();
    /// "offline" and the disconnect, each waited for 0.5 s at most (else the will says it). Idempotent.
    void stop() noexcept;
    [[nodiscard]] const std::string& topic() const noexcept { return topic_; }

private:
    std::string topic_;
    std::unique_ptr<mqtt::async_client> client_;
    mqtt::connect_options options_;
    bool started_ = false;
};

}  // namespace mqtt_presence::detail
