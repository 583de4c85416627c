#include "ha_availability.hpp"

#include <chrono>
#include <random>

#include <mqtt_presence/paho_client.hpp>

namespace mqtt_presence::detail {

ha_availability::ha_availability(const broker_options& broker, std::string topic) : topic_(std::move(topic)) {
    const auto id = broker.client_id.empty() ? "mqtt-presence-ha-" + std::to_string(std::random_device{}())
                                             : broker.client_id + "-ha";
    client_ = make_client(broker.server_uri, id, broker.mqtt_version);
    options_ = base_connect_options(broker);
    options_.set_will(mqtt::will_options(topic_, std::string("offline"), 1, true));
    // Paho C 1.3.12 also retries a first connect that failed (a broker gone between the scanner's connect and this
    // one): its will is the same at every connect, so Paho's own reconnect serves.
    options_.set_automatic_reconnect(std::chrono::seconds(1), std::chrono::seconds(30));
    // Paho's thread: publish only queues the message.
    client_->set_connected_handler([this](const std::string&) {
        try {
            client_->publish(mqtt::message::create(topic_, std::string("online"), 1, true));
        } catch (...) {
            // the next connect says it again
        }
    });
}

ha_availability::~ha_availability() noexcept { stop(); }

void ha_availability::start() {
    if (started_) return;
    started_ = true;
    try {
        client_->connect(options_);  // not waited for: a broker that is away is retried by Paho
    } catch (const mqtt::exception&) {
        // options Paho refuses were refused by the scanner's own connect first, with the same broker options
    }
}

void ha_availability::stop() noexcept {
    if (!started_) return;
    started_ = false;
    try {
        client_->set_connected_handler([](const std::string&) {});
        if (client_->is_connected()) {
            // Short waits: a stop finishes within 3 s even with the broker frozen, and then the connection's end
            // makes the broker send the will, which says the same.
            auto sent = client_->publish(mqtt::message::create(topic_, std::string("offline"), 1, true));
            sent->wait_for(std::chrono::milliseconds(500));
            client_->disconnect()->wait_for(std::chrono::milliseconds(500));
        }  // else: still trying; the client's end stops the tries
    } catch (...) {
        // already gone: its will says "offline"
    }
}

}  // namespace mqtt_presence::detail
